//! Backups: a consistent copy of the whole file, taken while the service runs.
//!
//! One read transaction sees one commit, so copying every table inside it is
//! a snapshot, and writers carry on meanwhile (redb readers never block the
//! writer). The copy is a new redb file written next to its destination,
//! committed durably, then renamed over it and the directory synced: a crash
//! leaves either the old file or the whole new one, never half a backup. The
//! copy is also compact: it holds no free pages.

use std::path::Path;

use redb::{Database, ReadableDatabase};

use super::Failure;
use super::{Store, StoreError, tables};
use crate::durable::{create_private_file, replace_file};

impl Store {
    /// Writes a snapshot of the whole database to `out` and returns its size
    /// in bytes. Blocking: run it off the async runtime.
    pub fn backup_to(&self, out: &Path) -> Result<u64, StoreError> {
        replace_file(out, |tmp| self.write_snapshot(tmp))?;
        Ok(std::fs::metadata(out).map_err(io_error)?.len())
    }

    fn write_snapshot(&self, tmp: &Path) -> Result<(), StoreError> {
        let rtx = self.inner.db.get()?.begin_read()?;
        // Made owner-only first; redb fills the empty file.
        drop(create_private_file(tmp).map_err(io_error)?);
        let copy = Database::builder().create(tmp).map_err(|e| {
            StoreError::Failed(Failure::Internal(format!(
                "cannot create {}: {e}",
                tmp.display()
            )))
        })?;
        let wtx = copy.begin_write()?;
        tables::copy_all(&rtx, &wtx)?;
        // Durable by default: the commit fsyncs the copy before the rename.
        wtx.commit()?;
        Ok(())
    }
}

fn io_error(e: std::io::Error) -> StoreError {
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::operation::OperationKind;
    use crate::domain::package::{PackageName, PackageVersion};
    use crate::durable::temporary_path;
    use crate::store::{Idempotency, NewKey, NewPackage, StoreOptions};

    /// Rows per table, read without knowing the tables' types.
    fn row_counts(path: &Path) -> Vec<(String, u64)> {
        use redb::{ReadableTableMetadata, TableHandle};
        let db = Database::builder().open_read_only(path).unwrap();
        let rtx = db.begin_read().unwrap();
        let mut out: Vec<(String, u64)> = rtx
            .list_tables()
            .unwrap()
            .map(|t| {
                let n = rtx.open_untyped_table(t.clone()).unwrap().len().unwrap();
                (t.name().to_string(), n)
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_backup_holds_every_row_of_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.redb");
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        // Something in every table: a package with a source and a queued operation made
        // with an idempotency key, a key, an audit entry.
        let (key, _) = store
            .create_key(NewKey {
                name: "k".into(),
                role: crate::domain::key::Role::Admin,
                expires_at: None,
                rate_limit: None,
            })
            .await
            .unwrap();
        let p = store
            .create_package(NewPackage {
                name: PackageName::parse("p").unwrap(),
                version: PackageVersion::parse("1").unwrap(),
                source: Some(
                    crate::domain::source::Source::parse(
                        "https://example.org/p.tar.gz",
                        &"ab".repeat(32),
                        None,
                        crate::domain::source::Schemes::Web,
                    )
                    .unwrap(),
                ),
            })
            .await
            .unwrap();
        store
            .enqueue(
                p.id,
                OperationKind::Download,
                Some(Idempotency {
                    key_id: key.id,
                    key: "once".into(),
                }),
            )
            .await
            .unwrap();
        // A deleted package with a source journals its files' removal.
        let gone = store
            .create_package(NewPackage {
                name: PackageName::parse("gone").unwrap(),
                version: PackageVersion::parse("1").unwrap(),
                source: p.source.clone(),
            })
            .await
            .unwrap();
        store
            .delete_package(gone.id, crate::store::Precondition::None)
            .await
            .unwrap();
        store
            .create_channel(crate::store::NewChannel {
                url: "https://example.org/stable/channel.json".into(),
                activate: crate::domain::channel::ActivateMode::Auto,
                interval: crate::domain::channel::DEFAULT_INTERVAL,
            })
            .await
            .unwrap();
        store
            .append_audit(crate::store::AuditEntry {
                id: uuid::Uuid::now_v7(),
                at: crate::domain::Timestamp::now(),
                key_id: Some(key.id),
                action: "POST /v1/packages".into(),
                target: "/v1/packages".into(),
                status: 201,
                request_id: "r".into(),
            })
            .await
            .unwrap();

        let out = dir.path().join("backup.redb");
        let size = store.backup_to(&out).unwrap();
        assert!(size > 0);
        store.close();
        drop(store);

        let live = row_counts(&path);
        assert!(
            live.iter().all(|(_, n)| *n > 0),
            "every table needs a row for this test to mean anything: {live:?}"
        );
        assert_eq!(row_counts(&out), live);
        assert!(!temporary_path(&out).exists(), "the temporary file is gone");

        // Restoring is starting on the copy.
        let restored = Store::open(&out, &StoreOptions::default()).unwrap();
        assert_eq!(restored.get_package(p.id).unwrap().name.as_str(), "p");
        restored.close();
    }
}
