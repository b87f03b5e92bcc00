//! The data directory: the only module that touches it. It owns every path
//! under it (`layout.rs` names them; no package name or version can leave
//! its directory) and every change to them: the lock and the owner record
//! (`owner.rs`), downloads (`fetch.rs`) and installs (`install.rs`,
//! unpacking in `unpack.rs`), the `active/<name>` links and the hooks
//! (`switch.rs`, `activate.rs`, `hook.rs`), removals (`remove.rs`), and
//! start-up reconciliation (`reconcile.rs`).
//!
//! Rules every part keeps:
//! - The database leads and the files follow: every step is written beside
//!   its final place and renamed into it, so a crash leaves either the old
//!   state or the new one, and a repeated step does no harm.
//! - File work runs on blocking threads (never on the async ones), is
//!   bounded in bytes, entries and time, and stops at its next check when
//!   its `Budget` is cancelled; whoever starts it awaits its end.
//! - packd removes only what it made: what the removal journal names, and
//!   its own temporary names; anything else is reported, never deleted.

pub mod activate;
pub mod budget;
pub mod fetch;
mod health;
pub mod hook;
pub mod install;
pub mod layout;
pub mod owner;
pub mod reconcile;
pub mod remove;
pub mod space;
pub mod switch;
pub mod unpack;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use self::budget::{Budget, Interrupted};
pub use self::layout::Layout;
pub use self::unpack::Modes;

/// What file work needs, shared by the workers and the remover.
#[derive(Clone)]
pub struct Files {
    pub layout: Layout,
    pub modes: Modes,
    pub fetcher: fetch::Fetcher,
    pub unpack: unpack::Limits,
    /// How long one unpack may take (`--unpack-timeout`).
    pub unpack_timeout: Option<Duration>,
    pub hooks: hook::SharedHooks,
    /// The publisher keys downloads are checked against.
    pub trust: crate::trust::Trust,
    /// The free space a download must leave (`--min-free-space`).
    pub floor: space::SharedFloor,
    /// Held (on a blocking thread, briefly) by every step that makes or
    /// removes a package's directory or an artifact, so a removal's look
    /// ("is this still wanted?") and its move cannot interleave with an
    /// install's.
    places: Arc<Mutex<()>>,
}

impl Files {
    pub fn new(
        layout: Layout,
        modes: Modes,
        fetcher: fetch::Fetcher,
        unpack: unpack::Limits,
        unpack_timeout: Option<Duration>,
        hooks: hook::Hooks,
        trust: crate::trust::Trust,
    ) -> Self {
        Self {
            layout,
            modes,
            fetcher,
            unpack,
            unpack_timeout,
            hooks: hook::SharedHooks::new(hooks),
            trust,
            floor: space::SharedFloor::new(space::Floor::Bytes(0)),
            places: Arc::default(),
        }
    }

    /// The free space a download must leave (`--min-free-space`; none
    /// unless set).
    pub fn with_floor(self, floor: space::Floor) -> Self {
        self.floor.replace(floor);
        self
    }

    /// Runs `f` holding the place lock. Blocking: call it on a blocking
    /// thread only.
    fn at_places<T>(&self, f: impl FnOnce() -> T) -> T {
        // A panic while held leaves nothing half done that the lock
        // protects (each step is a rename): go on.
        let _held = self.places.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }
}

/// Why file work did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// A retry may mend it (a connection, a timeout, a busy disk).
    Retry(String),
    /// It will not get better; the reason is for `error` and the metric.
    Fatal { reason: Reason, message: String },
    /// The budget was cancelled (a cancel or a shutdown).
    Stopped,
}

/// Why work failed for good, for `packd_download_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The source: a 4xx, a size or digest mismatch, too large.
    Source,
    /// The artifact could not be unpacked (broken, hostile, over a cap).
    Unpack,
    /// The data directory: a full disk, something packd does not remove.
    Files,
    /// No trusted signature vouches for the artifact.
    Signature,
}

impl FileError {
    fn fatal(reason: Reason, message: impl Into<String>) -> Self {
        FileError::Fatal {
            reason,
            message: message.into(),
        }
    }
}

/// A blocking task that panicked or was lost: the attempt is retried.
fn lost(e: std::io::Error) -> FileError {
    FileError::Retry(format!("a file task failed: {e}"))
}
