//! Operations and their queue. Every state change of an operation is one
//! transaction, and the one that finishes it successfully also sets the
//! package's new status: a status never changes without its operation.

use std::time::Duration;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode, stored_codes};
use super::packages::{
    self, get_in as get_package_in, put as put_package, unindex as unindex_package,
};
use super::tables::{
    IDEMPOTENCY, OPERATIONS, OPERATIONS_BY_PACKAGE, OPERATIONS_BY_STATE, OPERATIONS_QUEUE, PACKAGES,
};
use super::{Failure, Refusal};
use super::{Page, Store, StoreError, events, page_of, paginate};
use crate::domain::Timestamp;
use crate::domain::operation::{AlreadyFinished, Change, Operation, OperationState, Transfer};
use crate::domain::package::{OperationKind, Package, Status};
use crate::metrics;

/// Versions of a stored operation. V1 (schema 2 and before) had no
/// transfer checkpoint; the migration to schema 3 rewrites every V1 record
/// as V2, and reading still accepts V1 so the migration can decode them.
#[derive(Debug, Serialize, Deserialize)]
enum OperationRecord {
    V1(OperationV1),
    V2(OperationV2),
}

#[derive(Debug, Serialize, Deserialize)]
struct OperationV2 {
    v1: OperationV1,
    bytes_done: Option<u64>,
    bytes_total: Option<u64>,
    validator: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OperationV1 {
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
enum IdempotencyRecord {
    V1(IdempotencyV1),
}

#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyV1 {
    /// The call the key was first used for: `kind` and package id.
    kind: u8,
    package_id: u128,
    operation_id: u128,
    created_at: i64,
}

stored_codes!("operation kind", OperationKind, kind_code, kind_from_code {
    Download = 0,
    Activate = 1,
    Deactivate = 2,
});

stored_codes!("operation state", OperationState, state_code, state_from_code {
    Queued = 0,
    Running = 1,
    Succeeded = 2,
    Failed = 3,
    Cancelled = 4,
});

fn to_record(o: &Operation) -> OperationRecord {
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

fn from_record(id: u128, bytes: &[u8]) -> Result<Operation, StoreError> {
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
pub(super) fn migrate_operations_to_v2(wtx: &WriteTransaction) -> Result<usize, StoreError> {
    super::schema::rewrite_records(wtx, OPERATIONS, |id, bytes| {
        encode(&to_record(&from_record(id, bytes)?))
    })
}

fn due_key(t: Timestamp) -> u64 {
    u64::try_from(t.as_micros()).unwrap_or(0)
}

fn load(wtx: &WriteTransaction, id: Uuid) -> Result<Operation, StoreError> {
    let table = wtx.open_table(OPERATIONS)?;
    let row = table
        .get(id.as_u128())?
        .ok_or(StoreError::Refused(Refusal::NotFound))?;
    from_record(id.as_u128(), row.value())
}

/// Writes `after` over `before` (None: new), keeping the state index true.
fn save(
    wtx: &WriteTransaction,
    before: Option<&Operation>,
    after: &Operation,
) -> Result<(), StoreError> {
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
/// status; returns the packages it wrote.
fn release_package(
    wtx: &WriteTransaction,
    op: &Operation,
    new_status: Option<Status>,
    now: Timestamp,
) -> Result<Vec<Package>, StoreError> {
    let before = match get_package_in(&wtx.open_table(PACKAGES)?, op.package_id) {
        Ok(p) => p,
        // Deleted packages cannot have an operation in flight; nothing to release.
        Err(StoreError::Refused(Refusal::NotFound)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if before.operation_id != Some(op.id) {
        return Ok(Vec::new());
    }
    let mut after = before.clone();
    after.operation_id = None;
    if let Some(status) = new_status {
        after.status = status;
    }
    after.revision += 1;
    after.updated_at = now;
    unindex_package(wtx, &before)?;
    put_package(wtx, &after)?;
    let mut written = Vec::new();
    // One version of a name is active: the one an activation replaces goes
    // back to `downloaded` in the same transaction.
    if let (Some(_), Some((from, to))) = (new_status, op.kind.displaces()) {
        for other in packages::of_name(wtx, &after.name)? {
            if other.id != after.id && other.status == from {
                written.push(packages::set_status(wtx, &other, to, now)?);
            }
        }
    }
    written.insert(0, after);
    Ok(written)
}

/// What `apply` wrote: the operation as it now is, and the packages its
/// end changed.
struct Applied {
    op: Operation,
    packages: Vec<Package>,
}

/// `active/<name>` has one writer: an activate or deactivate is refused
/// while another version of the same name has one in flight.
fn check_name_free(
    wtx: &WriteTransaction,
    package: &crate::domain::package::Package,
) -> Result<(), StoreError> {
    for other in packages::of_name(wtx, &package.name)? {
        let Some(operation_id) = other.operation_id else {
            continue;
        };
        if other.id != package.id
            && matches!(
                load(wtx, operation_id)?.kind,
                OperationKind::Activate | OperationKind::Deactivate
            )
        {
            return Err(StoreError::Refused(Refusal::NameBusy { operation_id }));
        }
    }
    Ok(())
}

/// Writes what a rule of `domain::operation` decided: the record and its
/// indexes, the queue entry, and for a finished operation the package (its
/// in-flight mark cleared and, on success, its new status). Returns what it
/// wrote, if anything changed.
fn apply(
    wtx: &WriteTransaction,
    before: &Operation,
    change: Change,
    now: Timestamp,
) -> Result<Option<Applied>, StoreError> {
    let mut packages = Vec::new();
    let op = match change {
        Change::Nothing => return Ok(None),
        Change::Update(op) => op,
        Change::Requeue { op, due } => {
            wtx.open_table(OPERATIONS_QUEUE)?
                .insert((due_key(due), op.id.as_u128()), ())?;
            op
        }
        Change::Finish(op) => {
            if before.state == OperationState::Queued {
                remove_from_queue(wtx, op.id)?;
            }
            let new_status =
                (op.state == OperationState::Succeeded).then(|| op.kind.transition().1);
            packages = release_package(wtx, &op, new_status, now)?;
            op
        }
    };
    save(wtx, Some(before), &op)?;
    Ok(Some(Applied { op, packages }))
}

/// Removes a queued operation's queue entry. The entry's due time is not on
/// the record, so it is found by id (cancel of a queued operation only).
fn remove_from_queue(wtx: &WriteTransaction, id: Uuid) -> Result<(), StoreError> {
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
fn claim_in(wtx: &WriteTransaction, now: Timestamp) -> Result<Claim, StoreError> {
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
    save(wtx, Some(&before), &op)?;
    Ok(Claim::Work(op))
}

/// Who asks, and with which `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key_id: Uuid,
    pub key: String,
}

/// What the queue holds for a worker.
#[derive(Debug)]
pub enum Claim {
    Work(Operation),
    /// Nothing due; the earliest queued entry is due then (None: queue empty).
    Idle(Option<Timestamp>),
}

/// What a completing worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AndThen {
    /// Claim the next due operation in the same transaction.
    ClaimNext,
    /// Claim nothing (the worker is stopping).
    Stop,
}

/// What a worker learns when it saves progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    Yes,
    /// A client cancelled: the operation is now `cancelled`; stop.
    Cancelled,
}

/// Filters and position of an operation listing.
#[derive(Debug, Clone, Default)]
pub struct ListOperations {
    pub package_id: Option<Uuid>,
    pub state: Option<OperationState>,
    pub after: Option<Uuid>,
    pub limit: usize,
}

impl Store {
    fn notify_queue(&self) {
        self.inner.queue_changed.notify_one();
    }

    /// Counts the outcome of an operation that finished just now and wakes
    /// the long polls waiting for it.
    fn finished_now(&self, op: &Operation) {
        metrics::global().operation_finished(op.kind, op.state);
        self.inner.finished.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Tells subscribers what a committed `apply` wrote.
    fn publish(&self, applied: &Applied) {
        self.inner
            .changes
            .publish(|| events::Change::Operation(applied.op.clone()));
        for p in &applied.packages {
            self.inner
                .changes
                .publish(|| events::Change::Package(p.clone()));
        }
    }

    /// Starts `kind` on a package: the operation, its queue entry and the
    /// package's `operation_id` in one transaction. With an idempotency key
    /// already used for this same call, returns that call's operation (and
    /// `false`: nothing new was made).
    pub async fn enqueue(
        &self,
        package_id: Uuid,
        kind: OperationKind,
        idempotency: Option<Idempotency>,
    ) -> Result<(Operation, bool), StoreError> {
        let now = Timestamp::now();
        let op_id = Uuid::now_v7();
        let result = self
            .write(move |wtx| {
                if let Some(idem) = &idempotency {
                    let seen = wtx
                        .open_table(IDEMPOTENCY)?
                        .get((idem.key_id.as_u128(), idem.key.as_str()))?
                        .map(|row| decode::<IdempotencyRecord>("idempotency", row.value()))
                        .transpose()?;
                    if let Some(IdempotencyRecord::V1(r)) = seen {
                        if r.kind != kind_code(kind) || r.package_id != package_id.as_u128() {
                            return Err(StoreError::Refused(Refusal::IdempotencyMismatch));
                        }
                        return Ok((load(wtx, Uuid::from_u128(r.operation_id))?, None));
                    }
                }
                let package = get_package_in(&wtx.open_table(PACKAGES)?, package_id)?;
                if let Some(operation_id) = package.operation_id {
                    return Err(StoreError::Refused(Refusal::OperationInProgress {
                        operation_id,
                    }));
                }
                if kind.apply(package.status).is_none() {
                    return Err(StoreError::Refused(Refusal::InvalidTransition {
                        kind,
                        needed: kind.transition().0,
                        actual: package.status,
                    }));
                }
                if kind != OperationKind::Download {
                    check_name_free(wtx, &package)?;
                }
                let op = Operation {
                    id: op_id,
                    package_id,
                    kind,
                    state: OperationState::Queued,
                    progress: 0,
                    attempts: 0,
                    error: None,
                    created_at: now,
                    started_at: None,
                    finished_at: None,
                    cancel_requested: false,
                    transfer: Transfer::default(),
                };
                save(wtx, None, &op)?;
                wtx.open_table(OPERATIONS_QUEUE)?
                    .insert((due_key(now), op_id.as_u128()), ())?;
                let mut marked = package.clone();
                marked.operation_id = Some(op_id);
                marked.revision += 1;
                marked.updated_at = now;
                put_package(wtx, &marked)?;
                if let Some(idem) = &idempotency {
                    let record = IdempotencyRecord::V1(IdempotencyV1 {
                        kind: kind_code(kind),
                        package_id: package_id.as_u128(),
                        operation_id: op_id.as_u128(),
                        created_at: now.as_micros(),
                    });
                    wtx.open_table(IDEMPOTENCY)?.insert(
                        (idem.key_id.as_u128(), idem.key.as_str()),
                        encode(&record)?.as_slice(),
                    )?;
                }
                Ok((op, Some(marked)))
            })
            .await?;
        let (op, marked) = result;
        let new = marked.is_some();
        if let Some(marked) = marked {
            metrics::global().operation_started(kind);
            self.notify_queue();
            self.publish(&Applied {
                op: op.clone(),
                packages: vec![marked],
            });
        }
        Ok((op, new))
    }

    /// Takes the first due operation off the queue and marks it running.
    pub async fn claim(&self) -> Result<Claim, StoreError> {
        let now = Timestamp::now();
        let claim = self.write(move |wtx| claim_in(wtx, now)).await?;
        if let Claim::Work(op) = &claim {
            self.inner
                .changes
                .publish(|| events::Change::Operation(op.clone()));
        }
        Ok(claim)
    }

    /// Saves a step's progress (and a download's checkpoint); says whether
    /// to go on.
    pub async fn save_progress(
        &self,
        id: Uuid,
        progress: u8,
        transfer: Option<Transfer>,
    ) -> Result<Continue, StoreError> {
        let now = Timestamp::now();
        let (change, applied) = self
            .write(move |wtx| {
                let before = load(wtx, id)?;
                let change = before.report_progress(progress, transfer.clone(), now);
                let applied = apply(wtx, &before, change.clone(), now)?;
                Ok((change, applied))
            })
            .await?;
        if let Some(applied) = &applied {
            self.publish(applied);
        }
        Ok(match change {
            Change::Update(_) => Continue::Yes,
            Change::Finish(op) => {
                self.finished_now(&op);
                Continue::Cancelled
            }
            // Not running any more (cancelled while queued, say): stop.
            Change::Nothing | Change::Requeue { .. } => Continue::Cancelled,
        })
    }

    /// The executor finished: success (or cancelled, if asked meanwhile).
    /// With `AndThen::ClaimNext`, the next due operation is claimed in the
    /// same transaction, so a busy worker pays one commit per operation
    /// instead of two. The claim's own errors are logged and answered as
    /// `None` (the worker claims again the usual way); the claim writes
    /// nothing before its checks pass, so the completion still commits.
    pub async fn complete(
        &self,
        id: Uuid,
        transfer: Option<Transfer>,
        then: AndThen,
    ) -> Result<(Operation, Option<Claim>), StoreError> {
        let now = Timestamp::now();
        let (op, done, next) = self
            .write(move |wtx| {
                let before = load(wtx, id)?;
                let done = apply(wtx, &before, before.complete(transfer.clone(), now), now)?;
                let next = (then == AndThen::ClaimNext)
                    .then(|| claim_in(wtx, now))
                    .and_then(|claim| {
                        claim
                            .inspect_err(
                                |e| tracing::warn!(error = %e, "cannot claim the next operation"),
                            )
                            .ok()
                    });
                Ok((before, done, next))
            })
            .await?;
        let op = match done {
            Some(applied) => {
                self.finished_now(&applied.op);
                self.publish(&applied);
                applied.op
            }
            None => op,
        };
        if let Some(Claim::Work(next)) = &next {
            self.inner
                .changes
                .publish(|| events::Change::Operation(next.clone()));
        }
        Ok((op, next))
    }

    /// An attempt failed: queue a retry after `retry_in`, or with no attempts
    /// left, mark it failed and leave the package's status as it was.
    pub async fn fail_attempt(
        &self,
        id: Uuid,
        error: String,
        max_attempts: u32,
        retry_in: Duration,
    ) -> Result<Operation, StoreError> {
        let now = Timestamp::now();
        let (before, after) = self
            .write(move |wtx| {
                let before = load(wtx, id)?;
                let change = before.fail_attempt(error.clone(), max_attempts, retry_in, now);
                let after = apply(wtx, &before, change, now)?;
                Ok((before, after))
            })
            .await?;
        let Some(applied) = after else {
            return Ok(before);
        };
        self.publish(&applied);
        let op = applied.op;
        if op.state.is_finished() {
            self.finished_now(&op);
        } else {
            metrics::global().operation_retry(op.kind);
            self.notify_queue();
        }
        Ok(op)
    }

    /// A worker stops (shutdown) before the operation is done: see
    /// `Operation::pause`.
    pub async fn pause(&self, id: Uuid) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let applied = self
            .write(move |wtx| {
                let before = load(wtx, id)?;
                apply(wtx, &before, before.pause(), now)
            })
            .await?;
        if let Some(applied) = &applied {
            self.publish(applied);
        }
        Ok(())
    }

    /// At start-up, before any worker runs: every operation left `running`
    /// by a crash is recovered (`Operation::recover`). Only this process can
    /// hold the file, so nothing else owns them.
    pub async fn recover_operations(&self) -> Result<usize, StoreError> {
        let now = Timestamp::now();
        let n = self
            .write(move |wtx| {
                let running: Vec<u128> = wtx
                    .open_table(OPERATIONS_BY_STATE)?
                    .range(
                        (state_code(OperationState::Running), 0)
                            ..=(state_code(OperationState::Running), u128::MAX),
                    )?
                    .map(|r| r.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()?;
                for id in &running {
                    let before = load(wtx, Uuid::from_u128(*id))?;
                    apply(wtx, &before, before.recover(now), now)?;
                }
                Ok(running.len())
            })
            .await?;
        self.notify_queue();
        Ok(n)
    }

    /// Cancels: a queued operation at once, a running one at its next step
    /// (the answer then still says `running`, with `cancel_requested`).
    pub async fn cancel_operation(&self, id: Uuid) -> Result<Operation, StoreError> {
        let now = Timestamp::now();
        let op = self
            .write(move |wtx| {
                let before = load(wtx, id)?;
                let change = before.cancel(now).map_err(|AlreadyFinished(state)| {
                    StoreError::Refused(Refusal::AlreadyFinished(state))
                })?;
                Ok(match apply(wtx, &before, change, now)? {
                    Some(applied) => {
                        let op = applied.op.clone();
                        (op, Some(applied))
                    }
                    None => (before, None),
                })
            })
            .await?;
        let (op, applied) = op;
        if let Some(applied) = &applied {
            self.publish(applied);
        }
        // Only a queued operation finishes here; a running one finishes at its
        // worker's next step (and its worker hears of it at once).
        if op.state.is_finished() {
            self.finished_now(&op);
        } else if op.cancel_requested {
            self.inner.cancels.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(op)
    }

    pub fn get_operation(&self, id: Uuid) -> Result<Operation, StoreError> {
        self.read(|rtx| {
            let table = rtx.open_table(OPERATIONS)?;
            let row = table
                .get(id.as_u128())?
                .ok_or(StoreError::Refused(Refusal::NotFound))?;
            from_record(id.as_u128(), row.value())
        })
    }

    /// Every change committed from now on (`events::Change`), for event
    /// streams.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<events::Change>> {
        self.inner.changes.subscribe()
    }

    /// A receiver that changes whenever any operation finishes: long polls
    /// wait on it instead of polling the store.
    pub fn finished_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.finished.subscribe()
    }

    /// Changes whenever a cancel is asked of a running operation.
    pub fn cancel_requests(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.cancels.subscribe()
    }

    /// Wakes when the queue may have work.
    pub fn queue_changed(&self) -> &tokio::sync::Notify {
        &self.inner.queue_changed
    }

    pub fn list_operations(&self, q: &ListOperations) -> Result<Page<Operation>, StoreError> {
        let Some(after) = super::start_after(q.after) else {
            return Ok(Page {
                items: vec![],
                next_after: None,
            });
        };
        self.read(|rtx| {
            let rows = rtx.open_table(OPERATIONS)?;
            let get = |id: u128| -> Result<Operation, StoreError> {
                let row = rows
                    .get(id)?
                    .ok_or(StoreError::Refused(Refusal::NotFound))?;
                from_record(id, row.value())
            };
            let mut items = Vec::with_capacity(q.limit + 1);
            match (q.package_id, q.state) {
                (Some(pkg), state) => {
                    let pkg = pkg.as_u128();
                    let index = rtx.open_table(OPERATIONS_BY_PACKAGE)?;
                    for entry in index.range((pkg, after)..=(pkg, u128::MAX))? {
                        let op = get(entry?.0.value().1)?;
                        if state.is_none_or(|s| s == op.state) {
                            items.push(op);
                            if items.len() > q.limit {
                                break;
                            }
                        }
                    }
                }
                (None, Some(state)) => {
                    let code = state_code(state);
                    let index = rtx.open_table(OPERATIONS_BY_STATE)?;
                    for entry in index.range((code, after)..=(code, u128::MAX))? {
                        items.push(get(entry?.0.value().1)?);
                        if items.len() > q.limit {
                            break;
                        }
                    }
                }
                (None, None) => {
                    return page_of(&rows, q.after, q.limit, from_record, |o| o.id);
                }
            }
            Ok(paginate(items, q.limit, |o: &Operation| o.id))
        })
    }

    /// Every queued or running operation (for start-up reconciliation: what
    /// they own under the data directory stays).
    pub fn unfinished_operations(&self) -> Result<Vec<Operation>, StoreError> {
        self.read(|rtx| {
            let by_state = rtx.open_table(OPERATIONS_BY_STATE)?;
            let table = rtx.open_table(OPERATIONS)?;
            let mut ops = Vec::new();
            for state in [OperationState::Queued, OperationState::Running] {
                let code = state_code(state);
                for entry in by_state.range((code, 0)..=(code, u128::MAX))? {
                    let (_, id) = entry?.0.value();
                    if let Some(row) = table.get(id)? {
                        ops.push(from_record(id, row.value())?);
                    }
                }
            }
            Ok(ops)
        })
    }

    /// Entries in the queue: operations waiting to run, now or later.
    pub fn queue_depth(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        self.read(|rtx| Ok(rtx.open_table(OPERATIONS_QUEUE)?.len()?))
    }

    /// Queued and running operations counted by kind and state, for the
    /// metrics. Reads one record per unfinished operation, never the
    /// finished ones, which are most of the table.
    pub fn active_operations(
        &self,
    ) -> Result<Vec<(OperationKind, OperationState, u64)>, StoreError> {
        self.read(|rtx| {
            let by_state = rtx.open_table(OPERATIONS_BY_STATE)?;
            let table = rtx.open_table(OPERATIONS)?;
            let mut counts: Vec<(OperationKind, OperationState, u64)> = Vec::new();
            for state in [OperationState::Queued, OperationState::Running] {
                let code = state_code(state);
                for entry in by_state.range((code, 0)..=(code, u128::MAX))? {
                    let (_, id) = entry?.0.value();
                    let Some(row) = table.get(id)? else { continue };
                    let kind = from_record(id, row.value())?.kind;
                    match counts
                        .iter_mut()
                        .find(|(k, s, _)| *k == kind && *s == state)
                    {
                        Some(c) => c.2 += 1,
                        None => counts.push((kind, state, 1)),
                    }
                }
            }
            Ok(counts)
        })
    }

    /// Removes finished operations that finished before `before`, and
    /// idempotency records created before `idempotency_before`.
    pub async fn prune_operations(
        &self,
        before: Timestamp,
        idempotency_before: Timestamp,
    ) -> Result<usize, StoreError> {
        // Ids are UUID v7: an operation created at or after `before` cannot
        // have finished before it, so only ids below this bound are looked at.
        let bound = (u128::try_from(before.as_micros().max(0) / 1000).unwrap_or(0)) << 80;
        self.write(move |wtx| {
            let mut removed = 0;
            for state in [
                OperationState::Succeeded,
                OperationState::Failed,
                OperationState::Cancelled,
            ] {
                let code = state_code(state);
                let ids: Vec<u128> = wtx
                    .open_table(OPERATIONS_BY_STATE)?
                    .range((code, 0)..(code, bound))?
                    .take(10_000)
                    .map(|r| r.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()?;
                for id in ids {
                    let op = load(wtx, Uuid::from_u128(id))?;
                    if op.finished_at.is_some_and(|f| f < before) {
                        wtx.open_table(OPERATIONS)?.remove(id)?;
                        wtx.open_table(OPERATIONS_BY_STATE)?.remove((code, id))?;
                        wtx.open_table(OPERATIONS_BY_PACKAGE)?
                            .remove((op.package_id.as_u128(), id))?;
                        removed += 1;
                    }
                }
            }
            let mut idem = wtx.open_table(IDEMPOTENCY)?;
            let cutoff = idempotency_before.as_micros();
            idem.retain(|_, v| match decode::<IdempotencyRecord>("idempotency", v) {
                Ok(IdempotencyRecord::V1(r)) => r.created_at >= cutoff,
                Err(_) => true,
            })?;
            Ok(removed)
        })
        .await
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;
    use crate::store::StoreOptions;

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

#[cfg(test)]
mod model_tests {
    //! A model test of the queue: random sequences of enqueue, claim,
    //! progress, complete, fail, cancel and crash (close and reopen without
    //! any cleanup), checking the invariants against a simple model after
    //! every step.

    use std::collections::{HashMap, HashSet};

    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;
    use crate::domain::package::{PackageName, PackageVersion};
    use crate::store::{NewPackage, StoreOptions};

    struct Model {
        status: HashMap<Uuid, Status>,
        /// Packages share names two by two, so activations displace.
        name: HashMap<Uuid, usize>,
        in_flight: HashMap<Uuid, Uuid>,
        kinds: HashMap<Uuid, OperationKind>,
        progress: HashMap<Uuid, u8>,
    }

    impl Model {
        /// Another version of `pkg`'s name has an activate or deactivate in flight.
        fn name_busy(&self, pkg: Uuid) -> bool {
            self.in_flight.iter().any(|(other, op)| {
                *other != pkg
                    && self.name[other] == self.name[&pkg]
                    && self.kinds[op] != OperationKind::Download
            })
        }

        fn succeeded(&mut self, pkg: Uuid, kind: OperationKind) {
            let to = kind.apply(self.status[&pkg]).expect("valid when enqueued");
            if to == Status::Active {
                let name = self.name[&pkg];
                for (other, status) in self.status.iter_mut() {
                    if self.name[other] == name && *status == Status::Active {
                        *status = Status::Downloaded;
                    }
                }
            }
            self.status.insert(pkg, to);
        }
    }

    fn check(store: &Store, model: &Model, after_crash: bool) {
        let ops = store
            .list_operations(&ListOperations {
                limit: 100_000,
                ..Default::default()
            })
            .unwrap()
            .items;
        let queued_in_table: HashSet<u128> = store
            .read(|rtx| {
                let t = rtx.open_table(OPERATIONS_QUEUE)?;
                t.iter()?
                    .map(|r| r.map(|(k, _)| k.value().1).map_err(StoreError::from))
                    .collect()
            })
            .unwrap();
        let queued_ops: HashSet<u128> = ops
            .iter()
            .filter(|o| o.state == OperationState::Queued)
            .map(|o| o.id.as_u128())
            .collect();
        assert_eq!(
            queued_in_table, queued_ops,
            "queue table == queued operations"
        );
        let mut active_names = HashSet::new();
        for (pkg, status) in &model.status {
            let p = store.get_package(*pkg).unwrap();
            if p.status == Status::Active {
                assert!(active_names.insert(p.name.clone()), "one active per name");
            }
            assert_eq!(p.status, *status, "a status changed without a success");
            let open: Vec<&Operation> = ops
                .iter()
                .filter(|o| o.package_id == *pkg && !o.state.is_finished())
                .collect();
            assert!(open.len() <= 1, "one operation per package at a time");
            assert_eq!(p.operation_id, open.first().map(|o| o.id));
            assert_eq!(p.operation_id, model.in_flight.get(pkg).copied());
        }
        for o in &ops {
            if after_crash {
                assert_ne!(o.state, OperationState::Running, "nothing stays running");
            }
            let seen = model.progress.get(&o.id).copied().unwrap_or(0);
            assert!(o.progress >= seen, "progress never goes back");
        }
    }

    async fn run(seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.redb");
        let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
        let mut model = Model {
            status: HashMap::new(),
            name: HashMap::new(),
            in_flight: HashMap::new(),
            kinds: HashMap::new(),
            progress: HashMap::new(),
        };
        let mut pkgs = Vec::new();
        for i in 0..6 {
            let p = store
                .create_package(NewPackage {
                    name: PackageName::parse(format!("p{}", i / 2)).unwrap(),
                    version: PackageVersion::parse(format!("{i}")).unwrap(),
                    source: None,
                })
                .await
                .unwrap();
            model.status.insert(p.id, Status::Created);
            model.name.insert(p.id, i / 2);
            pkgs.push(p.id);
        }
        let mut running: Vec<Operation> = Vec::new();
        let mut all_ops: Vec<Uuid> = Vec::new();
        for _ in 0..300 {
            let mut after_crash = false;
            match rng.random_range(0..100) {
                0..30 => {
                    let pkg = pkgs[rng.random_range(0..pkgs.len())];
                    let kind = OperationKind::ALL[rng.random_range(0..3)];
                    let expect_ok = !model.in_flight.contains_key(&pkg)
                        && kind.apply(model.status[&pkg]).is_some()
                        && (kind == OperationKind::Download || !model.name_busy(pkg));
                    match store.enqueue(pkg, kind, None).await {
                        Ok((op, true)) => {
                            assert!(expect_ok);
                            model.in_flight.insert(pkg, op.id);
                            model.kinds.insert(op.id, kind);
                            all_ops.push(op.id);
                        }
                        Ok((_, false)) => unreachable!("no idempotency key"),
                        Err(StoreError::Refused(Refusal::OperationInProgress { .. }))
                        | Err(StoreError::Refused(Refusal::InvalidTransition { .. }))
                        | Err(StoreError::Refused(Refusal::NameBusy { .. })) => {
                            assert!(!expect_ok)
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                30..50 => {
                    if let Claim::Work(op) = store.claim().await.unwrap() {
                        assert_eq!(op.state, OperationState::Running);
                        running.push(op);
                    }
                }
                50..65 if !running.is_empty() => {
                    let i = rng.random_range(0..running.len());
                    let id = running[i].id;
                    let p = model.progress.get(&id).copied().unwrap_or(0);
                    let next = (p + rng.random_range(1..30)).min(99);
                    match store.save_progress(id, next, None).await.unwrap() {
                        Continue::Yes => {
                            model.progress.insert(id, next);
                        }
                        Continue::Cancelled => {
                            let op = running.remove(i);
                            model.in_flight.remove(&op.package_id);
                        }
                    }
                }
                65..75 if !running.is_empty() => {
                    let op = running.remove(rng.random_range(0..running.len()));
                    // Half the completions also claim the next operation.
                    let claim_next = rng.random_bool(0.5);
                    let (done, next) = store
                        .complete(
                            op.id,
                            None,
                            if claim_next {
                                AndThen::ClaimNext
                            } else {
                                AndThen::Stop
                            },
                        )
                        .await
                        .unwrap();
                    if done.state == OperationState::Succeeded {
                        model.succeeded(op.package_id, op.kind);
                        model.progress.insert(op.id, 100);
                    }
                    model.in_flight.remove(&op.package_id);
                    assert_eq!(next.is_some(), claim_next);
                    if let Some(Claim::Work(next)) = next {
                        assert_eq!(next.state, OperationState::Running);
                        running.push(next);
                    }
                }
                75..85 if !running.is_empty() => {
                    let op = running.remove(rng.random_range(0..running.len()));
                    let after = store
                        .fail_attempt(op.id, "boom".into(), 2, Duration::ZERO)
                        .await
                        .unwrap();
                    if after.state.is_finished() {
                        model.in_flight.remove(&op.package_id);
                    }
                }
                85..95 if !all_ops.is_empty() => {
                    let id = all_ops[rng.random_range(0..all_ops.len())];
                    match store.cancel_operation(id).await {
                        Ok(op) if op.state == OperationState::Cancelled => {
                            model.in_flight.remove(&op.package_id);
                        }
                        Ok(op) => assert!(op.cancel_requested),
                        Err(StoreError::Refused(Refusal::AlreadyFinished(_))) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                95..100 => {
                    // Crash: no requeue, no cleanup; the next open recovers.
                    store.close();
                    drop(store);
                    store = Store::open(&path, &StoreOptions::default()).unwrap();
                    store.recover_operations().await.unwrap();
                    for op in running.drain(..) {
                        let now = store.get_operation(op.id).unwrap();
                        if now.state == OperationState::Cancelled {
                            model.in_flight.remove(&op.package_id);
                        }
                    }
                    after_crash = true;
                }
                _ => {}
            }
            check(&store, &model, after_crash);
        }
        store.close();
    }

    #[tokio::test]
    async fn queue_keeps_its_invariants_under_random_sequences() {
        for seed in 0..6 {
            run(seed).await;
        }
    }
}
