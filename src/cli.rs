//! Offline commands that work on the database file directly: `packd keys ...`.
//! They take the same file lock as the server, so they refuse to run while a
//! server holds the file, with a message that says so.

use std::io::Write;

use anyhow::Context;

use crate::config::{KeysArgs, KeysCommand};
use crate::domain::Timestamp;
use crate::domain::key::{Role, parse_key_name};
use crate::store::{NewKey, Store, StoreOptions};

pub async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.db, &StoreOptions::default())?;
    let result = run(&store, args.command).await;
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
    }
    Ok(())
}
