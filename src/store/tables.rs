//! Every redb table packd keeps, with its key and value types. One list, so a
//! backup or a migration cannot miss a table.
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

/// Names of every table of the current schema, for integrity checks and tests.
#[cfg(test)]
pub(crate) const ALL: &[&str] = &[
    "meta",
    "packages",
    "packages_by_name_version",
    "packages_by_name",
    "packages_by_status",
    "keys",
    "keys_by_hash",
    "audit",
    "operations",
    "operations_queue",
    "operations_by_package",
    "operations_by_state",
    "idempotency",
];

/// Opens (and on a new file, creates) every table, so readers never meet a
/// missing table.
pub(crate) fn create_all(tx: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    tx.open_table(META)?;
    tx.open_table(PACKAGES)?;
    tx.open_table(PACKAGES_BY_NAME_VERSION)?;
    tx.open_table(PACKAGES_BY_NAME)?;
    tx.open_table(PACKAGES_BY_STATUS)?;
    tx.open_table(KEYS)?;
    tx.open_table(KEYS_BY_HASH)?;
    tx.open_table(AUDIT)?;
    tx.open_table(OPERATIONS)?;
    tx.open_table(OPERATIONS_QUEUE)?;
    tx.open_table(OPERATIONS_BY_PACKAGE)?;
    tx.open_table(OPERATIONS_BY_STATE)?;
    tx.open_table(IDEMPOTENCY)?;
    Ok(())
}

/// Copies every table into `dst`, for backups. Keep it in step with
/// `create_all`: the backup test compares the row count of every table in the
/// file with the copy's, so a table left out here fails it.
pub(crate) fn copy_all(src: &ReadTransaction, dst: &WriteTransaction) -> Result<(), redb::Error> {
    copy(src, dst, META)?;
    copy(src, dst, PACKAGES)?;
    copy(src, dst, PACKAGES_BY_NAME_VERSION)?;
    copy(src, dst, PACKAGES_BY_NAME)?;
    copy(src, dst, PACKAGES_BY_STATUS)?;
    copy(src, dst, KEYS)?;
    copy(src, dst, KEYS_BY_HASH)?;
    copy(src, dst, AUDIT)?;
    copy(src, dst, OPERATIONS)?;
    copy(src, dst, OPERATIONS_QUEUE)?;
    copy(src, dst, OPERATIONS_BY_PACKAGE)?;
    copy(src, dst, OPERATIONS_BY_STATE)?;
    copy(src, dst, IDEMPOTENCY)?;
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
