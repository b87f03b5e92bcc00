//! The label values of packd's metrics: each a closed set, declared once.

use super::family::{Label, label};
use crate::domain::operation::OperationKind;
use crate::domain::operation::OperationState;

label!(
    /// Why an authentication failed: the `code` of its 401.
    AuthFailureCode as "code" {
        Unauthorized => "unauthorized",
        KeyInactive => "key_inactive",
        KeyExpired => "key_expired",
    }
);

label!(
    /// Why a connection was refused: the limit it hit.
    ConnectionRefusal as "reason" {
        MaxConnections => "max_connections",
        PerClient => "per_client",
    }
);

label!(
    /// Why a download attempt failed: a fault a retry may mend, one it
    /// cannot (4xx, a size or digest mismatch, too large), the archive, the
    /// data directory, or no trusted signature vouching for the artifact.
    DownloadFailure as "reason" {
        Transient => "transient",
        Permanent => "permanent",
        Unpack => "unpack",
        Files => "files",
        SignatureInvalid => "signature_invalid",
    }
);

label!(
    /// How a channel's sync ended: a document with a new sequence applied,
    /// the same document again, a 304, a document refused, a fetch failed.
    SyncOutcome as "outcome" {
        Applied => "applied",
        Unchanged => "unchanged",
        NotModified => "not_modified",
        Refused => "refused",
        Failed => "failed",
    }
);

label!(
    /// Why a channel document was refused.
    RefusedDocument as "reason" {
        Malformed => "malformed",
        Signature => "signature",
        Replay => "replay",
        Expired => "expired",
    }
);

label!(
    /// The operator's hooks.
    Hook as "hook" {
        Activate => "activate",
        Deactivate => "deactivate",
        Health => "health",
    }
);

label!(
    /// How a run of a hook ended.
    HookOutcome as "outcome" {
        Succeeded => "succeeded",
        Failed => "failed",
        TimedOut => "timed_out",
        NotStarted => "not_started",
        Stopped => "stopped",
    }
);

label!(
    /// What start-up reconciliation did to the data directory.
    ReconcileAction as "action" {
        LinkMade => "link_made",
        LinkRepointed => "link_repointed",
        LinkRemoved => "link_removed",
        PartialRemoved => "partial_removed",
        StagingRemoved => "staging_removed",
        RemovalFinished => "removal_finished",
        HookProcessEnded => "hook_process_ended",
    }
);

label!(
    /// How a journaled removal ended.
    RemovalOutcome as "outcome" {
        Done => "done",
        Deferred => "deferred",
        Failed => "failed",
    }
);

label!(
    /// How an operation finished.
    Finished as "state" {
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl Finished {
    pub fn of(state: OperationState) -> Option<Finished> {
        match state {
            OperationState::Succeeded => Some(Finished::Succeeded),
            OperationState::Failed => Some(Finished::Failed),
            OperationState::Cancelled => Some(Finished::Cancelled),
            OperationState::Queued | OperationState::Running => None,
        }
    }
}

impl Label for OperationKind {
    const NAME: &'static str = "kind";

    fn all() -> &'static [Self] {
        &OperationKind::ALL
    }

    fn as_str(self) -> &'static str {
        OperationKind::as_str(self)
    }

    fn index(self) -> usize {
        OperationKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(0)
    }
}
