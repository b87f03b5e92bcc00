//! The queue runner: workers that claim operations from the store one
//! transaction each, run them through an `Executor`, and record the outcome.
//! Workers sleep on a notification from the store, never in a polling loop.

mod executor;
mod files;
pub mod schedule;
mod sync;
mod window;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::Instrument;

pub use self::executor::{ExecError, Executor, Steps, StubConfig, StubExecutor, Work};
pub use self::files::Executors;
pub use self::sync::Syncer;
use crate::domain::Timestamp;
use crate::domain::operation::OperationKind;
use crate::domain::operation::Transfer;
use crate::domain::operation::backoff;
use crate::liveness::{Liveness, RunningGuard};
use crate::shutdown::Shutdown;
use crate::store::Failure;
use crate::store::{AndThen, Claim, Continue, Store, StoreError};

/// What a worker calls when it runs out of work after doing some: the
/// binary gives the allocator's free pages back to the system there (a
/// download's buffers, a sync's document), so an idle agent stays small.
static WHEN_IDLE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what runs when a worker falls idle (once per process).
pub fn when_idle(f: fn()) {
    let _ = WHEN_IDLE.set(f);
}

/// Settings of the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub workers: usize,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// Running workers. They listen to the service's `Shutdown`: once it fires
/// each finishes its current step, puts its operation back, and returns.
pub struct Workers {
    tasks: JoinSet<()>,
    liveness: Liveness,
}

impl Workers {
    pub fn start<E: Executor>(
        store: Store,
        executor: Arc<E>,
        config: QueueConfig,
        shutdown: Shutdown,
    ) -> Self {
        let mut tasks = JoinSet::new();
        let started = config.workers.max(1);
        let running = Arc::new(AtomicUsize::new(0));
        for n in 0..started {
            let worker = Worker {
                store: store.clone(),
                executor: executor.clone(),
                config: config.clone(),
                stop: shutdown.clone(),
            };
            // Taken before the task is spawned, so readiness never sees a
            // worker that has not been scheduled yet as missing.
            let guard = RunningGuard::new(&running);
            tasks.spawn(async move {
                let _guard = guard;
                worker.run(n).await;
            });
        }
        Self {
            tasks,
            liveness: Liveness::new(running, started),
        }
    }

    pub fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    /// Waits for every worker to have stopped (after the shutdown fired).
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

struct Worker<E> {
    store: Store,
    executor: Arc<E>,
    config: QueueConfig,
    stop: Shutdown,
}

async fn stopped(mut stop: Shutdown) {
    stop.wait().await;
}

impl<E: Executor> Worker<E> {
    async fn run(self, n: usize) {
        tracing::debug!(worker = n, "worker started");
        let mut worked = false;
        loop {
            if self.stop.has_begun() {
                break;
            }
            // Registered before looking, so a wake-up between the look and the
            // wait is not lost.
            let notified = self.store.queue_changed().notified();
            match self.store.claim().await {
                Ok(Claim::Work(op)) => {
                    // While work is due, each completion claims the next one.
                    let mut next = Some(op);
                    while let Some(op) = next {
                        next = self.execute(op).await;
                    }
                    worked = true;
                }
                Ok(Claim::Idle(next)) => {
                    if std::mem::take(&mut worked)
                        && let Some(release) = WHEN_IDLE.get()
                    {
                        release();
                    }
                    let sleep = next.map_or(Duration::from_secs(3600), |due| {
                        Duration::from_micros(
                            u64::try_from(due.as_micros() - Timestamp::now().as_micros())
                                .unwrap_or(0),
                        )
                    });
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep(sleep) => {}
                        () = stopped(self.stop.clone()) => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim work; retrying in 1s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stopped(self.stop.clone()) => break,
                    }
                }
            }
        }
        tracing::debug!(worker = n, "worker stopped");
    }

    /// Runs one operation and records its outcome; returns the next
    /// operation when the completion claimed one.
    async fn execute(
        &self,
        op: crate::domain::operation::Operation,
    ) -> Option<crate::domain::operation::Operation> {
        // Every line logged while running it (the executor's, the store's)
        // carries these.
        let span = tracing::info_span!(
            "operation",
            operation_id = %op.id,
            package_id = %op.package_id,
            kind = %op.kind,
            attempt = op.attempts,
        );
        self.execute_in_span(op).instrument(span).await
    }

    async fn execute_in_span(
        &self,
        op: crate::domain::operation::Operation,
    ) -> Option<crate::domain::operation::Operation> {
        let id = op.id;
        // From the work's start to its outcome committed: what an operator
        // (and benches/activation.py) reads as the cost of one attempt.
        let started = std::time::Instant::now();
        tracing::info!(operation = %id, kind = %op.kind, attempt = op.attempts, progress = op.progress, "operation started");
        let mut steps = StoreSteps {
            store: self.store.clone(),
            id,
            stop: self.stop.clone(),
            last_save: std::time::Instant::now(),
            latest: None,
        };
        // The package cannot be deleted while its operation is in flight;
        // a read that fails is a storage fault, retried like any attempt.
        // A sync's `package_id` is its channel's: it reads no package.
        let read = self.store.get_package(op.package_id).and_then(|package| {
            let replaces = match op.kind {
                OperationKind::Activate => self
                    .store
                    .active_version(&package.name)?
                    .filter(|p| p.id != package.id),
                _ => None,
            };
            Ok((package, replaces))
        });
        let budget = crate::files::Budget::unbounded();
        let watcher = self.watch_for_stop(id, &budget);
        let result = match read {
            _ if op.kind == OperationKind::Sync => self.executor.sync(op.package_id, &budget).await,
            Ok((package, replaces)) => {
                let work = Work {
                    operation_id: id,
                    package_id: op.package_id,
                    kind: op.kind,
                    progress: op.progress,
                    attempt: op.attempts,
                    last_attempt: op.attempts >= self.config.max_attempts,
                    package,
                    transfer: op.transfer.clone(),
                    replaces,
                    budget,
                };
                self.executor.execute(work, &mut steps).await
            }
            Err(e) => Err(ExecError::Failed(format!("cannot read the package: {e}"))),
        };
        watcher.abort();
        let mut next = None;
        let outcome = match result {
            Ok(()) => {
                let then = if self.stop.has_begun() {
                    AndThen::Stop
                } else {
                    AndThen::ClaimNext
                };
                let transfer = steps.latest.clone();
                self.record(id, || self.store.complete(id, transfer.clone(), then))
                    .await
                    .map(|(op, claim)| {
                        if let Some(Claim::Work(op)) = claim {
                            next = Some(op);
                        }
                        op.state.to_string()
                    })
            }
            Err(ExecError::Stopped) if self.stop.has_begun() => self
                .record(id, || self.store.pause(id))
                .await
                .map(|()| "paused for shutdown".into()),
            // A cancel: recorded by the progress save that saw it, or here
            // when the work stopped before saving any (an unpack).
            Err(ExecError::Stopped) => self
                .record(id, || self.store.save_progress(id, op.progress, None))
                .await
                .map(|_| "cancelled".into()),
            Err(ExecError::Fatal(error)) => {
                tracing::warn!(operation = %id, %error, "operation failed; a retry cannot mend it");
                // No attempts left, whatever the count: it fails now.
                self.record(id, || {
                    self.store
                        .fail_attempt(id, error.clone(), 0, Duration::ZERO)
                })
                .await
                .map(|op| op.state.to_string())
            }
            Err(ExecError::Failed(error)) => {
                let delay = backoff(
                    self.config.retry_base,
                    op.attempts,
                    self.config.retry_max,
                    rand::random::<f64>(),
                );
                tracing::warn!(operation = %id, %error, attempt = op.attempts, "operation attempt failed");
                let max = self.config.max_attempts;
                self.record(id, || {
                    self.store.fail_attempt(id, error.clone(), max, delay)
                })
                .await
                .map(|op| op.state.to_string())
            }
        };
        if let Some(state) = outcome {
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            tracing::info!(operation = %id, state, elapsed_ms, "operation stopped");
        }
        next
    }

    /// Cancels `budget` when the service shuts down or the operation's
    /// cancel is asked: file work that saves no progress for a while (an
    /// unpack, a silent transfer) stops at its next check all the same.
    fn watch_for_stop(
        &self,
        id: uuid::Uuid,
        budget: &crate::files::Budget,
    ) -> tokio::task::JoinHandle<()> {
        let (budget, store) = (budget.clone(), self.store.clone());
        let mut cancels = store.cancel_requests();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                // Looked at after subscribing: a cancel asked before the
                // attempt started is seen too.
                if store.get_operation(id).is_ok_and(|op| op.cancel_requested) {
                    budget.cancel();
                    return;
                }
                tokio::select! {
                    () = stopped(stop.clone()) => {
                        budget.cancel();
                        return;
                    }
                    changed = cancels.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        })
    }

    /// Records an operation's outcome, trying again for as long as the store
    /// cannot take writes (a full disk): an outcome left unrecorded would
    /// keep the operation `running`, and its package locked, until a
    /// restart. Gives up on shutdown (the next start puts the operation back
    /// in the queue) or on an error a retry cannot mend.
    async fn record<T, Fut>(&self, id: uuid::Uuid, write: impl Fn() -> Fut) -> Option<T>
    where
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut delay = RECORD_RETRY_FIRST;
        loop {
            match write().await {
                Ok(v) => return Some(v),
                Err(StoreError::Failed(Failure::Unavailable(e))) if self.stop.has_begun() => {
                    tracing::warn!(operation = %id, error = %e, "stopping with an outcome not recorded; the next start requeues the operation");
                    return None;
                }
                Err(StoreError::Failed(Failure::Unavailable(e))) => {
                    tracing::warn!(operation = %id, error = %e, retry_in = ?delay, "operation outcome not recorded; retrying");
                    // A stop ends the wait early: one more try, then give up.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stopped(self.stop.clone()) => {}
                    }
                    delay = (delay * 2).min(RECORD_RETRY_MAX);
                }
                Err(e) => {
                    tracing::error!(operation = %id, error = %e, "cannot record an operation's outcome");
                    return None;
                }
            }
        }
    }
}

/// How soon an outcome the store refused is tried again, and the most the
/// delay grows to.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);
const RECORD_RETRY_MAX: Duration = Duration::from_secs(2);

/// Steps closer together than this are not each saved: a save is a durable
/// commit, and for quick steps it would cost more than the step (an
/// operation of zero duration would be ten commits instead of none). A
/// resume then repeats at most this much work.
const PROGRESS_SAVE_EVERY: Duration = Duration::from_millis(100);

/// Progress reports that go to the store.
struct StoreSteps {
    store: Store,
    id: uuid::Uuid,
    stop: Shutdown,
    last_save: std::time::Instant,
    /// The last checkpoint reported, saved or not (reports close together
    /// are not each saved): the completion records it.
    latest: Option<Transfer>,
}

impl Steps for StoreSteps {
    async fn report(&mut self, progress: u8) -> Result<(), ExecError> {
        self.save(progress, None).await
    }

    async fn checkpoint(&mut self, progress: u8, transfer: Transfer) -> Result<(), ExecError> {
        self.save(progress, Some(transfer)).await
    }

    async fn stopping(&self) {
        stopped(self.stop.clone()).await;
    }

    fn shutting_down(&self) -> bool {
        self.stop.has_begun()
    }
}

impl StoreSteps {
    async fn save(&mut self, progress: u8, transfer: Option<Transfer>) -> Result<(), ExecError> {
        if transfer.is_some() {
            self.latest.clone_from(&transfer);
        }
        if self.last_save.elapsed() < PROGRESS_SAVE_EVERY {
            return if self.stop.has_begun() {
                Err(ExecError::Stopped)
            } else {
                Ok(())
            };
        }
        self.last_save = std::time::Instant::now();
        match self.store.save_progress(self.id, progress, transfer).await {
            Ok(Continue::Yes) if self.stop.has_begun() => Err(ExecError::Stopped),
            Ok(Continue::Yes) => Ok(()),
            Ok(Continue::Cancelled) => Err(ExecError::Stopped),
            // Progress is a checkpoint, not the outcome: the work goes on
            // (a resume would only repeat more of it), and the outcome is
            // recorded once the store takes writes again.
            Err(StoreError::Failed(Failure::Unavailable(e))) if !self.stop.has_begun() => {
                tracing::warn!(operation = %self.id, error = %e, "progress not saved; going on");
                Ok(())
            }
            Err(StoreError::Failed(Failure::Unavailable(_))) => Err(ExecError::Stopped),
            Err(e) => Err(ExecError::Failed(format!("cannot save progress: {e}"))),
        }
    }
}
