//! The bounds of a file task: a cancel token the worker trips (a cancel,
//! a shutdown) and a deadline. Blocking work (unpacking, re-hashing a
//! partial, removing a tree) checks it between units of work; async work
//! (a transfer) waits on it beside its I/O. So no file task outlives a
//! SIGTERM or runs unbounded in time, and whoever started one awaits its
//! end before touching the same files again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// A cancel token and an optional deadline, shared by the task and its
/// owner. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Budget {
    cancel: CancellationToken,
    deadline: Option<(Instant, Duration)>,
    /// Set once the deadline was seen passed, so every later check agrees.
    expired: Arc<AtomicBool>,
}

/// Why a task stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    #[error("stopped (cancel or shutdown)")]
    Cancelled,
    #[error("did not finish within {0:?}")]
    TimedOut(Duration),
}

impl Budget {
    /// No deadline; only the cancel token.
    pub fn unbounded() -> Self {
        Self {
            cancel: CancellationToken::new(),
            deadline: None,
            expired: Arc::default(),
        }
    }

    /// A deadline `timeout` from now (none if `None`).
    pub fn within(timeout: impl Into<Option<Duration>>) -> Self {
        Self {
            deadline: timeout.into().map(|t| (Instant::now() + t, t)),
            ..Self::unbounded()
        }
    }

    /// A budget of its own deadline that a cancel of this one cancels too
    /// (cancelling the child leaves this one as it is).
    pub fn child(&self, timeout: impl Into<Option<Duration>>) -> Self {
        Self {
            cancel: self.cancel.child_token(),
            ..Self::within(timeout)
        }
    }

    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// `Err` once cancelled or past the deadline: the task stops there.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.cancel.is_cancelled() {
            return Err(Interrupted::Cancelled);
        }
        if let Some((at, timeout)) = self.deadline
            && (self.expired.load(Ordering::Relaxed) || Instant::now() >= at)
        {
            self.expired.store(true, Ordering::Relaxed);
            return Err(Interrupted::TimedOut(timeout));
        }
        Ok(())
    }

    /// Resolves when the task must stop: cancelled, or at the deadline.
    pub async fn ended(&self) -> Interrupted {
        let deadline = async {
            match self.deadline {
                Some((at, timeout)) => {
                    tokio::time::sleep_until(at.into()).await;
                    timeout
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.cancel.cancelled() => Interrupted::Cancelled,
            timeout = deadline => {
                self.expired.store(true, Ordering::Relaxed);
                Interrupted::TimedOut(timeout)
            }
        }
    }
}

/// Runs `work` on a blocking thread and waits for it to end. The work
/// checks the budget, so a cancel ends it at its next check; it is always
/// awaited, so nothing it touches is used by two tasks at once.
pub async fn run_blocking<T: Send + 'static>(
    budget: &Budget,
    work: impl FnOnce(&Budget) -> T + Send + 'static,
) -> std::io::Result<T> {
    let budget = budget.clone();
    tokio::task::spawn_blocking(move || work(&budget))
        .await
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_says_why_it_ran_out() {
        let b = Budget::unbounded();
        assert_eq!(b.check(), Ok(()));
        b.clone().cancel();
        assert_eq!(b.check(), Err(Interrupted::Cancelled));
        let b = Budget::within(Duration::ZERO);
        assert_eq!(b.check(), Err(Interrupted::TimedOut(Duration::ZERO)));
        // A child hears its parent's cancel, not the other way round.
        let parent = Budget::unbounded();
        let child = parent.child(Duration::from_secs(60));
        child.cancel();
        assert_eq!(parent.check(), Ok(()));
        let child = parent.child(None);
        parent.cancel();
        assert_eq!(child.check(), Err(Interrupted::Cancelled));
    }

    #[tokio::test]
    async fn a_cancel_ends_blocking_work_and_the_wait() {
        let budget = Budget::unbounded();
        let trip = budget.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            trip.cancel();
        });
        let stopped = run_blocking(&budget, |b: &Budget| {
            loop {
                if let Err(e) = b.check() {
                    return e;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .await
        .unwrap();
        assert_eq!(stopped, Interrupted::Cancelled);
        assert_eq!(budget.ended().await, Interrupted::Cancelled);
        let late = Budget::within(Duration::from_millis(10));
        assert_eq!(
            late.ended().await,
            Interrupted::TimedOut(Duration::from_millis(10))
        );
        assert!(late.check().is_err());
    }
}
