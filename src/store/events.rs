//! Changes as they are committed, for subscribers (`GET /v1/events`): the
//! store publishes each operation and package it wrote, after the commit.
//! One bounded ring is shared by every subscriber, so the memory held does
//! not grow with slow ones: a subscriber that falls more than `CAPACITY`
//! changes behind is told how many it missed, and reads the state again.

use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::operation::Operation;
use crate::domain::package::Package;

/// Changes kept for subscribers that have not read them yet.
pub const CAPACITY: usize = 4096;

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Operation(Operation),
    Package(Package),
    PackageDeleted(Uuid),
}

impl Change {
    /// The package it concerns.
    pub fn package_id(&self) -> Uuid {
        match self {
            Change::Operation(op) => op.package_id,
            Change::Package(p) => p.id,
            Change::PackageDeleted(id) => *id,
        }
    }

    /// The operation it concerns, if it is one.
    pub fn operation_id(&self) -> Option<Uuid> {
        match self {
            Change::Operation(op) => Some(op.id),
            Change::Package(_) | Change::PackageDeleted(_) => None,
        }
    }
}

/// The publishing side, held by the store.
#[derive(Debug, Clone)]
pub struct Changes {
    tx: broadcast::Sender<Arc<Change>>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            tx: broadcast::Sender::new(CAPACITY),
        }
    }
}

impl Changes {
    /// Sends a change to every subscriber. With none (the usual case on a
    /// busy server with no stream open) the change is not even built: no
    /// clone of the record on the write path.
    pub fn publish(&self, change: impl FnOnce() -> Change) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(change()));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }
}
