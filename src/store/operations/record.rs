//! How an operation is stored: its versioned record (V2 added the transfer
//! checkpoint), the idempotency record, the fixed codes of kinds and
//! states, and the migration that rewrote V1 records.

use redb::WriteTransaction;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::super::codec::{decode, encode, stored_codes};
use super::super::tables::OPERATIONS;
use super::super::{Failure, StoreError};
use crate::domain::Timestamp;
use crate::domain::operation::OperationKind;
use crate::domain::operation::{Operation, OperationState, Transfer};

/// Versions of a stored operation. V1 (schema 2 and before) had no
/// transfer checkpoint; the migration to schema 3 rewrites every V1 record
/// as V2, and reading still accepts V1 so the migration can decode them.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum OperationRecord {
    V1(OperationV1),
    V2(OperationV2),
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct OperationV2 {
    v1: OperationV1,
    bytes_done: Option<u64>,
    bytes_total: Option<u64>,
    validator: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct OperationV1 {
    package_id: u128,
    kind: u8,
    state: u8,
    progress: u8,
    attempts: u32,
    error: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    cancel_requested: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum IdempotencyRecord {
    V1(IdempotencyV1),
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct IdempotencyV1 {
    /// The call the key was first used for: `kind` and package id.
    pub(super) kind: u8,
    pub(super) package_id: u128,
    pub(super) operation_id: u128,
    pub(super) created_at: i64,
}

stored_codes!("operation kind", OperationKind, kind_code, kind_from_code {
    Download = 0,
    Activate = 1,
    Deactivate = 2,
    Sync = 3,
});

stored_codes!("operation state", OperationState, state_code, state_from_code {
    Queued = 0,
    Running = 1,
    Succeeded = 2,
    Failed = 3,
    Cancelled = 4,
});

pub(super) fn to_record(o: &Operation) -> OperationRecord {
    OperationRecord::V2(OperationV2 {
        v1: OperationV1 {
            package_id: o.package_id.as_u128(),
            kind: kind_code(o.kind),
            state: state_code(o.state),
            progress: o.progress,
            attempts: o.attempts,
            error: o.error.clone(),
            created_at: o.created_at.as_micros(),
            started_at: o.started_at.map(Timestamp::as_micros),
            finished_at: o.finished_at.map(Timestamp::as_micros),
            cancel_requested: o.cancel_requested,
        },
        bytes_done: o.transfer.bytes_done,
        bytes_total: o.transfer.bytes_total,
        validator: o.transfer.validator.clone(),
    })
}

pub(super) fn from_record(id: u128, bytes: &[u8]) -> Result<Operation, StoreError> {
    let (r, transfer) = match decode::<OperationRecord>("operations", bytes)? {
        OperationRecord::V1(r) => (r, Transfer::default()),
        OperationRecord::V2(OperationV2 {
            v1,
            bytes_done,
            bytes_total,
            validator,
        }) => (
            v1,
            Transfer {
                bytes_done,
                bytes_total,
                validator,
            },
        ),
    };
    Ok(Operation {
        id: Uuid::from_u128(id),
        package_id: Uuid::from_u128(r.package_id),
        kind: kind_from_code(r.kind)?,
        state: state_from_code(r.state)?,
        progress: r.progress,
        attempts: r.attempts,
        error: r.error,
        created_at: Timestamp::from_micros(r.created_at),
        started_at: r.started_at.map(Timestamp::from_micros),
        finished_at: r.finished_at.map(Timestamp::from_micros),
        cancel_requested: r.cancel_requested,
        transfer,
    })
}

/// Schema 2 -> 3: every operation record is rewritten as V2 (no transfer),
/// inside the migration's transaction.
pub(in crate::store) fn migrate_operations_to_v2(
    wtx: &WriteTransaction,
) -> Result<usize, StoreError> {
    super::super::schema::rewrite_records(wtx, OPERATIONS, |id, bytes| {
        encode(&to_record(&from_record(id, bytes)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    /// A schema 2 operation (no transfer checkpoint) is rewritten as V2 by
    /// the migration to schema 3 and reads back as it was.
    #[tokio::test]
    async fn schema_2_operations_are_migrated_to_v2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        let id = Uuid::now_v7();
        crate::store::schema::old_files::write(&path, 2, |wtx| {
            let v1 = OperationRecord::V1(OperationV1 {
                package_id: 7,
                kind: kind_code(OperationKind::Download),
                state: state_code(OperationState::Succeeded),
                progress: 100,
                attempts: 2,
                error: Some("an earlier attempt".into()),
                created_at: 1,
                started_at: Some(2),
                finished_at: Some(3),
                cancel_requested: false,
            });
            wtx.open_table(OPERATIONS)
                .unwrap()
                .insert(id.as_u128(), encode(&v1).unwrap().as_slice())
                .unwrap();
        });
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let op = store.get_operation(id).unwrap();
        assert_eq!(
            (op.kind, op.state, op.attempts, op.error.as_deref()),
            (
                OperationKind::Download,
                OperationState::Succeeded,
                2,
                Some("an earlier attempt")
            )
        );
        assert_eq!(op.transfer, Transfer::default());
        store.close();
        drop(store);
        let (version, bytes) =
            crate::store::schema::old_files::read(&path, OPERATIONS, id.as_u128());
        assert_eq!(version, crate::store::SCHEMA_VERSION);
        let record = decode::<OperationRecord>("operations", &bytes).unwrap();
        assert!(matches!(record, OperationRecord::V2(_)), "{record:?}");
    }
}
