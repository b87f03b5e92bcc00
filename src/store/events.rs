//! Changes as they are committed, for subscribers (`GET /v1/events`): the
//! store publishes each operation and package it wrote, after the commit.
//! One bounded ring is shared by every subscriber, so the memory held does
//! not grow with slow ones: a subscriber that falls more than `CAPACITY`
//! changes behind is told how many it missed, and reads the state again.

use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::channel::Channel;
use crate::domain::operation::Operation;
use crate::domain::package::Package;

/// Changes kept for subscribers that have not read them yet.
pub const CAPACITY: usize = 4096;

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    Operation(Operation),
    Package(Package),
    PackageDeleted(Uuid),
    Channel(Channel),
    ChannelDeleted(Uuid),
}

impl Committed {
    /// The package it concerns (for a channel's change, or a sync, the
    /// channel's id).
    pub fn package_id(&self) -> Uuid {
        match self {
            Committed::Operation(op) => op.package_id,
            Committed::Package(p) => p.id,
            Committed::PackageDeleted(id) | Committed::ChannelDeleted(id) => *id,
            Committed::Channel(c) => c.id,
        }
    }

    /// The operation it concerns, if it is one.
    pub fn operation_id(&self) -> Option<Uuid> {
        match self {
            Committed::Operation(op) => Some(op.id),
            Committed::Package(_)
            | Committed::PackageDeleted(_)
            | Committed::Channel(_)
            | Committed::ChannelDeleted(_) => None,
        }
    }
}

/// The publishing side, held by the store.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: broadcast::Sender<Arc<Committed>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            tx: broadcast::Sender::new(CAPACITY),
        }
    }
}

impl Feed {
    /// Sends what one committed write changed, in the order it was written.
    pub(crate) fn publish(&self, written: Written) {
        for change in written.changes {
            let _ = self.tx.send(Arc::new(change));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.tx.subscribe()
    }
}

/// What one write job changed, published by the store once the job's
/// transaction has committed (and only then). The functions that write an
/// operation or a package row record into it, so no write can change one
/// without saying so.
#[derive(Debug, Default)]
pub(crate) struct Written {
    wanted: bool,
    changes: Vec<Committed>,
    /// The kinds of the operations the job started: counted and a worker
    /// woken after the commit.
    pub(crate) started: Vec<crate::domain::operation::OperationKind>,
    /// A channel's sync finished: the scheduler of syncs looks again.
    pub(crate) channel_free: bool,
}

impl Written {
    /// Every change is recorded, whether or not anyone listens when the
    /// job is queued: a subscriber may arrive between then and the commit
    /// (the client subscribes, then reads the operation, and must be told
    /// of any commit its read did not see). A clone per row is nothing
    /// next to the commit's fsync.
    pub(crate) fn new() -> Self {
        Self {
            wanted: true,
            changes: Vec::new(),
            started: Vec::new(),
            channel_free: false,
        }
    }

    /// For writes nobody is told of (migrations at open, bulk seeding).
    pub(crate) fn untold() -> Self {
        Self {
            wanted: false,
            changes: Vec::new(),
            started: Vec::new(),
            channel_free: false,
        }
    }

    pub(crate) fn operation(&mut self, op: &Operation) {
        if self.wanted {
            self.changes.push(Committed::Operation(op.clone()));
        }
    }

    pub(crate) fn package(&mut self, p: &Package) {
        if self.wanted {
            self.changes.push(Committed::Package(p.clone()));
        }
    }

    pub(crate) fn channel(&mut self, c: &Channel) {
        if self.wanted {
            self.changes.push(Committed::Channel(c.clone()));
        }
    }

    pub(crate) fn channel_deleted(&mut self, id: Uuid) {
        if self.wanted {
            self.changes.push(Committed::ChannelDeleted(id));
        }
    }

    pub(crate) fn package_deleted(&mut self, id: Uuid) {
        if self.wanted {
            self.changes.push(Committed::PackageDeleted(id));
        }
    }
}
