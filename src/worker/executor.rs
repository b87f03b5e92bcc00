//! The `Executor` trait, the seam between the queue and the work, and the
//! stub that simulates work for packages without a source: timed steps
//! with progress.

use std::future::Future;
use std::time::Duration;

use uuid::Uuid;

use crate::domain::operation::OperationKind;
use crate::domain::operation::Transfer;
use crate::domain::package::Package;

/// What an executor is asked to do.
#[derive(Debug, Clone)]
pub struct Work {
    pub operation_id: Uuid,
    pub package_id: Uuid,
    pub kind: OperationKind,
    /// Percent already done by earlier attempts or before a restart: resume here.
    pub progress: u8,
    /// 1 for the first try.
    pub attempt: u32,
    /// No retry follows if this attempt fails: what it keeps for a retry
    /// (a partial download) can go.
    pub last_attempt: bool,
    /// The package, as it was when the attempt started.
    pub package: Package,
    /// A download's last saved checkpoint, to resume from.
    pub transfer: Transfer,
    /// For an activation: the version of the same name active when the
    /// attempt started (the one it replaces), if any.
    pub replaces: Option<Package>,
    /// Cancelled when the attempt must stop (a cancel of the operation, or
    /// a shutdown), for file work that saves no progress meanwhile.
    pub budget: crate::files::Budget,
}

/// Why the executor stopped without finishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// The attempt failed; the queue retries it (up to the maximum).
    Failed(String),
    /// The attempt failed in a way a retry cannot mend (a 404, a digest
    /// mismatch, an archive entry that escapes): the operation fails now.
    Fatal(String),
    /// Told to stop (cancel or shutdown) by `Steps::report`; progress is saved.
    Stopped,
}

/// How an executor reports progress. A call saves the progress durably
/// (reports within 100 ms of the last save are not saved: a resume may
/// repeat that much) and says whether to go on.
pub trait Steps: Send {
    fn report(&mut self, progress: u8) -> impl Future<Output = Result<(), ExecError>> + Send;
    /// `report`, with a download's checkpoint saved alongside (its bytes
    /// must be synced first).
    fn checkpoint(
        &mut self,
        progress: u8,
        transfer: Transfer,
    ) -> impl Future<Output = Result<(), ExecError>> + Send;
    /// Whether the service is shutting down (as opposed to a cancel), for
    /// an executor that keeps its partial work only for a resume.
    fn shutting_down(&self) -> bool;
    /// Resolves when the service is shutting down, so a long step can end early.
    fn stopping(&self) -> impl Future<Output = ()> + Send;
}

/// Does the work of an operation. A real implementation (an HTTP download,
/// a package manager call) implements this and keeps the contract: report
/// progress after each unit of work, resume from `Work::progress`, and return
/// `Stopped` when `report` says so.
pub trait Executor: Send + Sync + 'static {
    fn execute<S: Steps>(
        &self,
        work: Work,
        steps: &mut S,
    ) -> impl Future<Output = Result<(), ExecError>> + Send;

    /// A channel's sync. Only an executor that can fetch does one.
    fn sync(
        &self,
        channel_id: Uuid,
        _budget: &crate::files::Budget,
    ) -> impl Future<Output = Result<(), ExecError>> + Send {
        async move {
            Err(ExecError::Fatal(format!(
                "channel {channel_id}: this executor does not sync channels"
            )))
        }
    }
}

/// Settings of the stub executor.
#[derive(Debug, Clone)]
pub struct StubConfig {
    pub download: Duration,
    pub activate: Duration,
    pub deactivate: Duration,
    /// Share of attempts (0..=1) that fail at a random step.
    pub failure_rate: f64,
    /// Steps per operation; progress moves by 100 / steps.
    pub steps: u8,
}

impl Default for StubConfig {
    fn default() -> Self {
        Self {
            download: Duration::from_secs(10),
            activate: Duration::from_secs(3),
            deactivate: Duration::from_secs(2),
            failure_rate: 0.0,
            steps: 10,
        }
    }
}

/// Sleeps through an operation's configured duration in steps.
pub struct StubExecutor {
    pub config: StubConfig,
}

impl Executor for StubExecutor {
    async fn execute<S: Steps>(&self, work: Work, steps: &mut S) -> Result<(), ExecError> {
        let total = match work.kind {
            OperationKind::Download => self.config.download,
            OperationKind::Activate => self.config.activate,
            OperationKind::Deactivate => self.config.deactivate,
            OperationKind::Sync => Duration::ZERO,
        };
        let n = u32::from(self.config.steps.max(1));
        let per_step = total / n;
        let done = u32::from(work.progress) * n / 100;
        let fail_at = (rand::random::<f64>() < self.config.failure_rate)
            .then(|| done + rand::random_range(0..(n - done).max(1)));
        for step in done..n {
            if fail_at == Some(step) {
                return Err(ExecError::Failed(format!(
                    "stub failure at step {} of {n} (attempt {})",
                    step + 1,
                    work.attempt
                )));
            }
            if !per_step.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(per_step) => {}
                    // Stop mid-step: the step is not reported, so it runs again on resume.
                    () = steps.stopping() => return Err(ExecError::Stopped),
                }
            }
            let progress = ((step + 1) * 100 / n) as u8;
            // The last step's 100 % is written by the transaction that finishes.
            if step + 1 < n {
                steps.report(progress).await?;
            }
        }
        Ok(())
    }
}
