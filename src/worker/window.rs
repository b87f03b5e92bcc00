//! The health window after an activation: the operation stays `running`,
//! its progress moving from 50 to 99 as the window passes, while
//! `--health-check` runs every interval; it succeeds only when the window
//! has passed and the last run passed. A failed run reverts the
//! activation and fails the operation for good (`reverted: …`); a cancel
//! reverts it too. A shutdown leaves it: the next start runs the
//! activation, and its window, again (until then the database still names
//! the version active before, and reconciliation points the link at it).

use std::time::{Duration, Instant};

use super::executor::{ExecError, Steps, Work};
use crate::files::Files;
use crate::files::hook::{Health, HookError};
use crate::files::switch::SwitchJob;

/// Progress once the link is switched and the hook ran: the window is the
/// rest.
const SWITCHED: u8 = 50;

pub async fn watch<S: Steps>(
    files: &Files,
    job: &SwitchJob<'_>,
    health: &Health,
    work: &Work,
    steps: &mut S,
) -> Result<(), ExecError> {
    let started = Instant::now();
    tracing::info!(window = ?health.window, interval = ?health.interval, "activated; the health window begins");
    if let Err(e) = steps.report(SWITCHED).await {
        return stopped(files, job, steps.shutting_down(), e).await;
    }
    loop {
        let left = health.window.saturating_sub(started.elapsed());
        let wait = if left.is_zero() {
            Duration::ZERO
        } else {
            health.interval.min(left)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = work.budget.ended() => return stopped(files, job, steps.shutting_down(), ExecError::Stopped).await,
        }
        match files.check_health(job, health, &work.budget).await {
            Ok(()) => {}
            Err(HookError::Stopped) => {
                return stopped(files, job, steps.shutting_down(), ExecError::Stopped).await;
            }
            Err(failed) => {
                tracing::warn!(error = %failed, "the health check failed");
                let hook = files.revert(job).await.map_err(|e| {
                    ExecError::Fatal(format!(
                        "reverted: the health check failed ({failed}); and the revert failed: {e:?}"
                    ))
                })?;
                let also = hook.map(|h| format!("; {h}")).unwrap_or_default();
                return Err(ExecError::Fatal(format!(
                    "reverted: the health check failed: {failed}{also}"
                )));
            }
        }
        let elapsed = started.elapsed();
        if elapsed >= health.window {
            tracing::info!(elapsed = ?elapsed, "the health window passed");
            return Ok(());
        }
        let share = elapsed.as_secs_f64() / health.window.as_secs_f64();
        let progress = SWITCHED + (f64::from(99 - SWITCHED) * share) as u8;
        if let Err(e) = steps.report(progress).await {
            return stopped(files, job, steps.shutting_down(), e).await;
        }
    }
}

/// The window ended early. A cancel puts the previous version back (the
/// operation is cancelled: what it switched must not stay); a shutdown
/// leaves the link for the next start to put right and run again.
async fn stopped(
    files: &Files,
    job: &SwitchJob<'_>,
    shutting_down: bool,
    why: ExecError,
) -> Result<(), ExecError> {
    if why == ExecError::Stopped && !shutting_down {
        tracing::info!("cancelled during the health window: reverting the activation");
        if let Err(e) = files.revert(job).await {
            tracing::warn!(error = ?e, "the revert after a cancel failed; the next start puts the link right");
        }
    }
    Err(why)
}
