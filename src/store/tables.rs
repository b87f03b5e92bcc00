//! Every redb table packd keeps, with its key and value types, and
//! `each_table!`, the one list of them that creating, copying and the tests
//! walk, so a backup or a migration cannot miss a table.
//!
//! Ids are UUID v7 stored as `u128`: big-endian numeric order is creation
//! order, so "oldest first" is plain key order and a cursor is the last id seen.

use redb::{Key, ReadTransaction, ReadableTable, TableDefinition, Value, WriteTransaction};

/// `schema_version` -> the layout version of the whole file.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// package id -> postcard `PackageRecord`.
pub(crate) const PACKAGES: TableDefinition<u128, &[u8]> = TableDefinition::new("packages");
/// (name, version) -> package id. Enforces the uniqueness of the pair.
pub(crate) const PACKAGES_BY_NAME_VERSION: TableDefinition<(&str, &str), u128> =
    TableDefinition::new("packages_by_name_version");
/// (name, package id) -> (). Serves `?name=` in id order without a scan.
pub(crate) const PACKAGES_BY_NAME: TableDefinition<(&str, u128), ()> =
    TableDefinition::new("packages_by_name");
/// (status code, package id) -> (). Serves `?status=` in id order without a scan.
pub(crate) const PACKAGES_BY_STATUS: TableDefinition<(u8, u128), ()> =
    TableDefinition::new("packages_by_status");

/// (source SHA-256, package id) -> (): whether a digest is still needed,
/// so an artifact goes when the last package that names it does.
pub(crate) const PACKAGES_BY_DIGEST: TableDefinition<(&[u8; 32], u128), ()> =
    TableDefinition::new("packages_by_digest");

/// key id -> postcard `KeyRecord`.
pub(crate) const KEYS: TableDefinition<u128, &[u8]> = TableDefinition::new("keys");
/// SHA-256 of a secret -> key id: the current secret, and the previous one
/// during a rotation's grace period.
pub(crate) const KEYS_BY_HASH: TableDefinition<&[u8; 32], u128> =
    TableDefinition::new("keys_by_hash");

/// entry id (UUID v7, so time order) -> postcard `AuditRecord`.
pub(crate) const AUDIT: TableDefinition<u128, &[u8]> = TableDefinition::new("audit");

/// operation id -> postcard `OperationRecord`.
pub(crate) const OPERATIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("operations");
/// (due time in µs, operation id) -> (): the queue, in the order work is due.
pub(crate) const OPERATIONS_QUEUE: TableDefinition<(u64, u128), ()> =
    TableDefinition::new("operations_queue");
/// (package id, operation id) -> (): `?package_id=`.
pub(crate) const OPERATIONS_BY_PACKAGE: TableDefinition<(u128, u128), ()> =
    TableDefinition::new("operations_by_package");
/// (state code, operation id) -> (): `?state=`, recovery and pruning.
pub(crate) const OPERATIONS_BY_STATE: TableDefinition<(u8, u128), ()> =
    TableDefinition::new("operations_by_state");
/// (acting key id, Idempotency-Key) -> postcard `IdempotencyRecord`.
pub(crate) const IDEMPOTENCY: TableDefinition<(u128, &str), &[u8]> =
    TableDefinition::new("idempotency");

/// removal id (UUID v7) -> postcard `RemovalRecord`: files a change left
/// behind (a deleted package's, or its old name's or version's), written in
/// the change's transaction and removed once the files are gone.
pub(crate) const REMOVALS: TableDefinition<u128, &[u8]> = TableDefinition::new("removals");

/// `"identity"` -> postcard `IdentityRecord`: this database's id and the
/// data directory it belongs to.
pub(crate) const IDENTITY: TableDefinition<&str, &[u8]> = TableDefinition::new("identity");
pub(crate) const IDENTITY_KEY: &str = "identity";

/// channel id (UUID v7) -> postcard `ChannelRecord`: the channels this
/// host follows.
pub(crate) const CHANNELS: TableDefinition<u128, &[u8]> = TableDefinition::new("channels");

/// Runs `$apply!(TABLE)` for every table of the current schema: the one
/// list that creating, copying (backups) and the tests walk, so a new table
/// cannot be forgotten by any of them.
macro_rules! each_table {
    ($apply:ident) => {
        $apply!(META);
        $apply!(PACKAGES);
        $apply!(PACKAGES_BY_NAME_VERSION);
        $apply!(PACKAGES_BY_NAME);
        $apply!(PACKAGES_BY_STATUS);
        $apply!(PACKAGES_BY_DIGEST);
        $apply!(KEYS);
        $apply!(KEYS_BY_HASH);
        $apply!(AUDIT);
        $apply!(OPERATIONS);
        $apply!(OPERATIONS_QUEUE);
        $apply!(OPERATIONS_BY_PACKAGE);
        $apply!(OPERATIONS_BY_STATE);
        $apply!(IDEMPOTENCY);
        $apply!(REMOVALS);
        $apply!(IDENTITY);
        $apply!(CHANNELS);
    };
}

/// Names of every table of the current schema, for tests.
#[cfg(test)]
pub(crate) fn all_names() -> Vec<&'static str> {
    use redb::TableHandle;
    let mut names = Vec::new();
    macro_rules! name {
        ($t:ident) => {
            names.push($t.name())
        };
    }
    each_table!(name);
    names
}

/// Opens (and on a new file, creates) every table, so readers never meet a
/// missing table.
pub(crate) fn create_all(tx: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    macro_rules! create {
        ($t:ident) => {
            tx.open_table($t)?
        };
    }
    each_table!(create);
    Ok(())
}

/// Copies every table into `dst`, for backups. The backup test compares the
/// row count of every table in the file with the copy's.
pub(crate) fn copy_all(src: &ReadTransaction, dst: &WriteTransaction) -> Result<(), redb::Error> {
    macro_rules! copy_table {
        ($t:ident) => {
            copy(src, dst, $t)?
        };
    }
    each_table!(copy_table);
    Ok(())
}

fn copy<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), redb::Error> {
    let from = src.open_table(table)?;
    let mut to = dst.open_table(table)?;
    for entry in from.iter()? {
        let (k, v) = entry?;
        to.insert(k.value(), v.value())?;
    }
    Ok(())
}
