//! Operations: the long-running status changes of a package (their kinds
//! and the transition table), and the rules of their life: when one may
//! start, what each event (a claim, progress, success, a failed attempt, a
//! pause, a crash, a cancel) does to one, as a `Change` the store applies
//! in one transaction, and the backoff between attempts.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use super::Timestamp;
use super::package::{Package, Status};

/// The long-running status changes a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Download,
    Activate,
    Deactivate,
    /// A channel's sync: its document fetched, checked and applied. Not a
    /// package's: its `package_id` is the channel's id.
    Sync,
}

impl OperationKind {
    pub const ALL: [OperationKind; 4] = [
        OperationKind::Download,
        OperationKind::Activate,
        OperationKind::Deactivate,
        OperationKind::Sync,
    ];

    /// The kinds that change a package's status.
    pub const PACKAGE_KINDS: [OperationKind; 3] = [
        OperationKind::Download,
        OperationKind::Activate,
        OperationKind::Deactivate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Download => "download",
            OperationKind::Activate => "activate",
            OperationKind::Deactivate => "deactivate",
            OperationKind::Sync => "sync",
        }
    }

    /// The one status this operation starts from, and the one it leads to
    /// (`None`: a sync, which changes no package itself). This is the
    /// whole transition table: there is no other way to change a status.
    pub fn transition(self) -> Option<(Status, Status)> {
        match self {
            OperationKind::Download => Some((Status::Created, Status::Downloaded)),
            OperationKind::Activate => Some((Status::Downloaded, Status::Active)),
            OperationKind::Deactivate => Some((Status::Active, Status::Downloaded)),
            OperationKind::Sync => None,
        }
    }

    /// What the operation does, for people reading `GET /v1/statuses`.
    pub fn description(self) -> &'static str {
        match self {
            OperationKind::Download => {
                "Fetches the source, verifies its SHA-256 and unpacks it into packages/<name>/<version>/ (simulated without a source)."
            }
            OperationKind::Activate => {
                "Points active/<name> at this version, then runs the activate hook; the version of the same name that was active becomes downloaded in the same step."
            }
            OperationKind::Deactivate => {
                "Removes active/<name> if it points at this version, then runs the deactivate hook."
            }
            OperationKind::Sync => {
                "Fetches a channel's document, checks its signature, and creates, downloads and (activate: auto) activates what it lists for this host."
            }
        }
    }

    /// What a success does to the other versions of the name: the one in
    /// the first status moves to the second, in the same transaction.
    pub fn displaces(self) -> Option<(Status, Status)> {
        match self {
            OperationKind::Activate => Some((Status::Active, Status::Downloaded)),
            OperationKind::Download | OperationKind::Deactivate | OperationKind::Sync => None,
        }
    }

    /// Whether it changes `active/<name>` (which has one writer at a time).
    pub fn changes_link(self) -> bool {
        matches!(self, OperationKind::Activate | OperationKind::Deactivate)
    }

    /// The status this operation leads to, if it may start from `from`.
    pub fn apply(self, from: Status) -> Option<Status> {
        let (required, to) = self.transition()?;
        (required == from).then_some(to)
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationState {
    pub const ALL: [OperationState; 5] = [
        OperationState::Queued,
        OperationState::Running,
        OperationState::Succeeded,
        OperationState::Failed,
        OperationState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Queued => "queued",
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
            OperationState::Cancelled => "cancelled",
        }
    }

    /// Finished operations never change again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            OperationState::Succeeded | OperationState::Failed | OperationState::Cancelled
        )
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status change of one package, queued or in flight or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: Uuid,
    pub package_id: Uuid,
    pub kind: OperationKind,
    pub state: OperationState,
    /// 0 to 100; kept across retries and restarts, so work resumes where it stopped.
    pub progress: u8,
    /// How many times a worker has started (or resumed) it.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// A client asked to cancel while it ran; the worker stops at its next step.
    pub cancel_requested: bool,
    /// Where a download stands: bytes saved so far and the artifact's size,
    /// when known (null for other kinds and for simulated work).
    pub transfer: Transfer,
}

/// A download's checkpoint, saved with its progress: enough to resume it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes on disk and synced, that a resume keeps.
    pub bytes_done: Option<u64>,
    /// The artifact's size, when the server or the source said it.
    pub bytes_total: Option<u64>,
    /// The server's validator of those bytes (`ETag`, else
    /// `Last-Modified`), sent as `If-Range` when resuming.
    pub validator: Option<String>,
}

/// What an event does to an operation. The store applies it to the file:
/// the record, its indexes, the queue entry and, when it finishes, the
/// package, all in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The event does not apply (the operation is not in a state it
    /// concerns): nothing to write.
    Nothing,
    /// Still in flight, with new fields (progress, a cancel request).
    Update(Operation),
    /// Back in the queue, due at `due` (its place: the queue runs in due order).
    Requeue { op: Operation, due: Timestamp },
    /// Finished: succeeded, failed or cancelled. On success the package
    /// takes the kind's new status in the same transaction.
    Finish(Operation),
}

impl Change {
    /// The operation as it is after the change, if it changed.
    pub fn operation(&self) -> Option<&Operation> {
        match self {
            Change::Nothing => None,
            Change::Update(op) | Change::Requeue { op, .. } | Change::Finish(op) => Some(op),
        }
    }
}

/// Why an operation cannot be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyFinished(pub OperationState);

/// Why an operation cannot start on a package now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CannotStart {
    /// Another operation is in flight for the package.
    InFlight(Uuid),
    /// The package's status is not the one the kind starts from.
    WrongStatus { needed: Status, actual: Status },
    /// This operation (another version's activate or deactivate) is
    /// changing the name's link: `active/<name>` has one writer.
    NameBusy(Uuid),
    /// A sync starts on a channel (`Operation::start_sync`).
    NotForPackages,
}

impl Operation {
    /// A new, queued operation of `kind` on `package`, if the rules let it
    /// start: nothing else in flight for the package, its status the one
    /// `kind` starts from, and for a link change, no other version of the
    /// name changing the link (`link_writer`: that version's operation).
    pub fn start(
        id: Uuid,
        package: &Package,
        kind: OperationKind,
        link_writer: Option<Uuid>,
        now: Timestamp,
    ) -> Result<Operation, CannotStart> {
        if let Some(other) = package.operation_id {
            return Err(CannotStart::InFlight(other));
        }
        let Some((needed, _)) = kind.transition() else {
            return Err(CannotStart::NotForPackages);
        };
        if needed != package.status {
            return Err(CannotStart::WrongStatus {
                needed,
                actual: package.status,
            });
        }
        if let (true, Some(other)) = (kind.changes_link(), link_writer) {
            return Err(CannotStart::NameBusy(other));
        }
        Ok(Operation::queued(id, package.id, kind, now))
    }

    /// A new operation as it enters the queue.
    fn queued(id: Uuid, subject: Uuid, kind: OperationKind, now: Timestamp) -> Operation {
        Operation {
            id,
            package_id: subject,
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
        }
    }

    /// A new, queued sync of a channel, unless one is in flight
    /// (`in_flight`: the channel's sync operation): two syncs of one
    /// channel never run at once.
    pub fn start_sync(
        id: Uuid,
        channel_id: Uuid,
        in_flight: Option<Uuid>,
        now: Timestamp,
    ) -> Result<Operation, CannotStart> {
        if let Some(other) = in_flight {
            return Err(CannotStart::InFlight(other));
        }
        Ok(Operation::queued(id, channel_id, OperationKind::Sync, now))
    }

    /// A worker takes it off the queue: running, one more attempt.
    pub fn claim(&self, now: Timestamp) -> Operation {
        let mut op = self.clone();
        op.state = OperationState::Running;
        op.attempts += 1;
        op.started_at.get_or_insert(now);
        op
    }

    fn finished(&self, state: OperationState, error: Option<String>, now: Timestamp) -> Change {
        let mut op = self.clone();
        op.state = state;
        op.finished_at = Some(now);
        if error.is_some() {
            op.error = error;
        }
        if state == OperationState::Succeeded {
            op.progress = 100;
            op.error = None;
        }
        Change::Finish(op)
    }

    /// A step is done: save its progress, unless a cancel was asked
    /// meanwhile, which ends it now. Only a running operation takes progress.
    pub fn report_progress(
        &self,
        progress: u8,
        transfer: Option<Transfer>,
        now: Timestamp,
    ) -> Change {
        if self.state != OperationState::Running {
            return Change::Nothing;
        }
        if self.cancel_requested {
            return self.finished(OperationState::Cancelled, None, now);
        }
        let mut op = self.clone();
        op.progress = progress.min(100);
        if let Some(transfer) = transfer {
            op.transfer = transfer;
        }
        Change::Update(op)
    }

    /// The executor finished its work: success. A cancel asked after its
    /// last step came too late: the work is done (an activation's link
    /// already points at the new version), so the status must follow it.
    /// A download's final `transfer` (what it fetched in all) is kept.
    pub fn complete(&self, transfer: Option<Transfer>, now: Timestamp) -> Change {
        if self.state != OperationState::Running {
            return Change::Nothing;
        }
        let mut done = self.clone();
        if let Some(transfer) = transfer {
            done.transfer = transfer;
        }
        done.finished(OperationState::Succeeded, None, now)
    }

    /// An attempt failed: back to the queue after `retry_in`, or with no
    /// attempts left, failed (keeping `error`). A cancel asked meanwhile wins.
    pub fn fail_attempt(
        &self,
        error: String,
        max_attempts: u32,
        retry_in: Duration,
        now: Timestamp,
    ) -> Change {
        if self.state != OperationState::Running {
            return Change::Nothing;
        }
        if self.cancel_requested {
            return self.finished(OperationState::Cancelled, None, now);
        }
        if self.attempts >= max_attempts {
            return self.finished(OperationState::Failed, Some(error), now);
        }
        let mut op = self.clone();
        op.state = OperationState::Queued;
        op.error = Some(error);
        Change::Requeue {
            op,
            due: now.plus(retry_in),
        }
    }

    /// Shutdown stops a running operation: back to the queue in its
    /// original place (by creation, before operations queued after it),
    /// and the attempt it was on given back: a pause is not a failure.
    pub fn pause(&self) -> Change {
        if self.state != OperationState::Running {
            return Change::Nothing;
        }
        let mut op = self.clone();
        op.attempts = op.attempts.saturating_sub(1);
        op.back_in_its_place()
    }

    /// At start-up, for one left running by a crash: back to the queue in
    /// its original place, or cancelled if that was asked. The attempt
    /// stays counted: nothing tells whether the attempt caused the crash.
    pub fn recover(&self, now: Timestamp) -> Change {
        if self.state != OperationState::Running {
            return Change::Nothing;
        }
        if self.cancel_requested {
            return self.finished(OperationState::Cancelled, None, now);
        }
        self.clone().back_in_its_place()
    }

    /// Queued again at its creation time: before everything queued after it.
    fn back_in_its_place(mut self) -> Change {
        self.state = OperationState::Queued;
        Change::Requeue {
            due: self.created_at,
            op: self,
        }
    }

    /// A client cancels: a queued operation is cancelled at once, a running
    /// one is asked to stop at its next step.
    pub fn cancel(&self, now: Timestamp) -> Result<Change, AlreadyFinished> {
        match self.state {
            s if s.is_finished() => Err(AlreadyFinished(s)),
            OperationState::Queued => Ok(self.finished(OperationState::Cancelled, None, now)),
            _ => {
                let mut op = self.clone();
                op.cancel_requested = true;
                Ok(Change::Update(op))
            }
        }
    }
}

/// Delay before retry number `attempt` (1 is the first retry): `base` doubled
/// each time, capped at `max`, then spread by up to ±50 % (`jitter` in 0..1)
/// so that many failures at once do not retry in lock step.
pub fn backoff(base: Duration, attempt: u32, max: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.5 + jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_micros(micros)
    }

    #[test]
    fn transitions_are_the_three_of_the_contract() {
        use OperationKind::*;
        use Status::*;
        assert_eq!(Download.apply(Created), Some(Downloaded));
        assert_eq!(Activate.apply(Downloaded), Some(Active));
        assert_eq!(Deactivate.apply(Active), Some(Downloaded));

        let allowed: usize = OperationKind::ALL
            .iter()
            .map(|k| {
                Status::ALL
                    .iter()
                    .filter(|s| k.apply(**s).is_some())
                    .count()
            })
            .sum();
        assert_eq!(allowed, 3, "each operation starts from exactly one status");
        assert_eq!(Download.apply(Active), None);
        assert_eq!(Activate.apply(Created), None);
        assert_eq!(Deactivate.apply(Downloaded), None);
    }

    #[test]
    fn an_operation_starts_only_where_the_rules_let_it() {
        use crate::domain::package::{PackageName, PackageVersion};
        let mut p = Package::new(
            Uuid::now_v7(),
            PackageName::parse("jq").unwrap(),
            PackageVersion::parse("1.7").unwrap(),
            None,
            at(1),
        );
        assert_eq!(
            (p.status, p.revision, p.operation_id),
            (Status::Created, 1, None)
        );
        let id = Uuid::now_v7();
        let op = Operation::start(id, &p, OperationKind::Download, None, at(2)).unwrap();
        assert_eq!(
            (op.id, op.package_id, op.state),
            (id, p.id, OperationState::Queued)
        );
        assert_eq!(
            Operation::start(id, &p, OperationKind::Activate, None, at(2)),
            Err(CannotStart::WrongStatus {
                needed: Status::Downloaded,
                actual: Status::Created
            })
        );
        // A download never writes the link: another version's activation
        // does not hold it up.
        let writer = Uuid::now_v7();
        assert!(Operation::start(id, &p, OperationKind::Download, Some(writer), at(2)).is_ok());
        p.status = Status::Downloaded;
        assert_eq!(
            Operation::start(id, &p, OperationKind::Activate, Some(writer), at(2)),
            Err(CannotStart::NameBusy(writer))
        );
        p.operation_id = Some(writer);
        assert_eq!(
            Operation::start(id, &p, OperationKind::Activate, None, at(2)),
            Err(CannotStart::InFlight(writer))
        );
    }

    fn op(state: OperationState) -> Operation {
        Operation {
            id: Uuid::now_v7(),
            package_id: Uuid::now_v7(),
            kind: OperationKind::Download,
            state,
            progress: 40,
            attempts: 1,
            error: None,
            created_at: at(1_000),
            started_at: Some(at(2_000)),
            finished_at: None,
            cancel_requested: false,
            transfer: Transfer::default(),
        }
    }

    fn finished(change: Change) -> Operation {
        match change {
            Change::Finish(op) => op,
            other => panic!("expected a finish, got {other:?}"),
        }
    }

    #[test]
    fn claim_starts_an_attempt_and_keeps_the_first_start() {
        let claimed = op(OperationState::Queued).claim(at(9_000));
        assert_eq!(claimed.state, OperationState::Running);
        assert_eq!(claimed.attempts, 2);
        assert_eq!(claimed.started_at, Some(at(2_000)));
    }

    #[test]
    fn progress_applies_to_running_operations_and_a_cancel_ends_them() {
        let running = op(OperationState::Running);
        assert_eq!(
            running
                .report_progress(250, None, at(5))
                .operation()
                .unwrap()
                .progress,
            100
        );
        assert_eq!(
            op(OperationState::Queued).report_progress(50, None, at(5)),
            Change::Nothing
        );
        let mut asked = running.clone();
        asked.cancel_requested = true;
        let done = finished(asked.report_progress(50, None, at(5)));
        assert_eq!(done.state, OperationState::Cancelled);
        assert_eq!(done.finished_at, Some(at(5)));
        assert_eq!(done.progress, 40, "a cancel keeps the progress it had");
    }

    #[test]
    fn completion_succeeds_even_after_a_late_cancel() {
        let mut running = op(OperationState::Running);
        running.error = Some("an earlier attempt".into());
        let done = finished(running.complete(None, at(7)));
        assert_eq!(
            (done.state, done.progress, done.error),
            (OperationState::Succeeded, 100, None)
        );
        running.cancel_requested = true;
        assert_eq!(
            finished(running.complete(None, at(7))).state,
            OperationState::Succeeded,
            "the work is done: a cancel after the last step is too late"
        );
        assert_eq!(
            op(OperationState::Cancelled).complete(None, at(7)),
            Change::Nothing
        );
    }

    #[test]
    fn a_failed_attempt_retries_until_the_last_then_fails() {
        let running = op(OperationState::Running);
        let Change::Requeue { op: queued, due } =
            running.fail_attempt("timeout".into(), 3, Duration::from_millis(5), at(10_000))
        else {
            panic!("a retry")
        };
        assert_eq!(queued.state, OperationState::Queued);
        assert_eq!(queued.error.as_deref(), Some("timeout"));
        assert_eq!(due, at(15_000));

        let mut last = running.clone();
        last.attempts = 3;
        let failed = finished(last.fail_attempt("404".into(), 3, Duration::ZERO, at(1)));
        assert_eq!(failed.state, OperationState::Failed);
        assert_eq!(failed.error.as_deref(), Some("404"));

        let mut asked = running;
        asked.cancel_requested = true;
        let cancelled = finished(asked.fail_attempt("x".into(), 3, Duration::ZERO, at(1)));
        assert_eq!(cancelled.state, OperationState::Cancelled);
    }

    #[test]
    fn a_pause_keeps_the_place_and_gives_the_attempt_back() {
        let Change::Requeue { op: paused, due } = op(OperationState::Running).pause() else {
            panic!("a requeue")
        };
        assert_eq!(
            (paused.state, paused.attempts, paused.progress),
            (OperationState::Queued, 0, 40)
        );
        assert_eq!(due, at(1_000), "due at its creation: its original place");
        assert_eq!(op(OperationState::Queued).pause(), Change::Nothing);
    }

    #[test]
    fn crash_recovery_requeues_and_keeps_the_attempt_counted() {
        let Change::Requeue { op: recovered, due } = op(OperationState::Running).recover(at(5))
        else {
            panic!("a requeue")
        };
        assert_eq!((recovered.attempts, due), (1, at(1_000)));
        let mut asked = op(OperationState::Running);
        asked.cancel_requested = true;
        assert_eq!(
            finished(asked.recover(at(5))).state,
            OperationState::Cancelled
        );
    }

    #[test]
    fn cancel_ends_queued_work_asks_running_work_and_refuses_finished_work() {
        assert_eq!(
            finished(op(OperationState::Queued).cancel(at(3)).unwrap()).state,
            OperationState::Cancelled
        );
        let Change::Update(asked) = op(OperationState::Running).cancel(at(3)).unwrap() else {
            panic!("an update")
        };
        assert!(asked.cancel_requested);
        assert_eq!(asked.state, OperationState::Running);
        for state in [
            OperationState::Succeeded,
            OperationState::Failed,
            OperationState::Cancelled,
        ] {
            assert_eq!(op(state).cancel(at(3)), Err(AlreadyFinished(state)));
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff(base, 1, max, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(base, 2, max, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(base, 3, max, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(base, 9, max, 0.5), max);
        assert_eq!(backoff(base, 99, max, 0.5), max);
        assert_eq!(backoff(base, 1, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(base, 1, max, 1.0), Duration::from_millis(150));
    }

    #[test]
    fn finished_states() {
        let finished: Vec<_> = OperationState::ALL
            .iter()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(finished.len(), 3);
        assert!(!OperationState::Running.is_finished());
    }
}
