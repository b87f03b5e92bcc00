//! Operations and their queue. Every state change of an operation is one
//! transaction, and the one that finishes it successfully also sets the
//! package's new status: a status never changes without its operation.

use std::time::Duration;

use redb::ReadableTable;
use uuid::Uuid;

pub(super) mod queue;
mod record;
#[cfg(test)]
mod tests;

use self::queue::{apply, claim_in, load};
pub(in crate::store) use self::record::migrate_operations_to_v2;
use self::record::{IdempotencyRecord, IdempotencyV1, from_record, kind_code, state_code};
use super::Refusal;
use super::codec::{decode, encode};
use super::packages::get_in as get_package_in;
use super::page::{ids_of, walk_index};
use super::tables::{
    IDEMPOTENCY, OPERATIONS, OPERATIONS_BY_PACKAGE, OPERATIONS_BY_STATE, OPERATIONS_QUEUE, PACKAGES,
};
use super::{Page, Store, StoreError, events, page_of};
use crate::domain::Timestamp;
use crate::domain::operation::OperationKind;
use crate::domain::operation::{AlreadyFinished, Change, Operation, OperationState, Transfer};
use crate::metrics;

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

/// One operation, read from an open table.
pub(super) fn read_operation(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
) -> Result<Operation, StoreError> {
    let row = table
        .get(id.as_u128())?
        .ok_or(StoreError::Refused(Refusal::NotFound))?;
    from_record(id.as_u128(), row.value())
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
        self.write_changes(move |wtx, written| {
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
                    return Ok((load(wtx, Uuid::from_u128(r.operation_id))?, false));
                }
            }
            let package = get_package_in(&wtx.open_table(PACKAGES)?, package_id)?;
            let op = queue::start_in(wtx, written, &package, kind, now)?;
            if let Some(idem) = &idempotency {
                let record = IdempotencyRecord::V1(IdempotencyV1 {
                    kind: kind_code(kind),
                    package_id: package_id.as_u128(),
                    operation_id: op.id.as_u128(),
                    created_at: now.as_micros(),
                });
                wtx.open_table(IDEMPOTENCY)?.insert(
                    (idem.key_id.as_u128(), idem.key.as_str()),
                    encode(&record)?.as_slice(),
                )?;
            }
            Ok((op, true))
        })
        .await
    }

    /// Takes the first due operation off the queue and marks it running.
    pub async fn claim(&self) -> Result<Claim, StoreError> {
        let now = Timestamp::now();
        self.write_changes(move |wtx, written| claim_in(wtx, written, now))
            .await
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
        let change = self
            .write_changes(move |wtx, written| {
                let before = load(wtx, id)?;
                let change = before.report_progress(progress, transfer.clone(), now);
                apply(wtx, written, &before, change.clone(), now)?;
                Ok(change)
            })
            .await?;
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
        let keep = self.keep_downloaded();
        let (op, done, next, retired) = self
            .write_changes(move |wtx, written| {
                let before = load(wtx, id)?;
                let change = before.complete(transfer.clone(), now);
                let done = apply(wtx, written, &before, change, now)?;
                let retired = match &done {
                    Some(op)
                        if op.kind == OperationKind::Activate
                            && op.state == OperationState::Succeeded =>
                    {
                        super::retention::after_activation(wtx, written, op.package_id, keep, now)?
                    }
                    _ => Vec::new(),
                };
                let next = (then == AndThen::ClaimNext)
                    .then(|| claim_in(wtx, written, now))
                    .and_then(|claim| {
                        claim
                            .inspect_err(
                                |e| tracing::warn!(error = %e, "cannot claim the next operation"),
                            )
                            .ok()
                    });
                Ok((before, done, next, retired))
            })
            .await?;
        if !retired.is_empty() {
            let versions: Vec<&str> = retired.iter().map(|p| p.version.as_str()).collect();
            tracing::info!(name = %retired[0].name, versions = ?versions, keep, "retention: the files of older versions go; the packages are created again");
            metrics::global()
                .retention_removed
                .add(retired.len() as u64);
            self.inner.removals_added.notify_one();
        }
        let op = match done {
            Some(op) => {
                self.finished_now(&op);
                op
            }
            None => op,
        };
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
            .write_changes(move |wtx, written| {
                let before = load(wtx, id)?;
                let change = before.fail_attempt(error.clone(), max_attempts, retry_in, now);
                let after = apply(wtx, written, &before, change, now)?;
                Ok((before, after))
            })
            .await?;
        let Some(op) = after else {
            return Ok(before);
        };
        if op.state.is_finished() {
            self.finished_now(&op);
        } else {
            metrics::global().operation_retries.inc(op.kind);
            self.notify_queue();
        }
        Ok(op)
    }

    /// A worker stops (shutdown) before the operation is done: see
    /// `Operation::pause`.
    pub async fn pause(&self, id: Uuid) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.write_changes(move |wtx, written| {
            let before = load(wtx, id)?;
            apply(wtx, written, &before, before.pause(), now)
        })
        .await?;
        Ok(())
    }

    /// At start-up, before any worker runs: every operation left `running`
    /// by a crash is recovered (`Operation::recover`). Only this process can
    /// hold the file, so nothing else owns them.
    pub async fn recover_operations(&self) -> Result<usize, StoreError> {
        let now = Timestamp::now();
        let n = self
            .write_changes(move |wtx, written| {
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
                    apply(wtx, written, &before, before.recover(now), now)?;
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
            .write_changes(move |wtx, written| {
                let before = load(wtx, id)?;
                let change = before.cancel(now).map_err(|AlreadyFinished(state)| {
                    StoreError::Refused(Refusal::AlreadyFinished(state))
                })?;
                Ok(apply(wtx, written, &before, change, now)?.unwrap_or(before))
            })
            .await?;
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
        self.read(|rtx| read_operation(&rtx.open_table(OPERATIONS)?, id))
    }

    /// Every change committed from now on (`events::Committed`), for event
    /// streams.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<events::Committed>> {
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
            let load = |id: u128| -> Result<Operation, StoreError> {
                let row = rows
                    .get(id)?
                    .ok_or(StoreError::Refused(Refusal::NotFound))?;
                from_record(id, row.value())
            };
            match (q.package_id, q.state) {
                (Some(pkg), state) => {
                    let pkg = pkg.as_u128();
                    let index = rtx.open_table(OPERATIONS_BY_PACKAGE)?;
                    let ids = ids_of(index.range((pkg, after)..=(pkg, u128::MAX))?);
                    walk_index(
                        ids,
                        q.limit,
                        load,
                        |o| state.is_none_or(|s| s == o.state),
                        |o| o.id,
                    )
                }
                (None, Some(state)) => {
                    let code = state_code(state);
                    let index = rtx.open_table(OPERATIONS_BY_STATE)?;
                    let ids = ids_of(index.range((code, after)..=(code, u128::MAX))?);
                    walk_index(ids, q.limit, load, |_| true, |o| o.id)
                }
                (None, None) => page_of(&rows, q.after, q.limit, from_record, |o| o.id),
            }
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
