//! Adapts file work (`files::Files`) to the queue: operations of a package
//! with a source get real work, the others the stub's simulated steps.
//! This file only translates: a download's checkpoints become saved
//! progress, file errors become the queue's retry or failure, and a partial
//! download is kept for a resume or discarded. Every path and every file
//! operation is `files/`'s.

use tokio::sync::watch;

use crate::domain::operation::OperationKind;
use crate::domain::operation::Transfer;
use crate::domain::source::Source;
use crate::files::install::DownloadJob;
use crate::files::switch::SwitchJob;
use crate::files::{FileError, Files, Reason};
use crate::metrics::{self, DownloadFailure};

use super::executor::{ExecError, Executor, Steps, StubExecutor, Work};

/// Real work where there is a source, the stub elsewhere.
pub struct Executors {
    pub stub: StubExecutor,
    pub files: Files,
    pub syncer: super::sync::Syncer,
}

impl Executor for Executors {
    async fn sync(
        &self,
        channel_id: uuid::Uuid,
        budget: &crate::files::Budget,
    ) -> Result<(), ExecError> {
        self.syncer.sync(channel_id, budget).await
    }

    async fn execute<S: Steps>(&self, work: Work, steps: &mut S) -> Result<(), ExecError> {
        match (work.kind, work.package.source.clone()) {
            (OperationKind::Download, Some(source)) => {
                download(&self.files, work, source, steps).await
            }
            (OperationKind::Activate | OperationKind::Deactivate, Some(_)) => {
                let activating = work.kind == OperationKind::Activate;
                let job = SwitchJob {
                    operation_id: work.operation_id,
                    package: &work.package,
                    activating,
                    replaces: work.replaces.as_ref(),
                };
                // The health check as it is when the switch begins: a
                // reload meanwhile applies to the next activation.
                let health = self.files.hooks.current().health;
                self.files.switch(&job, &work.budget).await.map_err(exec)?;
                match health {
                    Some(health) if activating => {
                        super::window::watch(&self.files, &job, &health, &work, steps).await
                    }
                    _ => Ok(()),
                }
            }
            (OperationKind::Activate, None) => {
                // The version now in use has no files: no link for its name.
                let name = work.package.name.clone();
                self.stub.execute(work, steps).await?;
                self.files.unlink_name(&name).await.map(drop).map_err(exec)
            }
            _ => self.stub.execute(work, steps).await,
        }
    }
}

/// A download: the files layer fetches, stores and installs; each synced
/// checkpoint it reports is saved here as the operation's progress, and a
/// save that says stop (a cancel) stops the work through the budget.
async fn download<S: Steps>(
    files: &Files,
    work: Work,
    source: Source,
    steps: &mut S,
) -> Result<(), ExecError> {
    let (tx, mut rx) = watch::channel(None::<Transfer>);
    let job = DownloadJob {
        operation_id: work.operation_id,
        name: &work.package.name,
        version: &work.package.version,
        source: &source,
        saved: &work.transfer,
    };
    // Borrowed, not moved: the channel stays open after the work ends, so
    // a checkpoint it reported last is still seen below.
    let tx = &tx;
    let run = files.download(job, &work.budget, move |t| {
        tx.send_replace(Some(t));
    });
    tokio::pin!(run);
    let mut refused = None;
    let result = loop {
        tokio::select! {
            biased;
            result = &mut run => break result,
            Ok(()) = rx.changed(), if refused.is_none() => {
                let Some(checkpoint) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let progress = progress_of(&checkpoint, work.progress);
                if let Err(e) = steps.checkpoint(progress, checkpoint).await {
                    work.budget.cancel();
                    refused = Some(e);
                }
            }
        }
    };
    // The last checkpoint, if the work ended before it was saved (a cut
    // connection: the retry resumes from it).
    let last = if refused.is_none() && rx.has_changed().unwrap_or(false) {
        rx.borrow_and_update().clone()
    } else {
        None
    };
    if let Some(last) = last
        && let Err(e) = steps
            .checkpoint(progress_of(&last, work.progress), last)
            .await
    {
        refused = Some(e);
    }
    match result {
        Ok(installed) => {
            if installed.reused {
                tracing::debug!("the artifact was stored already");
            }
            // The completion records what was fetched in all.
            steps.checkpoint(99, installed.transfer).await
        }
        Err(e) => {
            // A partial is kept only for a resume after a restart or a
            // retry; a cancel or a fault a retry cannot mend removes it.
            let keep = match &e {
                FileError::Stopped => steps.shutting_down(),
                FileError::Retry(_) => !work.last_attempt,
                FileError::Fatal { .. } => false,
            };
            if !keep {
                files.discard_partial(work.operation_id).await;
            }
            metrics::global().download_failures.inc(match &e {
                FileError::Retry(_) => DownloadFailure::Transient,
                FileError::Fatal {
                    reason: Reason::Source,
                    ..
                } => DownloadFailure::Permanent,
                FileError::Fatal {
                    reason: Reason::Unpack,
                    ..
                } => DownloadFailure::Unpack,
                FileError::Fatal {
                    reason: Reason::Files,
                    ..
                } => DownloadFailure::Files,
                FileError::Fatal {
                    reason: Reason::Signature,
                    ..
                } => DownloadFailure::SignatureInvalid,
                FileError::Stopped => return Err(refused.unwrap_or(ExecError::Stopped)),
            });
            Err(refused.unwrap_or_else(|| exec(e)))
        }
    }
}

/// A download's percentage: 100 % is written by the commit that finishes it.
fn progress_of(checkpoint: &Transfer, unknown: u8) -> u8 {
    match checkpoint.bytes_total {
        Some(total) if total > 0 => {
            (checkpoint.bytes_done.unwrap_or(0).saturating_mul(99) / total).min(99) as u8
        }
        _ => unknown,
    }
}

/// A file error as the queue sees it: retried, failed at once, or stopped.
fn exec(e: FileError) -> ExecError {
    match e {
        FileError::Retry(m) => ExecError::Failed(m),
        FileError::Fatal { message, .. } => ExecError::Fatal(message),
        FileError::Stopped => ExecError::Stopped,
    }
}
