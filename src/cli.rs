//! Commands besides `serve`: `packd keys ...` and `packd dev seed` work on
//! the database file directly; `packd backup` works either way.
//! They take the same file lock as the server, so they refuse to run while a
//! server holds the file, with a message that says so.

use std::io::Write;

use anyhow::Context;

use crate::client::args::KeysCommand;
use crate::config::{BackupArgs, CheckArgs, DevArgs, DevCommand};
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
            writeln!(
                out,
                "{:<36}  {:<6}  {:<8}  {:<12}  {:>9}  NAME",
                "ID", "ROLE", "STATE", "PREFIX", "USES"
            )?;
            let mut after = None;
            loop {
                let page = store.list_keys(after, 1000)?;
                for k in &page.items {
                    let state = if !k.active {
                        "inactive"
                    } else if k.expires_at.is_some_and(|e| e <= Timestamp::now()) {
                        "expired"
                    } else {
                        "active"
                    };
                    writeln!(
                        out,
                        "{:<36}  {:<6}  {:<8}  {:<12}  {:>9}  {}",
                        k.id, k.role, state, k.prefix, k.use_count, k.name
                    )?;
                }
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
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

/// Why `packd backup` failed, with the exit status of the client commands
/// (README: exit statuses): 2 usage, 3 server unreachable, 4 the key
/// refused, 5 another answer of the API, 1 anything else.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct BackupFailure {
    pub status: u8,
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for BackupFailure {
    fn from(error: anyhow::Error) -> Self {
        // A failure whose status was decided on the way keeps it.
        match error.downcast::<BackupFailure>() {
            Ok(f) => f,
            Err(error) => Self { status: 1, error },
        }
    }
}

fn failing(status: u8, error: anyhow::Error) -> anyhow::Error {
    BackupFailure { status, error }.into()
}

pub async fn backup(args: BackupArgs) -> Result<(), BackupFailure> {
    write_backup(args).await.map_err(BackupFailure::from)
}

async fn write_backup(args: BackupArgs) -> anyhow::Result<()> {
    let size = match &args.db {
        Some(db) => {
            let store = Store::open(db, &StoreOptions::default())?;
            let out = args.out.clone();
            let copy = store.clone();
            let result = tokio::task::spawn_blocking(move || copy.backup_to(&out)).await?;
            store.close();
            result?
        }
        None => {
            let base = args
                .url
                .clone()
                .unwrap_or_else(|| crate::healthcheck::base_url(args.server.listen));
            let key = args.key.clone().ok_or_else(|| {
                failing(
                    2,
                    anyhow::anyhow!(
                        "an admin key is needed: set PACKD_API_KEY or pass --key (or --db for an offline backup)"
                    ),
                )
            })?;
            let out = args.out.clone();
            tokio::task::spawn_blocking(move || download_backup(&base, &key, &out)).await??
        }
    };
    let version = crate::store::verify_file(&args.out)
        .with_context(|| format!("the backup {} does not open", args.out.display()))?;
    println!(
        "packd: backup written to {} ({size} bytes, schema version {version})",
        args.out.display()
    );
    Ok(())
}

/// GETs `/v1/backup` into a file beside `out`, syncs it, renames it over `out`.
fn download_backup(base: &str, key: &str, out: &std::path::Path) -> anyhow::Result<u64> {
    let url = format!("{}/v1/backup", base.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(&url)
        .header("X-API-Key", key)
        .call()
        .map_err(|e| failing(3, anyhow::anyhow!("cannot reach {url}: {e}")))?;
    if resp.status() != 200 {
        let status = resp.status();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(body);
        let code = if matches!(status.as_u16(), 401 | 403) {
            4
        } else {
            5
        };
        return Err(failing(
            code,
            anyhow::anyhow!("{url} answered {status}: {detail}"),
        ));
    }
    let expected: Option<u64> = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    crate::durable::replace_file(out, |tmp| -> anyhow::Result<u64> {
        let mut file = crate::durable::create_private_file(tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut body = resp.body_mut().with_config().limit(u64::MAX).reader();
        let written = std::io::copy(&mut body, &mut file)?;
        if let Some(n) = expected.filter(|n| *n != written) {
            anyhow::bail!("the server sent {written} of {n} bytes");
        }
        file.sync_all()?;
        Ok(written)
    })
}
