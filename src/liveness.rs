//! How many of a set of long-lived tasks (the queue's workers) are still
//! running: the workers count themselves in and out, readiness reads the
//! count. Its own module so the API reads it without knowing the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many workers are running out of how many were started, for readiness:
/// a worker that died (a panicking executor) makes the service unready.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    running: Arc<AtomicUsize>,
    started: usize,
}

impl Liveness {
    pub(crate) fn new(running: Arc<AtomicUsize>, started: usize) -> Self {
        Self { running, started }
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    pub fn started(&self) -> usize {
        self.started
    }

    pub fn all_running(&self) -> bool {
        self.started > 0 && self.running() == self.started
    }

    /// A fixed reading, for tests of what depends on it.
    pub fn fixed(running: usize, started: usize) -> Self {
        Self {
            running: Arc::new(AtomicUsize::new(running)),
            started,
        }
    }
}

/// Counts a worker as running for as long as its task lives, unwinding included.
pub(crate) struct RunningGuard(Arc<AtomicUsize>);

impl RunningGuard {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
