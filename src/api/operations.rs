//! Operations over HTTP: start one (202), watch it (with long-poll `wait`),
//! list them, cancel one.

use std::sync::Arc;
use std::time::Duration;

use poem::Request;
use poem::http::StatusCode;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use super::ApiTags;
use super::auth::{ReadAccess, WriteAccess};
use super::error_docs::Errors;
use super::error_docs::status::{COMMON, S404, S409, S422};
use super::packages::OperationKindDto;
use super::pagination::{self, CursorParam, cursor_param, encode_cursor};
use super::problem::{ErrorCode, Problem};
use super::types::api_enum;
use super::types::{IdempotencyKey, Nullable};
use crate::domain::Timestamp;
use crate::domain::operation::OperationKind;
use crate::domain::operation::{Operation, OperationState};
use crate::store::{Idempotency, ListOperations, Principal, Store};

type StartErrors = Errors<{ COMMON | S404 | S409 | S422 }>;
type GetErrors = Errors<{ COMMON | S404 }>;
type ListErrors = Errors<COMMON>;
type CancelErrors = Errors<{ COMMON | S404 | S409 }>;

/// Longest `wait` a client may ask for, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

api_enum!(StateDto as "OperationState" <=> OperationState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled
});

/// A long-running status change of a package.
#[derive(Debug, Object)]
#[oai(rename = "Operation")]
pub(super) struct OperationDto {
    id: Uuid,
    /// The package it changes; null for a `sync`.
    package_id: Nullable<Uuid>,
    /// The channel a `sync` fetches; null for the other kinds.
    channel_id: Nullable<Uuid>,
    kind: OperationKindDto,
    state: StateDto,
    /// 0 to 100; for a download it follows the bytes.
    progress: u8,
    /// A download's bytes on disk so far; null when not a download or not
    /// known.
    bytes_done: Nullable<u64>,
    /// A download's size; null when not a download or not known.
    bytes_total: Nullable<u64>,
    /// Starts so far, resumes after a restart included.
    attempts: u32,
    /// The error of the last failed attempt, or null.
    error: Nullable<String>,
    /// A cancel was asked while it ran; it stops at its next step.
    cancel_requested: bool,
    created_at: OffsetDateTime,
    /// Null until first claimed by a worker.
    started_at: Nullable<OffsetDateTime>,
    /// Null until finished.
    finished_at: Nullable<OffsetDateTime>,
}

impl From<Operation> for OperationDto {
    fn from(o: Operation) -> Self {
        Self {
            id: o.id,
            package_id: (o.kind != OperationKind::Sync)
                .then_some(o.package_id)
                .into(),
            channel_id: (o.kind == OperationKind::Sync)
                .then_some(o.package_id)
                .into(),
            kind: o.kind.into(),
            state: o.state.into(),
            progress: o.progress,
            bytes_done: o.transfer.bytes_done.into(),
            bytes_total: o.transfer.bytes_total.into(),
            attempts: o.attempts,
            error: o.error.into(),
            cancel_requested: o.cancel_requested,
            created_at: o.created_at.to_offset_date_time(),
            started_at: o.started_at.map(Timestamp::to_offset_date_time).into(),
            finished_at: o.finished_at.map(Timestamp::to_offset_date_time).into(),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename = "OperationList")]
struct OperationList {
    items: Vec<OperationDto>,
    /// Pass as `cursor` to get the next page; null on the last page.
    next_cursor: Nullable<String>,
}

#[derive(ApiResponse)]
pub(super) enum Accepted {
    /// Accepted: the operation is queued (or, for a repeated Idempotency-Key,
    /// the operation that key started).
    #[oai(status = 202)]
    Accepted(
        Json<OperationDto>,
        /// The operation: `/v1/operations/{id}`.
        #[oai(header = "Location")]
        String,
    ),
}

pub struct OperationsApi {
    pub store: Store,
    pub shutdown: crate::shutdown::Shutdown,
    /// Long polls that may wait at once (`--max-waiting`): each holds a
    /// connection and a task, so their number is bounded like connections.
    pub waiting: Arc<tokio::sync::Semaphore>,
}

impl OperationsApi {
    async fn start(
        &self,
        req: &Request,
        package_id: Uuid,
        kind: OperationKind,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Accepted, StartErrors> {
        // A header whose bytes are not visible ASCII reaches the handler as
        // no header at all; it must not silently lose its meaning.
        let sent = req.headers().contains_key("idempotency-key");
        let idempotency = match idempotency_key {
            None if !sent => None,
            key => {
                if !key.as_ref().is_some_and(IdempotencyKey::is_valid) {
                    let mut p = Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::ValidationFailed,
                        "Idempotency-Key: must be 1 to 255 visible ASCII characters \
                         (inner spaces allowed)",
                    );
                    p.field = Some("Idempotency-Key".into());
                    return Err(p.into());
                }
                let principal = req
                    .data::<Principal>()
                    .ok_or_else(|| Problem::bad_request("no principal"))?;
                Some(Idempotency {
                    key_id: principal.key_id,
                    key: key.map(|k| k.0).unwrap_or_default(),
                })
            }
        };
        let (op, _) = self.store.enqueue(package_id, kind, idempotency).await?;
        let location = format!("/v1/operations/{}", op.id);
        Ok(Accepted::Accepted(Json(op.into()), location))
    }
}

#[OpenApi(tag = "ApiTags::Operations")]
impl OperationsApi {
    /// Download a package (created to downloaded).
    ///
    /// Role: `write`. Answers 202 at once with the queued operation. Wrong
    /// status: 409 `invalid_transition`; another operation in flight: 409
    /// `operation_in_progress`. A repeated `Idempotency-Key` returns the same operation.
    #[oai(
        path = "/v1/packages/:id/download",
        method = "post",
        operation_id = "download_package"
    )]
    async fn download(
        &self,
        _auth: WriteAccess,
        req: &Request,
        id: Path<Uuid>,
        /// Makes a retried request safe: the same key on the same call returns
        /// the same operation (kept at least 24 h). 1 to 255 characters.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<IdempotencyKey>>,
    ) -> Result<Accepted, StartErrors> {
        self.start(req, id.0, OperationKind::Download, idempotency_key.0)
            .await
    }

    /// Activate a package (downloaded to active).
    ///
    /// Role: `write`. As for download. For a package with a source, points
    /// `active/<name>` at its files, then runs the activate hook (a failing
    /// hook puts the link back and fails the attempt). The version of the
    /// same name that was active becomes `downloaded` in the transaction
    /// that makes this one `active`. While another version of the name has
    /// an activate or deactivate in flight: 409 `operation_in_progress`.
    #[oai(
        path = "/v1/packages/:id/activate",
        method = "post",
        operation_id = "activate_package"
    )]
    async fn activate(
        &self,
        _auth: WriteAccess,
        req: &Request,
        id: Path<Uuid>,
        /// As for download.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<IdempotencyKey>>,
    ) -> Result<Accepted, StartErrors> {
        self.start(req, id.0, OperationKind::Activate, idempotency_key.0)
            .await
    }

    /// Deactivate a package (active to downloaded).
    ///
    /// Role: `write`. As for activate: removes `active/<name>` (if it points
    /// at this version), then runs the deactivate hook.
    #[oai(
        path = "/v1/packages/:id/deactivate",
        method = "post",
        operation_id = "deactivate_package"
    )]
    async fn deactivate(
        &self,
        _auth: WriteAccess,
        req: &Request,
        id: Path<Uuid>,
        /// As for download.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<IdempotencyKey>>,
    ) -> Result<Accepted, StartErrors> {
        self.start(req, id.0, OperationKind::Deactivate, idempotency_key.0)
            .await
    }

    /// Get an operation, optionally waiting for it to finish.
    ///
    /// Role: `read`. With `wait=N` (0 to 60 seconds) the answer comes as soon
    /// as the operation is finished, or after N seconds with its current state.
    /// When the server already holds `--max-waiting` long polls, a request
    /// that would wait gets 503 `unavailable` with `Retry-After`.
    #[oai(
        path = "/v1/operations/:id",
        method = "get",
        operation_id = "get_operation"
    )]
    async fn get(
        &self,
        _auth: ReadAccess,
        id: Path<Uuid>,
        /// Seconds to wait for the operation to finish (0 to 60).
        #[oai(validator(minimum(value = "0"), maximum(value = "60")))]
        wait: Query<Option<u64>>,
    ) -> Result<Json<OperationDto>, GetErrors> {
        let wait = Duration::from_secs(wait.0.unwrap_or(0).min(MAX_WAIT_SECONDS));
        // Subscribed before the first read, so a finish in between is not missed.
        let mut finished = self.store.finished_events();
        let mut op = self.store.get_operation(id.0)?;
        if wait.is_zero() || op.state.is_finished() {
            return Ok(Json(op.into()));
        }
        let Ok(_waiting) = self.waiting.clone().try_acquire_owned() else {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "too many requests are waiting for operations; retry, or ask without `wait`",
            )
            .with_header(
                poem::http::header::RETRY_AFTER,
                poem::http::HeaderValue::from_static("1"),
            )
            .into());
        };
        let _counted = crate::metrics::global().long_poll_waiting();
        let deadline = tokio::time::Instant::now() + wait;
        tracing::debug!(operation = %op.id, ?wait, "long poll waiting");
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                changed = finished.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
                () = shutdown.wait() => break,
            }
            op = self.store.get_operation(id.0)?;
            if op.state.is_finished() {
                break;
            }
        }
        Ok(Json(self.store.get_operation(id.0).unwrap_or(op).into()))
    }

    /// List operations, oldest first.
    ///
    /// Role: `read`. Filters combine: `package_id` and `state`.
    #[oai(
        path = "/v1/operations",
        method = "get",
        operation_id = "list_operations"
    )]
    async fn list(
        &self,
        _auth: ReadAccess,
        /// Only operations of this package.
        package_id: Query<Option<Uuid>>,
        /// Only operations in this state.
        state: Query<Option<StateDto>>,
        /// Page size, 1 to 1000 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<CursorParam>>,
    ) -> Result<Json<OperationList>, ListErrors> {
        let q = ListOperations {
            package_id: package_id.0,
            state: state.0.map(Into::into),
            after: cursor_param(cursor.0.as_ref())?,
            limit: pagination::limit(limit.0),
        };
        let page = self.store.list_operations(&q)?;
        Ok(Json(OperationList {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_after.map(encode_cursor).into(),
        }))
    }

    /// Cancel an operation.
    ///
    /// Role: `write`. Queued: cancelled at once. Running: stops at its next
    /// step (the answer shows `cancel_requested`). Finished: 409
    /// `already_finished`. Cancelling never rolls a status back.
    #[oai(
        path = "/v1/operations/:id/cancel",
        method = "post",
        operation_id = "cancel_operation"
    )]
    async fn cancel(
        &self,
        _auth: WriteAccess,
        id: Path<Uuid>,
    ) -> Result<Json<OperationDto>, CancelErrors> {
        Ok(Json(self.store.cancel_operation(id.0).await?.into()))
    }
}
