//! The steps every operation write is made of, inside a transaction:
//! load, save (with the state index), apply what a rule of
//! `domain::operation` decided (queue entry, package release, the name's
//! displaced version), and the claim of the first due entry.

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::super::codec::encode;
use super::super::events::Written;
use super::super::packages::{
    self, get_in as get_package_in, put as put_package, unindex as unindex_package,
};
use super::super::tables::{
    OPERATIONS, OPERATIONS_BY_PACKAGE, OPERATIONS_BY_STATE, OPERATIONS_QUEUE, PACKAGES,
};
use super::super::{Refusal, StoreError};
use super::Claim;
use super::record::{from_record, state_code, to_record};
use crate::domain::Timestamp;
use crate::domain::operation::{CannotStart, Change, Operation, OperationKind, OperationState};
use crate::domain::package::{Package, Status};

pub(super) fn due_key(t: Timestamp) -> u64 {
    u64::try_from(t.as_micros()).unwrap_or(0)
}

pub(crate) fn load(wtx: &WriteTransaction, id: Uuid) -> Result<Operation, StoreError> {
    let table = wtx.open_table(OPERATIONS)?;
    let row = table
        .get(id.as_u128())?
        .ok_or(StoreError::Refused(Refusal::NotFound))?;
    from_record(id.as_u128(), row.value())
}

/// Writes `after` over `before` (None: new), keeping the state index true,
/// and records the change.
pub(super) fn save(
    wtx: &WriteTransaction,
    written: &mut Written,
    before: Option<&Operation>,
    after: &Operation,
) -> Result<(), StoreError> {
    written.operation(after);
    let id = after.id.as_u128();
    let mut by_state = wtx.open_table(OPERATIONS_BY_STATE)?;
    if let Some(b) = before {
        if b.state != after.state {
            by_state.remove((state_code(b.state), id))?;
            by_state.insert((state_code(after.state), id), ())?;
        }
    } else {
        by_state.insert((state_code(after.state), id), ())?;
        wtx.open_table(OPERATIONS_BY_PACKAGE)?
            .insert((after.package_id.as_u128(), id), ())?;
    }
    wtx.open_table(OPERATIONS)?
        .insert(id, encode(&to_record(after))?.as_slice())?;
    Ok(())
}

/// Clears the package's in-flight mark, and on success gives it its new
/// status (and the name's displaced version its own).
pub(super) fn release_package(
    wtx: &WriteTransaction,
    written: &mut Written,
    op: &Operation,
    new_status: Option<Status>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let before = match get_package_in(&wtx.open_table(PACKAGES)?, op.package_id) {
        Ok(p) => p,
        // Deleted packages cannot have an operation in flight; nothing to release.
        Err(StoreError::Refused(Refusal::NotFound)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if before.operation_id != Some(op.id) {
        return Ok(());
    }
    let mut after = before.clone();
    after.operation_id = None;
    if let Some(status) = new_status {
        if before.status == Status::Active && status != Status::Active {
            after.last_active_at = Some(now);
        }
        after.status = status;
    }
    after.revision += 1;
    after.updated_at = now;
    unindex_package(wtx, &before)?;
    put_package(wtx, written, &after)?;
    // One version of a name is active: the one an activation replaces goes
    // back to `downloaded` in the same transaction.
    if let (Some(_), Some((from, to))) = (new_status, op.kind.displaces()) {
        for other in packages::of_name(wtx, &after.name)? {
            if other.id != after.id && other.status == from {
                packages::set_status(wtx, written, &other, to, now)?;
            }
        }
    }
    Ok(())
}

/// The operation of another version of `package`'s name that is changing
/// the name's link (an activate or deactivate in flight), if any: what
/// `Operation::start` needs to keep `active/<name>` to one writer.
pub(super) fn link_writer(
    wtx: &WriteTransaction,
    package: &crate::domain::package::Package,
) -> Result<Option<Uuid>, StoreError> {
    for other in packages::of_name(wtx, &package.name)? {
        let Some(operation_id) = other.operation_id else {
            continue;
        };
        if other.id != package.id && load(wtx, operation_id)?.kind.changes_link() {
            return Ok(Some(operation_id));
        }
    }
    Ok(None)
}

/// Starts `kind` on `package` if the rules of `Operation::start` let it:
/// the operation, its queue entry and the package's in-flight mark. The
/// write counts it and wakes a worker after the commit.
pub(crate) fn start_in(
    wtx: &WriteTransaction,
    written: &mut Written,
    package: &Package,
    kind: OperationKind,
    now: Timestamp,
) -> Result<Operation, StoreError> {
    let link_writer = link_writer(wtx, package)?;
    let op =
        Operation::start(Uuid::now_v7(), package, kind, link_writer, now).map_err(|refused| {
            StoreError::Refused(match refused {
                CannotStart::InFlight(operation_id) => {
                    Refusal::OperationInProgress { operation_id }
                }
                CannotStart::WrongStatus { needed, actual } => Refusal::InvalidTransition {
                    kind,
                    needed,
                    actual,
                },
                CannotStart::NameBusy(operation_id) => Refusal::NameBusy { operation_id },
                CannotStart::NotForPackages => {
                    Refusal::Conflict(format!("{kind} is not a package's operation"))
                }
            })
        })?;
    enqueue_new(wtx, written, &op, now)?;
    let mut marked = package.clone();
    marked.operation_id = Some(op.id);
    marked.revision += 1;
    marked.updated_at = now;
    put_package(wtx, written, &marked)?;
    Ok(op)
}

/// Saves a new operation with its queue entry, due now.
pub(crate) fn enqueue_new(
    wtx: &WriteTransaction,
    written: &mut Written,
    op: &Operation,
    now: Timestamp,
) -> Result<(), StoreError> {
    save(wtx, written, None, op)?;
    wtx.open_table(OPERATIONS_QUEUE)?
        .insert((due_key(now), op.id.as_u128()), ())?;
    written.started.push(op.kind);
    Ok(())
}

/// Writes what a rule of `domain::operation` decided: the record and its
/// indexes, the queue entry, and for a finished operation the package (its
/// in-flight mark cleared and, on success, its new status). Returns the
/// operation as written, if anything changed.
pub(super) fn apply(
    wtx: &WriteTransaction,
    written: &mut Written,
    before: &Operation,
    change: Change,
    now: Timestamp,
) -> Result<Option<Operation>, StoreError> {
    let (op, finished) = match change {
        Change::Nothing => return Ok(None),
        Change::Update(op) => (op, false),
        Change::Requeue { op, due } => {
            wtx.open_table(OPERATIONS_QUEUE)?
                .insert((due_key(due), op.id.as_u128()), ())?;
            (op, false)
        }
        Change::Finish(op) => {
            if before.state == OperationState::Queued {
                remove_from_queue(wtx, op.id)?;
            }
            (op, true)
        }
    };
    // The operation first, then what its end did to packages: subscribers
    // see them in that order.
    save(wtx, written, Some(before), &op)?;
    if finished && op.kind == OperationKind::Sync {
        super::super::channels::release(wtx, written, &op, now)?;
    } else if finished {
        let new_status = (op.state == OperationState::Succeeded)
            .then(|| op.kind.transition().map(|(_, to)| to))
            .flatten();
        release_package(wtx, written, &op, new_status, now)?;
        if op.kind == OperationKind::Download && op.state == OperationState::Succeeded {
            super::super::channels::follow_download(wtx, written, op.package_id, now)?;
        }
    }
    Ok(Some(op))
}

/// Removes a queued operation's queue entry. The entry's due time is not on
/// the record, so it is found by id (cancel of a queued operation only).
pub(super) fn remove_from_queue(wtx: &WriteTransaction, id: Uuid) -> Result<(), StoreError> {
    let mut queue = wtx.open_table(OPERATIONS_QUEUE)?;
    let entry = queue
        .iter()?
        .map(|r| r.map(|(k, _)| k.value()))
        .find(|r| r.as_ref().is_ok_and(|(_, op)| *op == id.as_u128()))
        .transpose()?;
    if let Some(key) = entry {
        queue.remove(key)?;
    }
    Ok(())
}

/// The claim step, inside a transaction: takes the first due entry off the
/// queue and marks its operation running. Reads everything it needs before
/// it writes.
pub(super) fn claim_in(
    wtx: &WriteTransaction,
    written: &mut Written,
    now: Timestamp,
) -> Result<Claim, StoreError> {
    let first = wtx
        .open_table(OPERATIONS_QUEUE)?
        .first()?
        .map(|(k, _)| k.value());
    let Some((due, id)) = first else {
        return Ok(Claim::Idle(None));
    };
    if due > due_key(now) {
        return Ok(Claim::Idle(Some(Timestamp::from_micros(
            i64::try_from(due).unwrap_or(i64::MAX),
        ))));
    }
    let before = load(wtx, Uuid::from_u128(id))?;
    let op = before.claim(now);
    wtx.open_table(OPERATIONS_QUEUE)?.remove((due, id))?;
    save(wtx, written, Some(&before), &op)?;
    Ok(Claim::Work(op))
}
