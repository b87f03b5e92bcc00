//! The removal journal: files a change left behind (a deleted package's,
//! or those of its old name, version or source), recorded in the change's
//! own transaction, so a crash between the commit and the removal loses
//! nothing and start-up never has to guess what packd made.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::tables::{PACKAGES, PACKAGES_BY_NAME_VERSION, REMOVALS};
use super::{Store, StoreError};
use crate::domain::operation::OperationKind;
use crate::domain::package::{Package, PackageName, PackageVersion, Removal, Status, Wanted};
use crate::domain::source::Sha256;

/// A journaled removal. V1 came with schema 5.
#[derive(Debug, Serialize, Deserialize)]
enum RemovalRecord {
    V1(RemovalV1),
}

#[derive(Debug, Serialize, Deserialize)]
struct RemovalV1 {
    name: String,
    version: String,
    sha256: [u8; 32],
}

fn from_record(id: u128, bytes: &[u8]) -> Result<Removal, StoreError> {
    let RemovalRecord::V1(r) = decode::<RemovalRecord>("removals", bytes)?;
    let corrupt = |e: crate::domain::ValidationError| {
        StoreError::Failed(super::Failure::Corrupt(e.to_string()))
    };
    Ok(Removal {
        id: Uuid::from_u128(id),
        name: PackageName::from_stored(r.name).map_err(corrupt)?,
        version: PackageVersion::from_stored(r.version).map_err(corrupt)?,
        digest: Sha256(r.sha256),
    })
}

/// Journals the files `gone` had (only a package with a source has any).
/// Returns whether it wrote a record.
pub(super) fn journal(wtx: &WriteTransaction, gone: &Package) -> Result<bool, StoreError> {
    let Some(source) = &gone.source else {
        return Ok(false);
    };
    let record = RemovalRecord::V1(RemovalV1 {
        name: gone.name.as_str().to_string(),
        version: gone.version.as_str().to_string(),
        sha256: source.sha256().0,
    });
    wtx.open_table(REMOVALS)?
        .insert(Uuid::now_v7().as_u128(), encode(&record)?.as_slice())?;
    Ok(true)
}

impl Store {
    /// The oldest journaled removals, at most `limit`.
    pub fn pending_removals(&self, limit: usize) -> Result<Vec<Removal>, StoreError> {
        self.read(|rtx| {
            let table = rtx.open_table(REMOVALS)?;
            let mut out = Vec::new();
            for row in table.iter()?.take(limit) {
                let (k, v) = row?;
                out.push(from_record(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Takes a removal off the journal once its files are gone (or are
    /// another package's now).
    pub async fn finish_removal(&self, id: Uuid) -> Result<(), StoreError> {
        self.write(move |wtx| {
            wtx.open_table(REMOVALS)?.remove(id.as_u128())?;
            Ok(())
        })
        .await
    }

    /// Wakes when a change journals a removal.
    pub fn removals_added(&self) -> &tokio::sync::Notify {
        &self.inner.removals_added
    }

    /// Whether the files of `name`@`version` are wanted by a package now.
    pub fn files_wanted(
        &self,
        name: &PackageName,
        version: &PackageVersion,
    ) -> Result<Wanted, StoreError> {
        self.read(|rtx| {
            let Some(id) = rtx
                .open_table(PACKAGES_BY_NAME_VERSION)?
                .get((name.as_str(), version.as_str()))?
                .map(|v| v.value())
            else {
                return Ok(Wanted::No);
            };
            let p = super::packages::get_in(&rtx.open_table(PACKAGES)?, Uuid::from_u128(id))?;
            if p.status != Status::Created {
                return Ok(Wanted::Yes);
            }
            if p.source.is_none() {
                return Ok(Wanted::No);
            }
            match p.operation_id {
                Some(op) if self.get_operation(op)?.kind == OperationKind::Download => {
                    Ok(Wanted::Later)
                }
                _ => Ok(Wanted::No),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::package::PackagePatch;
    use crate::domain::source::Schemes;
    use crate::store::{NewPackage, Precondition, StoreOptions};

    fn sourced(name: &str, version: &str) -> NewPackage {
        NewPackage {
            name: PackageName::parse(name).unwrap(),
            version: PackageVersion::parse(version).unwrap(),
            source: Some(
                crate::domain::source::Source::parse(
                    "https://example.org/a.tar.gz",
                    &"cd".repeat(32),
                    None,
                    Schemes::Web,
                )
                .unwrap(),
            ),
        }
    }

    #[tokio::test]
    async fn changes_that_leave_files_behind_journal_them_in_their_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.redb"), &StoreOptions::default()).unwrap();
        // No source, no files: nothing to journal.
        let plain = store
            .create_package(NewPackage {
                source: None,
                ..sourced("plain", "1")
            })
            .await
            .unwrap();
        store
            .delete_package(plain.id, Precondition::None)
            .await
            .unwrap();
        assert!(store.pending_removals(10).unwrap().is_empty());

        let a = store.create_package(sourced("a", "1")).await.unwrap();
        // A patch that changes nothing leaves the files where they are.
        store
            .update_package(a.id, PackagePatch::default(), Precondition::None)
            .await
            .unwrap();
        assert!(store.pending_removals(10).unwrap().is_empty());
        // A new version: the old one's files go.
        store
            .update_package(
                a.id,
                PackagePatch {
                    version: Some(PackageVersion::parse("2").unwrap()),
                    ..PackagePatch::default()
                },
                Precondition::None,
            )
            .await
            .unwrap();
        store
            .delete_package(a.id, Precondition::None)
            .await
            .unwrap();
        let pending = store.pending_removals(10).unwrap();
        let names: Vec<_> = pending
            .iter()
            .map(|r| format!("{}@{}", r.name, r.version))
            .collect();
        assert_eq!(names, ["a@1", "a@2"], "oldest first");
        assert_eq!(
            pending[0].digest,
            Sha256::parse_hex(&"cd".repeat(32)).unwrap()
        );
        store.finish_removal(pending[0].id).await.unwrap();
        assert_eq!(store.pending_removals(10).unwrap().len(), 1);
        store.close();
    }

    #[tokio::test]
    async fn the_files_of_a_place_are_wanted_by_what_stands_there_now() {
        let store = Store::in_memory().unwrap();
        let (name, version) = (
            PackageName::parse("b").unwrap(),
            PackageVersion::parse("1").unwrap(),
        );
        assert_eq!(store.files_wanted(&name, &version).unwrap(), Wanted::No);
        let b = store.create_package(sourced("b", "1")).await.unwrap();
        assert_eq!(store.files_wanted(&name, &version).unwrap(), Wanted::No);
        store
            .enqueue(b.id, OperationKind::Download, None)
            .await
            .unwrap();
        assert_eq!(store.files_wanted(&name, &version).unwrap(), Wanted::Later);
    }
}
