//! The schema version of the file: read, checked (a newer file is refused
//! untouched), written on a new file, and migrations from older ones, all
//! in one transaction with the version they lead to.

use std::path::Path;

use redb::{Database, ReadTransaction, ReadableDatabase};

use super::error::other;
use super::{OpenError, StoreError, identity, keys, operations, packages, tables};

/// The layout version this binary writes and understands.
pub const SCHEMA_VERSION: u64 = 7;

/// What the `meta` table says about a file.
pub(super) enum Schema {
    /// No tables at all: a new file.
    Empty,
    Version(u64),
    /// Tables, but not packd's.
    Foreign(Vec<String>),
}

pub(super) fn read_schema(rtx: &ReadTransaction, path: &Path) -> Result<Schema, OpenError> {
    use redb::TableHandle;
    let names: Vec<String> = rtx
        .list_tables()
        .map_err(|e| other(path, &e))?
        .map(|t| t.name().to_string())
        .collect();
    if names.is_empty() {
        return Ok(Schema::Empty);
    }
    if !names.iter().any(|n| n == "meta") {
        return Ok(Schema::Foreign(names));
    }
    let meta = rtx.open_table(tables::META).map_err(|e| other(path, &e))?;
    let version = meta
        .get(tables::SCHEMA_VERSION_KEY)
        .map_err(|e| other(path, &e))?
        .map(|v| v.value());
    Ok(version.map_or(Schema::Foreign(names), Schema::Version))
}

pub(super) fn check_schema(schema: Schema, path: &Path) -> Result<Schema, OpenError> {
    match schema {
        Schema::Version(v) if v > SCHEMA_VERSION => Err(OpenError::NewerSchema {
            path: path.to_path_buf(),
            found: v,
            supported: SCHEMA_VERSION,
        }),
        Schema::Foreign(names) => Err(OpenError::Foreign {
            path: path.to_path_buf(),
            reason: format!(
                "a redb file without packd's schema version (tables: {})",
                names.join(", ")
            ),
        }),
        ok => Ok(ok),
    }
}

/// A new file gets its tables and version in one transaction; an existing one
/// must carry a version this binary understands.
pub(super) fn init_or_check_schema(db: &Database, path: &Path) -> Result<(), OpenError> {
    let rtx = db.begin_read().map_err(|e| other(path, &e))?;
    let schema = check_schema(read_schema(&rtx, path)?, path)?;
    drop(rtx);

    let mut wtx = db.begin_write().map_err(|e| other(path, &e))?;
    wtx.set_quick_repair(true);
    // Creating every table (a no-op for those that exist) keeps readers free
    // of "no such table" whatever version wrote the file.
    tables::create_all(&wtx).map_err(|e| other(path, &e))?;
    let migrate_from = match schema {
        Schema::Version(v) if v < SCHEMA_VERSION => Some(v),
        _ => None,
    };
    // Every database has an identity (made here for a new file and for one
    // older than schema 5).
    identity::ensure(&wtx).map_err(|e| other(path, &e))?;
    if let Some(from) = migrate_from {
        migrate(&wtx, from).map_err(|e| other(path, &e))?;
        tracing::info!(from, to = SCHEMA_VERSION, db = %path.display(), "migrated the database");
    }
    if matches!(schema, Schema::Empty) || migrate_from.is_some() {
        wtx.open_table(tables::META)
            .map_err(|e| other(path, &e))?
            .insert(tables::SCHEMA_VERSION_KEY, SCHEMA_VERSION)
            .map_err(|e| other(path, &e))?;
    }
    // The migration and the new version commit together, or neither does.
    wtx.commit().map_err(|e| other(path, &e))?;
    Ok(())
}

/// Rewrites every record of a table keyed by id with `rewrite` (old bytes to
/// new), in slices so a large table is never held in memory at once.
pub(crate) fn rewrite_records(
    wtx: &redb::WriteTransaction,
    table: redb::TableDefinition<u128, &[u8]>,
    mut rewrite: impl FnMut(u128, &[u8]) -> Result<Vec<u8>, StoreError>,
) -> Result<usize, StoreError> {
    use redb::ReadableTable;
    const SLICE: usize = 10_000;
    let mut table = wtx.open_table(table)?;
    let mut rewritten = 0;
    let mut start = Some(0u128);
    while let Some(from) = start {
        let rows: Vec<(u128, Vec<u8>)> = table
            .range(from..)?
            .take(SLICE)
            .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        start = match rows.last() {
            Some((id, _)) if rows.len() == SLICE => id.checked_add(1),
            _ => None,
        };
        for (id, bytes) in &rows {
            table.insert(*id, rewrite(*id, bytes)?.as_slice())?;
        }
        rewritten += rows.len();
    }
    Ok(rewritten)
}

/// Brings a file from schema `from` to `SCHEMA_VERSION`, one step at a time.
fn migrate(wtx: &redb::WriteTransaction, from: u64) -> Result<(), StoreError> {
    if from < 2 {
        // 1 -> 2: keys gained a rate limit of their own.
        keys::migrate_keys_to_v2(wtx)?;
    }
    if from < 3 {
        // 2 -> 3: packages gained a source, operations a transfer checkpoint.
        packages::rewrite_packages(wtx)?;
        operations::migrate_operations_to_v2(wtx)?;
    }
    if from < 4 {
        // 3 -> 4: one version of a name is active (records unchanged).
        let demoted =
            packages::migrate_to_one_active_per_name(wtx, crate::domain::Timestamp::now())?;
        if demoted > 0 {
            tracing::warn!(
                packages = demoted,
                "several versions of a name were active; the one changed last stays active, the others are now downloaded"
            );
        }
    }
    // 4 -> 5: the removal journal and the identity (tables made by
    // `create_all`, the identity by `identity::ensure`); no record changes.
    if from < 7 {
        // 5 -> 6: sources gained a signature; 6 -> 7: packages gained the
        // channel that made them and `pinned`, and the `channels` table is
        // new (made by `create_all`). One rewrite in the current form
        // serves both.
        packages::rewrite_packages(wtx)?;
    }
    Ok(())
}

/// For migration tests: files as an older packd left them.
#[cfg(test)]
pub(crate) mod old_files {
    use std::path::Path;

    use redb::ReadableDatabase;

    use super::tables;

    /// Writes a file of schema `version` with every table and what `fill`
    /// puts in it.
    pub(crate) fn write(path: &Path, version: u64, fill: impl FnOnce(&redb::WriteTransaction)) {
        let db = redb::Database::create(path).unwrap();
        let wtx = db.begin_write().unwrap();
        tables::create_all(&wtx).unwrap();
        wtx.open_table(tables::META)
            .unwrap()
            .insert(tables::SCHEMA_VERSION_KEY, version)
            .unwrap();
        fill(&wtx);
        wtx.commit().unwrap();
    }

    /// The schema version a file says, read without packd.
    pub(crate) fn version(path: &Path) -> u64 {
        let db = redb::Database::builder().open_read_only(path).unwrap();
        version_in(&db.begin_read().unwrap())
    }

    fn version_in(rtx: &redb::ReadTransaction) -> u64 {
        rtx.open_table(tables::META)
            .unwrap()
            .get(tables::SCHEMA_VERSION_KEY)
            .unwrap()
            .unwrap()
            .value()
    }

    /// The schema version and one raw record of `table`, read without packd.
    pub(crate) fn read(
        path: &Path,
        table: redb::TableDefinition<u128, &[u8]>,
        id: u128,
    ) -> (u64, Vec<u8>) {
        let db = redb::Database::builder().open_read_only(path).unwrap();
        let rtx = db.begin_read().unwrap();
        let version = version_in(&rtx);
        let row = rtx.open_table(table).unwrap();
        let bytes = row.get(id).unwrap().unwrap().value().to_vec();
        (version, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    #[test]
    fn new_file_gets_every_table_and_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.redb"), &StoreOptions::default()).unwrap();
        let mut names = store.table_names().unwrap();
        names.sort();
        let mut expected: Vec<String> = tables::all_names().iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(names, expected);
        store.close();
    }

    #[test]
    fn a_schema_4_file_gets_the_journal_and_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        old_files::write(&path, 4, |wtx| {
            // Schema 4 had neither table.
            assert!(wtx.delete_table(tables::REMOVALS).unwrap());
            assert!(wtx.delete_table(tables::IDENTITY).unwrap());
        });
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let identity = store.identity().unwrap();
        assert_eq!(identity.data_dir, None);
        assert!(store.pending_removals(1).unwrap().is_empty());
        store.close();
        drop(store);
        assert_eq!(old_files::version(&path), SCHEMA_VERSION);
        // The identity is made once: a second open keeps it.
        let again = Store::open(&path, &StoreOptions::default()).unwrap();
        assert_eq!(again.identity().unwrap(), identity);
        again.close();
    }

    #[test]
    fn newer_schema_is_refused_and_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        {
            let db = Database::create(&path).unwrap();
            let wtx = db.begin_write().unwrap();
            wtx.open_table(tables::META)
                .unwrap()
                .insert(tables::SCHEMA_VERSION_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            wtx.commit().unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path, &StoreOptions::default())
            .err()
            .expect("must refuse");
        assert!(
            matches!(err, OpenError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade packd"));
        assert!(std::fs::read(&path).unwrap() == before, "file changed");
    }

    #[test]
    fn foreign_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            b"these are not the bytes you are looking for\n".repeat(200),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::read(&text).unwrap();
        let err = Store::open(&text, &StoreOptions::default())
            .err()
            .expect("must refuse");
        assert!(matches!(err, OpenError::Foreign { .. }), "{err}");
        assert!(std::fs::read(&text).unwrap() == before, "file changed");
        let mode = std::fs::metadata(&text).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o644,
            "the mode of a file that is not packd's changed"
        );

        let other_redb = dir.path().join("other.redb");
        {
            let db = Database::create(&other_redb).unwrap();
            let wtx = db.begin_write().unwrap();
            wtx.open_table(redb::TableDefinition::<u64, u64>::new("theirs"))
                .unwrap()
                .insert(1, 2)
                .unwrap();
            wtx.commit().unwrap();
        }
        let err = Store::open(&other_redb, &StoreOptions::default())
            .err()
            .expect("must refuse");
        assert!(matches!(err, OpenError::Foreign { .. }), "{err}");
    }
}
