//! What a store call answers when it does not do what was asked: a
//! refusal (a rule of the data said no: the request's fault) or a failure
//! (the storage), and why a file could not be opened.

use std::path::{Path, PathBuf};

/// Why a store call did not do what was asked: a rule of the data refused
/// it (the caller's request is at fault, and repeating it will not help), or
/// the storage failed (nothing about the request; some failures pass).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// A rule of the data that refused a change.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("not found")]
    NotFound,
    #[error("a package named {name:?} with version {version:?} already exists ({existing})")]
    Duplicate {
        name: String,
        version: String,
        existing: uuid::Uuid,
    },
    #[error("the current revision is {current}")]
    PreconditionFailed { current: u64 },
    #[error("this is the last active admin key that never expires; create another admin key first")]
    LastAdmin,
    #[error("{0}")]
    Conflict(String),
    #[error("the Idempotency-Key was already used for a different call")]
    IdempotencyMismatch,
    #[error("{kind} needs a package with status {needed}; this one is {actual}")]
    InvalidTransition {
        kind: crate::domain::operation::OperationKind,
        needed: crate::domain::package::Status,
        actual: crate::domain::package::Status,
    },
    #[error(
        "the package is active (in use); deactivate it first, or activate another version of its name"
    )]
    Active,
    /// Link changes of one name run one at a time: `active/<name>` has one
    /// writer.
    #[error("operation {operation_id} is activating or deactivating another version of this name")]
    NameBusy { operation_id: uuid::Uuid },
    #[error("the operation has already finished ({0})")]
    AlreadyFinished(crate::domain::operation::OperationState),
    #[error("operation {operation_id} is in flight for this package")]
    OperationInProgress { operation_id: uuid::Uuid },
}

/// A failure of the storage itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The storage could not take a write (disk full, I/O error): retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Damage was met in the file earlier: writes are refused for good.
    #[error("the database file is damaged ({0}); writes are refused")]
    Damaged(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("internal store error: {0}")]
    Internal(String),
}

/// A file operation of the store's own (a backup's copy, a rename) that
/// failed: the storage, not the request.
impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Failed(Failure::Internal(e.to_string()))
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(io) => StoreError::Failed(Failure::Unavailable(io.to_string())),
            redb::Error::PreviousIo => StoreError::Failed(Failure::Unavailable(
                "an earlier write failed; retrying".into(),
            )),
            redb::Error::Corrupted(m) => StoreError::Failed(Failure::Corrupt(m)),
            redb::Error::DatabaseClosed => StoreError::Failed(Failure::Closed),
            other => StoreError::Failed(Failure::Internal(other.to_string())),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                redb::Error::from(e).into()
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

/// Why the file could not be opened. Each message is meant for an operator.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the database file {0} is in use by another process (is another packd running on it?)")]
    InUse(PathBuf),
    #[error(
        "the database file {path} has schema version {found}, newer than this packd supports \
         ({supported}); upgrade packd. The file was not changed."
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error(
        "{path} is not a packd database ({reason}); refusing to touch it. \
         Point --db at a packd file or at a path that does not exist yet."
    )]
    Foreign { path: PathBuf, reason: String },
    #[error("cannot open the database file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database file {path} is damaged ({reason}); packd left it as it is. \
         Restore the last backup (README: Backup and restore), or move the file \
         away to start empty."
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the database file {0} is empty (0 bytes), so it is not a packd database: a restore \
         or copy may have been cut short. packd left it as it is. Restore the backup again, \
         or remove the file to start with an empty database."
    )]
    Empty(PathBuf),
    #[error("cannot open the database file {path}: {reason}")]
    Other { path: PathBuf, reason: String },
}

/// The message a panic carried, for an operator.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "an unreadable page".into())
}

/// An open that failed for a reason of redb's own, for an operator.
pub(super) fn other(path: &Path, e: &dyn std::fmt::Display) -> OpenError {
    OpenError::Other {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}
