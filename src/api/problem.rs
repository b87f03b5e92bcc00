//! Every error as RFC 9457 `application/problem+json`, and the one mapping
//! from domain, store and framework errors to it.
//!
//! Handlers return `Errors<SET>`, a `Problem` tagged at the type level with the
//! statuses the operation can answer, so the OpenAPI description lists exactly
//! those (with the problem schema) for each operation.

use poem::error::{MethodNotAllowedError, NotFoundError, ResponseError};
use poem::http::{HeaderName, HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::error::{
    ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Enum, Object};

use crate::domain::ValidationError;
use crate::store::StoreError;
use crate::store::{Failure, Refusal};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The machine-readable `code` of a problem. Clients branch on this, not on
/// `title` or `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    ValidationFailed,
    Unauthorized,
    KeyInactive,
    KeyExpired,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    Duplicate,
    InvalidTransition,
    OperationInProgress,
    AlreadyFinished,
    LastAdmin,
    PreconditionFailed,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::KeyInactive => "key_inactive",
            ErrorCode::KeyExpired => "key_expired",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::OperationInProgress => "operation_in_progress",
            ErrorCode::AlreadyFinished => "already_finished",
            ErrorCode::LastAdmin => "last_admin",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The RFC 9457 body.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Problem")]
pub struct ProblemBody {
    /// A URI naming the kind of problem: `urn:packd:problem:<code>`.
    #[oai(rename = "type")]
    pub type_: String,
    /// Short summary of the kind of problem; the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for a human.
    pub detail: String,
    /// What went wrong, for a program.
    pub code: ErrorCode,
    /// The request field at fault, for `validation_failed`.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

/// An error answer. Build one with the constructors; turn any error into one with `From`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {}: {detail}", code.as_str())]
pub struct Problem {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    pub field: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, detail)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "an internal error occurred; the server log has the details under this request's id",
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {} KiB", limit / 1024),
        )
    }

    pub fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }

    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            type_: format!("urn:packd:problem:{}", self.code.as_str()),
            title: self.title().to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            field: self.field.clone(),
        }
    }
}

impl ResponseError for Problem {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        let body = poem_openapi::types::ToJSON::to_json_string(&self.body());
        let mut resp = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)
            .body(body);
        for (name, value) in &self.headers {
            resp.headers_mut().append(name.clone(), value.clone());
        }
        resp
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.as_response()
    }
}

impl From<ValidationError> for Problem {
    fn from(e: ValidationError) -> Self {
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationFailed,
            e.to_string(),
        );
        p.field = Some(e.field.to_string());
        p
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(Refusal::NotFound) => Problem::not_found("no such resource"),
            StoreError::Refused(Refusal::Duplicate { .. }) => {
                Problem::new(StatusCode::CONFLICT, ErrorCode::Duplicate, e.to_string())
            }
            StoreError::Refused(Refusal::PreconditionFailed { current }) => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::PreconditionFailed,
                format!(
                    "If-Match does not match the current revision; the current ETag is \"{current}\""
                ),
            ),
            StoreError::Refused(Refusal::LastAdmin) => {
                Problem::new(StatusCode::CONFLICT, ErrorCode::LastAdmin, e.to_string())
            }
            StoreError::Refused(Refusal::IdempotencyMismatch) => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::ValidationFailed,
                    format!("Idempotency-Key: {e}"),
                );
                p.field = Some("Idempotency-Key".into());
                p
            }
            StoreError::Refused(Refusal::InvalidTransition { .. } | Refusal::Active) => {
                Problem::new(
                    StatusCode::CONFLICT,
                    ErrorCode::InvalidTransition,
                    e.to_string(),
                )
            }
            StoreError::Refused(Refusal::AlreadyFinished(_)) => Problem::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyFinished,
                e.to_string(),
            ),
            StoreError::Refused(Refusal::Conflict(_)) => {
                Problem::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
            }
            StoreError::Refused(Refusal::OperationInProgress { .. } | Refusal::NameBusy { .. }) => {
                Problem::new(
                    StatusCode::CONFLICT,
                    ErrorCode::OperationInProgress,
                    e.to_string(),
                )
            }
            StoreError::Failed(Failure::Unavailable(_)) | StoreError::Failed(Failure::Closed) => {
                tracing::warn!(error = %e, "store unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the service cannot take this request right now; retry later",
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
            }
            StoreError::Failed(Failure::Damaged(_)) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                "the database file is damaged, so the service refuses writes; \
                 an operator must restore it (README: a damaged file)",
            ),
            StoreError::Failed(Failure::Corrupt(_)) | StoreError::Failed(Failure::Internal(_)) => {
                tracing::error!(error = %e, "store error");
                Problem::internal()
            }
        }
    }
}

/// Turns an error raised anywhere in the stack (our own, poem's routing, the
/// OpenAPI layer's parsing) into a problem with the right status and code.
pub fn from_poem_error(err: &poem::Error) -> Problem {
    if let Some(p) = err.downcast_ref::<Problem>() {
        return p.clone();
    }
    if err.is::<NotFoundError>() {
        return Problem::not_found("no such route");
    }
    if err.is::<MethodNotAllowedError>() {
        return Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this route does not support this method",
        );
    }
    if err.is::<ParsePathError>() {
        // poem-openapi names path parameters `param0`…; every one of ours is
        // an id, and an id that is not a UUID names nothing: 404, as the
        // README's Errors section says.
        return Problem::not_found("no such resource: the id in the path is not a UUID");
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return Problem::bad_request(format!("parameter `{}`: {}", e.name, e.reason));
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return Problem::bad_request(format!("request body: {}", e.reason));
    }
    if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        return Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            format!("{e}; send `Content-Type: application/json`"),
        );
    }
    from_status(err.status(), &err.to_string())
}

/// The code a bare status stands for.
pub fn code_for_status(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        412 => ErrorCode::PreconditionFailed,
        413 => ErrorCode::PayloadTooLarge,
        422 => ErrorCode::ValidationFailed,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        500..=599 => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

/// An example problem body for the description.
pub fn example(status: u16, code: ErrorCode) -> serde_json::Value {
    let detail = match code {
        ErrorCode::BadRequest => {
            "the body is not valid JSON: expected `,` or `}` at line 1 column 18"
        }
        ErrorCode::ValidationFailed => "name: must be 1 to 200 characters",
        ErrorCode::Unauthorized => "the API key is not valid",
        ErrorCode::KeyInactive => "the API key is deactivated",
        ErrorCode::KeyExpired => "the API key expired",
        ErrorCode::Forbidden => "this call needs the write role; the key has read",
        ErrorCode::NotFound => "no such package",
        ErrorCode::MethodNotAllowed => "method not allowed",
        ErrorCode::Conflict => "conflicts with the current state",
        ErrorCode::Duplicate => {
            "a package named \"jq\" with version \"1.7.1\" already exists (0193b7a2-0000-7000-8000-000000000000)"
        }
        ErrorCode::InvalidTransition => {
            "activate needs a package with status downloaded; this one is created"
        }
        ErrorCode::OperationInProgress => {
            "operation 0193b7a2-0000-7000-8000-000000000001 is in flight for this package"
        }
        ErrorCode::AlreadyFinished => "the operation has already finished (succeeded)",
        ErrorCode::LastAdmin => {
            "this is the last active admin key that never expires; create another admin key first"
        }
        ErrorCode::PreconditionFailed => "the current revision is 3",
        ErrorCode::PayloadTooLarge => "the request body is larger than 64 KiB",
        ErrorCode::RateLimited => {
            "too many requests for this key; retry after the Retry-After delay"
        }
        ErrorCode::Unavailable => "the service cannot take this request right now; retry later",
        ErrorCode::Internal => {
            "an internal error occurred; the server log has the details under this request's id"
        }
    };
    let mut body = serde_json::json!({
        "type": format!("urn:packd:problem:{}", code.as_str()),
        "title": StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error"),
        "status": status,
        "detail": detail,
        "code": code.as_str(),
    });
    if code == ErrorCode::ValidationFailed {
        body["field"] = "name".into();
    }
    body
}

/// A problem for a bare status (a framework response without a problem body).
pub fn from_status(status: StatusCode, detail: &str) -> Problem {
    let code = code_for_status(status.as_u16());
    if code == ErrorCode::Internal {
        tracing::error!(%status, error = detail, "internal error");
        return Problem::internal();
    }
    let detail = if detail.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        detail.to_string()
    };
    Problem::new(status, code, detail)
}

/// Bits naming the error statuses an operation can answer (`Errors<SET>`).
pub mod status {
    pub const S400: u16 = 1 << 0;
    pub const S401: u16 = 1 << 1;
    pub const S403: u16 = 1 << 2;
    pub const S404: u16 = 1 << 3;
    pub const S409: u16 = 1 << 4;
    pub const S412: u16 = 1 << 5;
    pub const S413: u16 = 1 << 6;
    pub const S415: u16 = 1 << 7;
    pub const S422: u16 = 1 << 8;
    pub const S429: u16 = 1 << 9;
    pub const S500: u16 = 1 << 10;
    pub const S503: u16 = 1 << 11;

    /// What any authenticated `/v1` call can meet.
    pub const COMMON: u16 = S400 | S401 | S403 | S429 | S500 | S503;
    /// What a call with a JSON body can meet on top.
    pub const BODY: u16 = S413 | S415 | S422;
}

const STATUS_DOCS: &[(u16, u16, &str)] = &[
    (
        status::S400,
        400,
        "Malformed request: bad JSON, unknown field, bad parameter or cursor (`bad_request`).",
    ),
    (
        status::S401,
        401,
        "No valid API key (`unauthorized`), or the key is deactivated (`key_inactive`) or expired (`key_expired`).",
    ),
    (
        status::S403,
        403,
        "The key's role is too low for this call (`forbidden`).",
    ),
    (status::S404, 404, "No such resource (`not_found`)."),
    (
        status::S409,
        409,
        "Conflicts with the current state: `duplicate`, `operation_in_progress`, `invalid_transition`, `already_finished`, `last_admin`.",
    ),
    (
        status::S412,
        412,
        "`If-Match` does not match the current ETag (`precondition_failed`).",
    ),
    (
        status::S413,
        413,
        "The body is over 64 KiB (`payload_too_large`).",
    ),
    (
        status::S415,
        415,
        "The body is not `application/json` (`bad_request`).",
    ),
    (
        status::S422,
        422,
        "Well-formed JSON that breaks a rule; `field` names the field (`validation_failed`).",
    ),
    (
        status::S429,
        429,
        "Over the key's rate limit (`rate_limited`); see `Retry-After`.",
    ),
    (
        status::S500,
        500,
        "A bug (`internal`); the log has details under the request id.",
    ),
    (
        status::S503,
        503,
        "Storage cannot take writes right now, or the service is stopping (`unavailable`).",
    ),
];

/// A problem answered by an operation that documents the statuses in `SET`.
#[derive(Debug)]
pub struct Errors<const SET: u16>(pub Problem);

impl<const SET: u16> ApiResponse for Errors<SET> {
    fn meta() -> MetaResponses {
        let responses = STATUS_DOCS
            .iter()
            .filter(|(bit, _, _)| SET & bit != 0)
            .map(|&(bit, code, description)| {
                let mut headers = Vec::new();
                if bit == status::S401 {
                    headers.push(header_meta(
                        "WWW-Authenticate",
                        "The scheme to authenticate with.",
                    ));
                }
                if bit == status::S429 || bit == status::S503 {
                    headers.push(header_meta(
                        "Retry-After",
                        "Seconds to wait before retrying.",
                    ));
                }
                MetaResponse {
                    description,
                    status: Some(code),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_CONTENT_TYPE,
                        schema: ProblemBody::schema_ref(),
                    }],
                    headers,
                }
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        ProblemBody::register(registry);
    }
}

fn header_meta(name: &str, description: &str) -> MetaHeader {
    MetaHeader {
        name: name.to_string(),
        description: Some(description.to_string()),
        required: false,
        deprecated: false,
        schema: String::schema_ref(),
    }
}

impl<const SET: u16> From<Errors<SET>> for poem::Error {
    fn from(e: Errors<SET>) -> Self {
        poem::Error::from(e.0)
    }
}

impl<const SET: u16> IntoResponse for Errors<SET> {
    fn into_response(self) -> Response {
        self.0.as_response()
    }
}

impl<const SET: u16> From<Problem> for Errors<SET> {
    fn from(p: Problem) -> Self {
        Self(p)
    }
}

impl<const SET: u16> From<StoreError> for Errors<SET> {
    fn from(e: StoreError) -> Self {
        Self(e.into())
    }
}

impl<const SET: u16> From<ValidationError> for Errors<SET> {
    fn from(e: ValidationError) -> Self {
        Self(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_the_readme_spells_them() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::OperationInProgress,
            ErrorCode::PreconditionFailed,
            ErrorCode::LastAdmin,
        ] {
            let json = poem_openapi::types::ToJSON::to_json(&code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().into()));
        }
    }

    #[test]
    fn store_errors_map_to_statuses() {
        let p = Problem::from(StoreError::Refused(Refusal::PreconditionFailed {
            current: 4,
        }));
        assert_eq!(p.status, StatusCode::PRECONDITION_FAILED);
        assert!(p.detail.contains("\"4\""));
        let p = Problem::from(StoreError::Failed(Failure::Internal(
            "secret path /x".into(),
        )));
        assert_eq!(p.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!p.detail.contains("/x"), "internal details never leak");
    }
}
