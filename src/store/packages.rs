//! Package rows and their three indexes, always written together.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode, stored_codes};
use super::events::Written;
use super::page::{ids_of, page_of, start_after, walk_index};
use super::tables::{
    PACKAGES, PACKAGES_BY_DIGEST, PACKAGES_BY_NAME, PACKAGES_BY_NAME_VERSION, PACKAGES_BY_STATUS,
};
use super::{Failure, Refusal};
use super::{Page, Precondition, Store, StoreError};
use crate::domain::Timestamp;
use crate::domain::package::{
    Package, PackageName, PackagePatch, PackageVersion, PatchRefused, Patched, Status,
};
use crate::domain::source::Source;

/// The stored form of a package. The id is the key, not part of the value.
/// V1 (schema 2 and before) had no source; V2 (schemas 3 to 5) a source
/// without a signature; V3 (schema 6) no channel and no `pinned`. The migrations rewrite older records in the
/// current form, and reading still accepts them so the migrations
/// themselves can decode them.
#[derive(Debug, Serialize, Deserialize)]
enum PackageRecord {
    V1(PackageV1),
    V2(PackageV2),
    V3(PackageV3),
    V4(PackageV4),
}

#[derive(Debug, Serialize, Deserialize)]
struct PackageV4 {
    v3: PackageV3,
    channel_id: Option<u128>,
    pinned: bool,
    last_active_at: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PackageV3 {
    v1: PackageV1,
    source: Option<SourceV2>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SourceV2 {
    v1: SourceV1,
    /// The `.minisig` text.
    signature: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PackageV2 {
    v1: PackageV1,
    source: Option<SourceV1>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SourceV1 {
    url: String,
    sha256: [u8; 32],
    size: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PackageV1 {
    name: String,
    version: String,
    status: u8,
    operation_id: Option<u128>,
    revision: u64,
    created_at: i64,
    updated_at: i64,
}

// Status codes as stored in records and in the status index. Fixed forever:
// changing one is a format change.
stored_codes!("package status", Status, status_code, status_from_code {
    Created = 0,
    Downloaded = 1,
    Active = 2,
});

fn to_record(p: &Package) -> PackageRecord {
    let v3 = PackageV3 {
        v1: PackageV1 {
            name: p.name.as_str().to_owned(),
            version: p.version.as_str().to_owned(),
            status: status_code(p.status),
            operation_id: p.operation_id.map(|u| u.as_u128()),
            revision: p.revision,
            created_at: p.created_at.as_micros(),
            updated_at: p.updated_at.as_micros(),
        },
        source: p.source.as_ref().map(|s| SourceV2 {
            v1: SourceV1 {
                url: s.url().to_owned(),
                sha256: s.sha256().0,
                size: s.size(),
            },
            signature: s.signature().map(str::to_owned),
        }),
    };
    PackageRecord::V4(PackageV4 {
        v3,
        channel_id: p.channel_id.map(|u| u.as_u128()),
        pinned: p.pinned,
        last_active_at: p.last_active_at.map(Timestamp::as_micros),
    })
}

fn from_record(id: u128, bytes: &[u8]) -> Result<Package, StoreError> {
    let (r, source, channel_id, pinned, last_active_at) =
        match decode::<PackageRecord>("packages", bytes)? {
            PackageRecord::V1(r) => (r, None, None, false, None),
            PackageRecord::V2(PackageV2 { v1, source }) => (
                v1,
                source.map(|v1| SourceV2 {
                    v1,
                    signature: None,
                }),
                None,
                false,
                None,
            ),
            PackageRecord::V3(PackageV3 { v1, source }) => (v1, source, None, false, None),
            PackageRecord::V4(PackageV4 {
                v3: PackageV3 { v1, source },
                channel_id,
                pinned,
                last_active_at,
            }) => (v1, source, channel_id, pinned, last_active_at),
        };
    // Stored names passed validation when written; a failure here is corruption.
    let corrupt =
        |e: crate::domain::ValidationError| StoreError::Failed(Failure::Corrupt(e.to_string()));
    Ok(Package {
        id: Uuid::from_u128(id),
        name: PackageName::from_stored(r.name).map_err(corrupt)?,
        version: PackageVersion::from_stored(r.version).map_err(corrupt)?,
        status: status_from_code(r.status)?,
        source: source.map(|s| Source::from_stored(s.v1.url, s.v1.sha256, s.v1.size, s.signature)),
        operation_id: r.operation_id.map(Uuid::from_u128),
        channel_id: channel_id.map(Uuid::from_u128),
        pinned,
        last_active_at: last_active_at.map(Timestamp::from_micros),
        revision: r.revision,
        created_at: Timestamp::from_micros(r.created_at),
        updated_at: Timestamp::from_micros(r.updated_at),
    })
}

/// What a client supplies to create a package.
#[derive(Debug, Clone)]
pub struct NewPackage {
    pub name: PackageName,
    pub version: PackageVersion,
    pub source: Option<Source>,
}

/// Schemas 2 -> 3 and 5 -> 6: every package record is rewritten in the
/// current form (no source, no signature where the old one had none),
/// inside the migration's transaction.
pub(super) fn rewrite_packages(wtx: &WriteTransaction) -> Result<usize, StoreError> {
    super::schema::rewrite_records(wtx, PACKAGES, |id, bytes| {
        encode(&to_record(&from_record(id, bytes)?))
    })
}

/// Schema 3 -> 4: one version of a name is active. A file from before may
/// have several; the one changed last stays active (it is the one most
/// likely in use), the others become `downloaded`.
pub(super) fn migrate_to_one_active_per_name(
    wtx: &WriteTransaction,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let active: Vec<Package> = {
        let index = wtx.open_table(PACKAGES_BY_STATUS)?;
        let rows = wtx.open_table(PACKAGES)?;
        let code = status_code(Status::Active);
        index
            .range((code, 0)..=(code, u128::MAX))?
            .map(|entry| get_in(&rows, Uuid::from_u128(entry?.0.value().1)))
            .collect::<Result<_, _>>()?
    };
    let mut latest: std::collections::HashMap<&str, &Package> = std::collections::HashMap::new();
    for p in &active {
        let kept = latest.entry(p.name.as_str()).or_insert(p);
        if (p.updated_at, p.id) > (kept.updated_at, kept.id) {
            *kept = p;
        }
    }
    let mut demoted = 0;
    for p in &active {
        if latest[p.name.as_str()].id != p.id {
            set_status(wtx, &mut Written::untold(), p, Status::Downloaded, now)?;
            demoted += 1;
        }
    }
    Ok(demoted)
}

/// The packages of one name, in id order.
pub(super) fn of_name(
    wtx: &WriteTransaction,
    name: &PackageName,
) -> Result<Vec<Package>, StoreError> {
    let index = wtx.open_table(PACKAGES_BY_NAME)?;
    let rows = wtx.open_table(PACKAGES)?;
    index
        .range((name.as_str(), 0)..=(name.as_str(), u128::MAX))?
        .map(|entry| get_in(&rows, Uuid::from_u128(entry?.0.value().1)))
        .collect()
}

/// Rewrites `p` with a new status (a new revision); returns it so.
pub(super) fn set_status(
    wtx: &WriteTransaction,
    written: &mut Written,
    p: &Package,
    status: Status,
    now: Timestamp,
) -> Result<Package, StoreError> {
    let mut after = p.clone();
    after.status = status;
    after.revision += 1;
    after.updated_at = now;
    if p.status == Status::Active && status != Status::Active {
        after.last_active_at = Some(now);
    }
    unindex(wtx, p)?;
    put(wtx, written, &after)?;
    Ok(after)
}

/// Filters and position of a package listing.
#[derive(Debug, Clone, Default)]
pub struct ListPackages {
    pub status: Option<Status>,
    pub name: Option<String>,
    /// No index: a filter of the walk (pinned packages are few; a page of
    /// them may read many rows).
    pub pinned: Option<bool>,
    pub after: Option<Uuid>,
    pub limit: usize,
}

pub(super) fn get_in<T: ReadableTable<u128, &'static [u8]>>(
    table: &T,
    id: Uuid,
) -> Result<Package, StoreError> {
    let row = table
        .get(id.as_u128())?
        .ok_or(StoreError::Refused(Refusal::NotFound))?;
    from_record(id.as_u128(), row.value())
}

/// Writes the row and every index entry of `p`, and records the change.
pub(super) fn put(
    wtx: &WriteTransaction,
    written: &mut Written,
    p: &Package,
) -> Result<(), StoreError> {
    written.package(p);
    let id = p.id.as_u128();
    wtx.open_table(PACKAGES)?
        .insert(id, encode(&to_record(p))?.as_slice())?;
    wtx.open_table(PACKAGES_BY_NAME_VERSION)?
        .insert((p.name.as_str(), p.version.as_str()), id)?;
    wtx.open_table(PACKAGES_BY_NAME)?
        .insert((p.name.as_str(), id), ())?;
    wtx.open_table(PACKAGES_BY_STATUS)?
        .insert((status_code(p.status), id), ())?;
    if let Some(source) = &p.source {
        wtx.open_table(PACKAGES_BY_DIGEST)?
            .insert((&source.sha256().0, id), ())?;
    }
    Ok(())
}

/// Removes the index entries of `p` (the row itself is overwritten or removed by the caller).
pub(super) fn unindex(wtx: &WriteTransaction, p: &Package) -> Result<(), StoreError> {
    let id = p.id.as_u128();
    wtx.open_table(PACKAGES_BY_NAME_VERSION)?
        .remove((p.name.as_str(), p.version.as_str()))?;
    wtx.open_table(PACKAGES_BY_NAME)?
        .remove((p.name.as_str(), id))?;
    wtx.open_table(PACKAGES_BY_STATUS)?
        .remove((status_code(p.status), id))?;
    if let Some(source) = &p.source {
        wtx.open_table(PACKAGES_BY_DIGEST)?
            .remove((&source.sha256().0, id))?;
    }
    Ok(())
}

fn check_unique(
    wtx: &WriteTransaction,
    name: &PackageName,
    version: &PackageVersion,
    except: Option<Uuid>,
) -> Result<(), StoreError> {
    let index = wtx.open_table(PACKAGES_BY_NAME_VERSION)?;
    if let Some(existing) = index.get((name.as_str(), version.as_str()))? {
        let existing = Uuid::from_u128(existing.value());
        if Some(existing) != except {
            return Err(StoreError::Refused(Refusal::Duplicate {
                name: name.to_string(),
                version: version.to_string(),
                existing,
            }));
        }
    }
    Ok(())
}

fn load_for_change(
    wtx: &WriteTransaction,
    id: Uuid,
    precondition: &Precondition,
) -> Result<Package, StoreError> {
    let current = get_in(&wtx.open_table(PACKAGES)?, id)?;
    precondition.check(current.revision).map_err(|stale| {
        StoreError::Refused(Refusal::PreconditionFailed {
            current: stale.current,
        })
    })?;
    if let Some(operation_id) = current.operation_id {
        return Err(StoreError::Refused(Refusal::OperationInProgress {
            operation_id,
        }));
    }
    Ok(current)
}

impl Store {
    pub async fn create_package(&self, new: NewPackage) -> Result<Package, StoreError> {
        let package = Package::new(
            Uuid::now_v7(),
            new.name,
            new.version,
            new.source,
            Timestamp::now(),
        );
        self.write_changes(move |wtx, written| {
            check_unique(wtx, &package.name, &package.version, None)?;
            put(wtx, written, &package)?;
            Ok(package.clone())
        })
        .await
    }

    /// Writes `count` generated packages straight to the file, `per_commit`
    /// to a transaction, for benchmarks and trials (`packd dev seed`). Names
    /// are `{prefix}-{n}`, versions `1.0.{n % 10}`, and statuses cycle
    /// through created, downloaded and active so every status filter has
    /// work. Returns how many were written; a name already taken is an error
    /// and nothing of its transaction is written.
    pub async fn seed_packages(
        &self,
        prefix: &str,
        count: u64,
        per_commit: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
        const STATUSES: [Status; 3] = [Status::Created, Status::Downloaded, Status::Active];
        let mut written = 0;
        while written < count {
            let first = written;
            let n = per_commit.min(count - written);
            let prefix = prefix.to_string();
            self.write(move |wtx| {
                let now = Timestamp::now();
                let mut batch = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
                for i in first..first + n {
                    let name = PackageName::parse(format!("{prefix}-{i}"))
                        .map_err(|e| StoreError::Failed(Failure::Internal(e.to_string())))?;
                    let version = PackageVersion::parse(format!("1.0.{}", i % 10))
                        .map_err(|e| StoreError::Failed(Failure::Internal(e.to_string())))?;
                    check_unique(wtx, &name, &version, None)?;
                    batch.push(Package {
                        id: Uuid::now_v7(),
                        name,
                        version,
                        status: STATUSES[usize::try_from(i % 3).unwrap_or(0)],
                        source: None,
                        operation_id: None,
                        channel_id: None,
                        pinned: false,
                        last_active_at: None,
                        revision: 1,
                        created_at: now,
                        updated_at: now,
                    });
                }
                // Seeding is for benchmarks and trials: nobody is told.
                for p in &batch {
                    put(wtx, &mut Written::untold(), p)?;
                }
                Ok(())
            })
            .await?;
            written += n;
            progress(written);
        }
        Ok(written)
    }

    pub fn get_package(&self, id: Uuid) -> Result<Package, StoreError> {
        self.read(|rtx| get_in(&rtx.open_table(PACKAGES)?, id))
    }

    pub fn list_packages(&self, q: &ListPackages) -> Result<Page<Package>, StoreError> {
        let Some(after) = start_after(q.after) else {
            return Ok(Page {
                items: vec![],
                next_after: None,
            });
        };
        self.read(|rtx| {
            let rows = rtx.open_table(PACKAGES)?;
            let load = |id| get_in(&rows, Uuid::from_u128(id));
            let pinned = |p: &Package| q.pinned.is_none_or(|pin| pin == p.pinned);
            match (&q.name, q.status) {
                (Some(name), status) => {
                    let index = rtx.open_table(PACKAGES_BY_NAME)?;
                    let ids =
                        ids_of(index.range((name.as_str(), after)..=(name.as_str(), u128::MAX))?);
                    walk_index(
                        ids,
                        q.limit,
                        load,
                        |p| status.is_none_or(|s| s == p.status) && pinned(p),
                        |p| p.id,
                    )
                }
                (None, Some(status)) => {
                    let code = status_code(status);
                    let index = rtx.open_table(PACKAGES_BY_STATUS)?;
                    let ids = ids_of(index.range((code, after)..=(code, u128::MAX))?);
                    walk_index(ids, q.limit, load, pinned, |p| p.id)
                }
                (None, None) if q.pinned.is_some() => {
                    let ids = rows
                        .range(after..)?
                        .map(|row| row.map(|(k, _)| k.value()).map_err(StoreError::from));
                    walk_index(ids, q.limit, load, pinned, |p| p.id)
                }
                (None, None) => page_of(&rows, q.after, q.limit, from_record, |p| p.id),
            }
        })
    }

    /// Applies a PATCH; returns the package before and after it.
    pub async fn update_package(
        &self,
        id: Uuid,
        patch: PackagePatch,
        precondition: Precondition,
    ) -> Result<(Package, Package), StoreError> {
        let now = Timestamp::now();
        let (before, after, changed) = self
            .write_changes(move |wtx, written| {
                let before = load_for_change(wtx, id, &precondition)?;
                let mut after = before.clone();
                let changed = after.apply_patch(patch.clone(), now).map_err(|refused| {
                    StoreError::Refused(match refused {
                        PatchRefused::Active => Refusal::Active,
                        PatchRefused::ManagedBy(channel_id) => Refusal::Conflict(format!(
                            "managed by channel {channel_id}: its name, version and source are the channel's to change (delete the channel to manage it by hand)"
                        )),
                    })
                })?;
                match changed {
                    Patched::Unchanged => {}
                    Patched::Pinned => {
                        unindex(wtx, &before)?;
                        put(wtx, written, &after)?;
                    }
                    Patched::Replaced => {
                        check_unique(wtx, &after.name, &after.version, Some(id))?;
                        unindex(wtx, &before)?;
                        put(wtx, written, &after)?;
                        // What is on disk was made from the old name,
                        // version and source: it goes, journaled with the
                        // change.
                        super::removals::journal(wtx, &before)?;
                    }
                }
                Ok((before, after, changed))
            })
            .await?;
        if before.source.is_some() && changed == Patched::Replaced {
            self.inner.removals_added.notify_one();
        }
        Ok((before, after))
    }

    /// Deletes a package; returns it as it was.
    pub async fn delete_package(
        &self,
        id: Uuid,
        precondition: Precondition,
    ) -> Result<Package, StoreError> {
        let gone = self
            .write_changes(move |wtx, written| {
                let current = load_for_change(wtx, id, &precondition)?;
                current
                    .check_removable()
                    .map_err(|_| StoreError::Refused(Refusal::Active))?;
                unindex(wtx, &current)?;
                wtx.open_table(PACKAGES)?.remove(id.as_u128())?;
                written.package_deleted(id);
                super::removals::journal(wtx, &current)?;
                Ok(current)
            })
            .await?;
        if gone.source.is_some() {
            self.inner.removals_added.notify_one();
        }
        Ok(gone)
    }

    /// The active version of `name`, if any.
    pub fn active_version(&self, name: &PackageName) -> Result<Option<Package>, StoreError> {
        self.read(|rtx| {
            let index = rtx.open_table(PACKAGES_BY_NAME)?;
            let rows = rtx.open_table(PACKAGES)?;
            for entry in index.range((name.as_str(), 0)..=(name.as_str(), u128::MAX))? {
                let p = get_in(&rows, Uuid::from_u128(entry?.0.value().1))?;
                if p.status == Status::Active {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        })
    }

    /// Every package with a source: the ones that own files (read through
    /// the digest index, so a large catalogue of entries without a source
    /// costs nothing).
    pub fn packages_with_files(&self) -> Result<Vec<Package>, StoreError> {
        self.read(|rtx| {
            let index = rtx.open_table(PACKAGES_BY_DIGEST)?;
            let rows = rtx.open_table(PACKAGES)?;
            index
                .iter()?
                .map(|entry| get_in(&rows, Uuid::from_u128(entry?.0.value().1)))
                .collect()
        })
    }

    /// Whether any package's source names this digest.
    pub fn digest_in_use(
        &self,
        digest: &crate::domain::source::Sha256,
    ) -> Result<bool, StoreError> {
        // A package that names it but is `created` with no download in
        // flight has nothing on the machine (retention put it back there):
        // it does not hold the artifact.
        self.read(|rtx| {
            let index = rtx.open_table(PACKAGES_BY_DIGEST)?;
            let rows = rtx.open_table(PACKAGES)?;
            let ops = rtx.open_table(super::tables::OPERATIONS)?;
            for entry in index.range((&digest.0, 0)..=(&digest.0, u128::MAX))? {
                let p = get_in(&rows, Uuid::from_u128(entry?.0.value().1))?;
                if p.status != Status::Created {
                    return Ok(true);
                }
                if let Some(op) = p.operation_id {
                    let op = super::operations::read_operation(&ops, op)?;
                    if op.kind == crate::domain::operation::OperationKind::Download {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn new(name: &str, version: &str) -> NewPackage {
        NewPackage {
            name: PackageName::parse(name).unwrap(),
            version: PackageVersion::parse(version).unwrap(),
            source: None,
        }
    }

    /// A file of schema `version` holding one downloaded `jq 1.7` in this
    /// record form, with its indexes.
    fn old_file(path: &std::path::Path, version: u64, id: Uuid, record: PackageRecord) {
        crate::store::schema::old_files::write(path, version, |wtx| {
            wtx.open_table(PACKAGES)
                .unwrap()
                .insert(id.as_u128(), encode(&record).unwrap().as_slice())
                .unwrap();
            wtx.open_table(PACKAGES_BY_NAME_VERSION)
                .unwrap()
                .insert(("jq", "1.7"), id.as_u128())
                .unwrap();
            wtx.open_table(PACKAGES_BY_NAME)
                .unwrap()
                .insert(("jq", id.as_u128()), ())
                .unwrap();
            wtx.open_table(PACKAGES_BY_STATUS)
                .unwrap()
                .insert((status_code(Status::Downloaded), id.as_u128()), ())
                .unwrap();
        });
    }

    fn jq_v1() -> PackageV1 {
        PackageV1 {
            name: "jq".into(),
            version: "1.7".into(),
            status: status_code(Status::Downloaded),
            operation_id: None,
            revision: 4,
            created_at: 10,
            updated_at: 20,
        }
    }

    /// Opens (migrating) the file, checks the package reads back as it
    /// was, and returns the record as it is now stored.
    fn migrated(path: &std::path::Path, id: Uuid) -> (Package, PackageRecord) {
        let store = Store::open(path, &StoreOptions::default()).unwrap();
        let p = store.get_package(id).unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.status, p.revision),
            ("jq", "1.7", Status::Downloaded, 4)
        );
        store.close();
        drop(store);
        let (version, bytes) = crate::store::schema::old_files::read(path, PACKAGES, id.as_u128());
        assert_eq!(version, crate::store::SCHEMA_VERSION);
        (p, decode::<PackageRecord>("packages", &bytes).unwrap())
    }

    /// A file written by schema 2 (packages without a source) opens, is
    /// migrated in one transaction, and its packages read back as they
    /// were, with no source.
    #[tokio::test]
    async fn schema_2_packages_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        let id = Uuid::now_v7();
        old_file(&path, 2, id, PackageRecord::V1(jq_v1()));
        let (p, record) = migrated(&path, id);
        assert_eq!(p.source, None);
        assert!(
            matches!(
                record,
                PackageRecord::V4(PackageV4 {
                    v3: PackageV3 { source: None, .. },
                    channel_id: None,
                    pinned: false,
                    last_active_at: None,
                })
            ),
            "{record:?}"
        );
    }

    /// Schema 6 packages had no channel and no `pinned`: they are
    /// rewritten as V4, made by hand and not pinned, the signature kept.
    #[tokio::test]
    async fn schema_6_packages_are_migrated_unpinned_and_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        let id = Uuid::now_v7();
        let v3 = PackageRecord::V3(PackageV3 {
            v1: jq_v1(),
            source: Some(SourceV2 {
                v1: SourceV1 {
                    url: "https://example.com/jq.tar.gz".into(),
                    sha256: [7; 32],
                    size: None,
                },
                signature: Some("untrusted comment: x".into()),
            }),
        });
        old_file(&path, 6, id, v3);
        let (p, record) = migrated(&path, id);
        assert_eq!((p.channel_id, p.pinned), (None, false));
        assert_eq!(
            p.source.and_then(|s| s.signature().map(str::to_owned)),
            Some("untrusted comment: x".into())
        );
        assert!(
            matches!(
                record,
                PackageRecord::V4(PackageV4 {
                    channel_id: None,
                    pinned: false,
                    ..
                })
            ),
            "{record:?}"
        );
    }

    /// Schema 5 sources had no signature: they are rewritten in the
    /// current form, the source whole, with none.
    #[tokio::test]
    async fn schema_5_sources_are_migrated_unsigned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        let id = Uuid::now_v7();
        let source = SourceV1 {
            url: "https://example.com/jq.tar.gz".into(),
            sha256: [7; 32],
            size: Some(123),
        };
        let v2 = PackageRecord::V2(PackageV2 {
            v1: jq_v1(),
            source: Some(source),
        });
        old_file(&path, 5, id, v2);
        let (p, record) = migrated(&path, id);
        let source = p.source.expect("the source kept");
        assert_eq!(
            (
                source.url(),
                source.sha256().0,
                source.size(),
                source.signature()
            ),
            ("https://example.com/jq.tar.gz", [7; 32], Some(123), None)
        );
        assert!(
            matches!(
                record,
                PackageRecord::V4(PackageV4 {
                    v3: PackageV3 {
                        source: Some(SourceV2 {
                            signature: None,
                            ..
                        }),
                        ..
                    },
                    ..
                })
            ),
            "{record:?}"
        );
    }

    /// Schema 3 allowed several active versions of a name; the migration
    /// to schema 4 keeps the one changed last and makes the others
    /// `downloaded`, in the transaction that sets the new version.
    #[tokio::test]
    async fn schema_3_files_get_one_active_version_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.redb");
        let row = |name: &str, version: &str, status: Status, updated_at: i64| Package {
            id: Uuid::now_v7(),
            name: PackageName::parse(name).unwrap(),
            version: PackageVersion::parse(version).unwrap(),
            status,
            source: None,
            operation_id: None,
            channel_id: None,
            pinned: false,
            last_active_at: None,
            revision: 3,
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(updated_at),
        };
        let older = row("jq", "1.6", Status::Active, 10);
        let newer = row("jq", "1.7", Status::Active, 20);
        let alone = row("curl", "8.0", Status::Active, 5);
        let idle = row("jq", "1.5", Status::Downloaded, 30);
        let all = [older.clone(), newer.clone(), alone.clone(), idle.clone()];
        crate::store::schema::old_files::write(&path, 3, |wtx| {
            for p in &all {
                put(wtx, &mut Written::untold(), p).unwrap();
            }
        });
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let status = |p: &Package| store.get_package(p.id).unwrap();
        assert_eq!(status(&newer).status, Status::Active);
        assert_eq!(status(&alone).status, Status::Active);
        assert_eq!(status(&idle), idle);
        let demoted = status(&older);
        assert_eq!((demoted.status, demoted.revision), (Status::Downloaded, 4));
        assert_eq!(
            store.active_version(&newer.name).unwrap().map(|p| p.id),
            Some(newer.id)
        );
        let active = store
            .list_packages(&ListPackages {
                status: Some(Status::Active),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(active.items.len(), 2, "the status index follows");
        store.close();
        drop(store);
        let (version, _) =
            crate::store::schema::old_files::read(&path, PACKAGES, newer.id.as_u128());
        assert_eq!(version, crate::store::SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn an_active_package_is_neither_deleted_nor_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let mut p = Package {
            id: Uuid::now_v7(),
            name: PackageName::parse("jq").unwrap(),
            version: PackageVersion::parse("1.7").unwrap(),
            status: Status::Active,
            source: None,
            operation_id: None,
            channel_id: None,
            pinned: false,
            last_active_at: None,
            revision: 1,
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(1),
        };
        crate::store::schema::old_files::write(&path, crate::store::SCHEMA_VERSION, |wtx| {
            put(wtx, &mut Written::untold(), &p).unwrap();
        });
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let refused = store.delete_package(p.id, Precondition::None).await;
        assert!(
            matches!(refused, Err(StoreError::Refused(Refusal::Active))),
            "{refused:?}"
        );
        let refused = store
            .update_package(
                p.id,
                PackagePatch {
                    version: Some(PackageVersion::parse("1.8").unwrap()),
                    ..PackagePatch::default()
                },
                Precondition::None,
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Refused(Refusal::Active))),
            "{refused:?}"
        );
        assert_eq!(store.get_package(p.id).unwrap(), p);
        // The same name and version again is no change, so it is not refused.
        let (_, after) = store
            .update_package(
                p.id,
                PackagePatch {
                    version: Some(p.version.clone()),
                    ..PackagePatch::default()
                },
                Precondition::None,
            )
            .await
            .unwrap();
        p.revision = after.revision;
        assert_eq!(after, p);
        store.close();
    }

    #[tokio::test]
    async fn indexes_follow_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.redb"), &StoreOptions::default()).unwrap();
        let a = store.create_package(new("a", "1")).await.unwrap();
        let b = store.create_package(new("a", "2")).await.unwrap();
        store.create_package(new("b", "1")).await.unwrap();

        let by_name = |name: &str| {
            store
                .list_packages(&ListPackages {
                    name: Some(name.into()),
                    limit: 10,
                    ..Default::default()
                })
                .unwrap()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(by_name("a"), vec![a.id, b.id]);

        // Renaming moves the package between name index entries and frees the pair.
        store
            .update_package(
                a.id,
                PackagePatch {
                    name: Some(PackageName::parse("c").unwrap()),
                    ..PackagePatch::default()
                },
                Precondition::None,
            )
            .await
            .unwrap();
        assert_eq!(by_name("a"), vec![b.id]);
        assert_eq!(by_name("c"), vec![a.id]);
        store.create_package(new("a", "1")).await.unwrap();

        store
            .delete_package(b.id, Precondition::None)
            .await
            .unwrap();
        assert_eq!(by_name("a").len(), 1);
        let created = store
            .list_packages(&ListPackages {
                status: Some(Status::Created),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(created.items.len(), 3);
        store.close();
    }
}
