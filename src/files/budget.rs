//! The bounds of a blocking file task: a cancel switch the async side
//! flips (a cancel, a shutdown) and a deadline. Long file work (unpacking,
//! re-hashing a partial, removing a tree) checks it between units of work,
//! so no file task outlives a SIGTERM or runs unbounded in time.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A cancel switch and an optional deadline, shared by the task and its
/// owner. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Budget {
    cancelled: Arc<AtomicBool>,
    deadline: Option<(Instant, Duration)>,
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
    /// No deadline; only the cancel switch.
    pub fn unbounded() -> Self {
        Self {
            cancelled: Arc::default(),
            deadline: None,
        }
    }

    /// A deadline `timeout` from now.
    pub fn within(timeout: Duration) -> Self {
        Self {
            cancelled: Arc::default(),
            deadline: Some((Instant::now() + timeout, timeout)),
        }
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// `Err` once cancelled or past the deadline: the task stops there.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Interrupted::Cancelled);
        }
        match self.deadline {
            Some((at, timeout)) if Instant::now() >= at => Err(Interrupted::TimedOut(timeout)),
            _ => Ok(()),
        }
    }
}

/// Runs `work` on a blocking thread. When `stop` resolves first, the
/// budget is cancelled and the task is still awaited: it ends at its next
/// check, and nothing it touches is used by two tasks at once.
pub async fn run_blocking<T: Send + 'static>(
    budget: &Budget,
    stop: impl Future<Output = ()>,
    work: impl FnOnce(&Budget) -> T + Send + 'static,
) -> std::io::Result<T> {
    let task_budget = budget.clone();
    let mut task = tokio::task::spawn_blocking(move || work(&task_budget));
    tokio::select! {
        done = &mut task => return done.map_err(std::io::Error::other),
        () = stop => budget.cancel(),
    }
    task.await.map_err(std::io::Error::other)
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
    }

    #[tokio::test]
    async fn a_stop_cancels_the_task_and_waits_for_it() {
        let budget = Budget::unbounded();
        let stopped = run_blocking(
            &budget,
            tokio::time::sleep(Duration::from_millis(50)),
            |b: &Budget| loop {
                if let Err(e) = b.check() {
                    return e;
                }
                std::thread::sleep(Duration::from_millis(1));
            },
        )
        .await
        .unwrap();
        assert_eq!(stopped, Interrupted::Cancelled);
    }
}
