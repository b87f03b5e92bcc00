//! The offline commands, on the database file itself: `packd keys ...
//! --db`, `packd check`, `packd dev seed` and `packd backup --db`. They
//! take the same file lock as the server, so they refuse to run while a
//! server holds the file, with a message that says so.

use std::io::Write;

use anyhow::Context;

use crate::client::args::KeysCommand;
use crate::config::{CheckArgs, DevArgs, DevCommand};
use crate::domain::Timestamp;
use crate::domain::key::{Role, parse_key_name};
use crate::domain::operation::OperationKind;
use crate::domain::package::Status;
use crate::store::{CheckError, ListPackages, NewKey, Store, StoreOptions};

/// `packd check`: the verdict on one line, and an exit status scripts can
/// branch on: 0 intact, 1 damaged, 2 not checked.
pub fn check(args: &CheckArgs) -> std::process::ExitCode {
    let started = std::time::Instant::now();
    let path = args.file.db.display();
    match crate::store::check_file(&args.file.db) {
        Ok(r) => {
            println!(
                "{path}: intact (schema {}, {} packages, {} keys, {} operations, {} audit entries; checked in {:.1?})",
                r.schema_version,
                r.packages,
                r.keys,
                r.operations,
                r.audit_entries,
                started.elapsed()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(CheckError::Damaged(reason)) => {
            println!(
                "{path}: DAMAGED: {reason}\n\
                 The file was not changed. Restore the last backup (README: Backup and restore)."
            );
            std::process::ExitCode::from(1)
        }
        Err(CheckError::Unusable(e)) => {
            eprintln!("packd: cannot check: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `packd keys … --db FILE`: offline, on the file.
pub async fn keys(db: &std::path::Path, command: KeysCommand) -> anyhow::Result<()> {
    if matches!(
        command,
        KeysCommand::Get { .. } | KeysCommand::Rotate { .. }
    ) {
        anyhow::bail!("`keys get` and `keys rotate` go through the API: leave out --db");
    }
    let store = Store::open(db, &StoreOptions::default())?;
    let result = run(&store, command).await;
    store.close();
    result
}

async fn run(store: &Store, command: KeysCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Create { name, role, ttl } => {
            let name = parse_key_name(name)?;
            let role = Role::parse(&role).context("role must be read, write or admin")?;
            let expires_at = ttl.map(|ttl| Timestamp::now().plus(ttl));
            let (k, secret) = store
                .create_key(NewKey {
                    name,
                    role,
                    expires_at,
                    rate_limit: None,
                })
                .await?;
            writeln!(out, "created {} key {} ({})", k.role, k.id, k.name)?;
            writeln!(out, "secret (shown only now): {secret}")?;
        }
        KeysCommand::List => {
            let now = Timestamp::now();
            let mut rows = Vec::new();
            let mut after = None;
            loop {
                let page = store.list_keys(after, 1000)?;
                rows.extend(page.items.iter().map(|k| crate::client::show::KeyRow {
                    id: k.id.to_string(),
                    name: k.name.to_string(),
                    role: k.role.to_string(),
                    state: crate::client::show::key_state(
                        k.active,
                        k.expires_at.is_some_and(|e| e <= now),
                    ),
                    prefix: k.prefix.to_string(),
                    expires_at: k.expires_at.and_then(|e| {
                        e.to_offset_date_time()
                            .format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    }),
                    uses: k.use_count,
                }));
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            crate::client::show::keys_table(rows);
        }
        KeysCommand::Deactivate { id } => {
            store.set_key_active(id, false).await?;
            writeln!(out, "deactivated {id}")?;
        }
        KeysCommand::Activate { id } => {
            store.set_key_active(id, true).await?;
            writeln!(out, "activated {id}")?;
        }
        KeysCommand::Delete { id } => {
            store.delete_key(id).await?;
            writeln!(out, "deleted {id}")?;
        }
        KeysCommand::Get { .. } | KeysCommand::Rotate { .. } => {
            unreachable!("refused before the file is opened")
        }
    }
    Ok(())
}

/// Packages written per transaction when seeding: large enough that the
/// fsync is noise, small enough to show progress.
const SEED_PER_COMMIT: u64 = 50_000;

pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.file.db, &StoreOptions::default())?;
    let result = match args.command {
        DevCommand::Seed {
            count,
            prefix,
            queue_downloads,
        } => seed(&store, &prefix, count, queue_downloads).await,
    };
    store.close();
    result
}

async fn seed(store: &Store, prefix: &str, count: u64, queue: u64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut err = std::io::stderr().lock();
    store
        .seed_packages(prefix, count, SEED_PER_COMMIT, |done| {
            let _ = write!(err, "\rpackd: {done}/{count} packages");
        })
        .await?;
    writeln!(err)?;
    drop(err);
    let mut queued = 0;
    if queue > 0 {
        // The first `queue` created packages of this seed, in id order.
        let created = store.list_packages(&ListPackages {
            status: Some(Status::Created),
            name: None,
            pinned: None,
            after: None,
            limit: usize::try_from(queue)?,
        })?;
        // Sent together, so the writer commits them in large batches.
        let mut tasks = tokio::task::JoinSet::new();
        for p in created.items {
            let store = store.clone();
            tasks.spawn(async move { store.enqueue(p.id, OperationKind::Download, None).await });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
            queued += 1;
        }
    }
    println!(
        "seeded {count} packages ({prefix}-0 to {prefix}-{}) and queued {queued} downloads in {:.1}s into {}",
        count.saturating_sub(1),
        started.elapsed().as_secs_f64(),
        store.path().display()
    );
    Ok(())
}

/// `packd backup --db`: a snapshot of a database file no server holds.
pub async fn backup(db: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    crate::durable::check_destination(out).map_err(anyhow::Error::msg)?;
    let store = Store::open(db, &StoreOptions::default())?;
    let (copy, to) = (store.clone(), out.to_path_buf());
    let result = tokio::task::spawn_blocking(move || copy.backup_to(&to)).await?;
    store.close();
    let size = result?;
    let version = crate::store::verify_file(out)
        .with_context(|| format!("the backup {} does not open", out.display()))?;
    println!(
        "packd: backup written to {} ({size} bytes, schema version {version})",
        out.display()
    );
    Ok(())
}
