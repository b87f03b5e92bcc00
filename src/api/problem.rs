//! Every error as RFC 9457 `application/problem+json`, and the one mapping
//! from domain, store and framework errors to it. How errors are described
//! in the OpenAPI description (`Errors<SET>`, the examples) is
//! `error_docs.rs`.

use poem::error::{MethodNotAllowedError, NotFoundError, ResponseError};
use poem::http::{HeaderName, HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::error::{
    ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
};
use poem_openapi::{Enum, Object};

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

    /// The storage cannot take the request now; a retry may pass.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the service cannot take this request right now; retry later",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
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
                Problem::unavailable()
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

/// The OpenAPI layer's reason for refusing a query parameter, said as
/// packd says it: `failed to parse "Status": Expect a valid enumeration
/// value. (occurred while parsing "optional_Status")` becomes `must be one
/// of created, downloaded, active`.
fn in_our_words(name: &str, reason: &str) -> String {
    use crate::domain::operation::{OperationKind, OperationState};
    use crate::domain::package::Status;
    let one_of = |values: Vec<&str>| format!("must be one of {}", values.join(", "));
    if reason.contains("valid enumeration value") {
        return match name {
            "status" => one_of(Status::ALL.iter().map(|s| s.as_str()).collect()),
            "state" => one_of(OperationState::ALL.iter().map(|s| s.as_str()).collect()),
            "kind" => one_of(OperationKind::ALL.iter().map(|s| s.as_str()).collect()),
            _ => "is not one of the values the API description lists".into(),
        };
    }
    if reason.contains("\"integer") || reason.contains("\"optional_integer") {
        return "must be a whole number".into();
    }
    let bound = |word: &str| {
        let at = reason.find(word)? + word.len();
        let n: String = reason[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        (!n.is_empty()).then_some(n)
    };
    if let Some(n) = bound("minimum(") {
        return format!("must be at least {n}");
    }
    if let Some(n) = bound("maximum(") {
        return format!("must be at most {n}");
    }
    // Anything else, without the layer's own note on where it was.
    reason
        .split(" (occurred while parsing")
        .next()
        .unwrap_or(reason)
        .to_string()
}

/// The OpenAPI layer's reason for refusing a JSON body, said as packd
/// says it: `Expected input type "Role", found "boss". (occurred while
/// parsing "NewApiKey")` becomes `role: must be one of read, write, admin
/// (got "boss")`. The layer names the type, not the field; each of our
/// types belongs to one field (or, for text, to the name and version).
fn body_in_our_words(reason: &str) -> String {
    use crate::domain::channel::ActivateMode;
    use crate::domain::key::Role;
    let bare = reason
        .split(" (occurred while parsing")
        .next()
        .unwrap_or(reason)
        .trim_end_matches('.');
    if let Some(rest) = bare.strip_prefix("Expected input type \"") {
        let (ty, found) = rest.split_once("\", found ").unwrap_or((rest, ""));
        // What the client sent is said back, but only its start: a 64 KiB
        // value is not worth echoing (nor logging) whole.
        let found = match found.char_indices().nth(80) {
            Some((at, _)) => format!("{}…", &found[..at]),
            None => found.to_string(),
        };
        let one_of = |values: Vec<&str>| format!("must be one of {}", values.join(", "));
        let max = ty
            .strip_prefix("text(")
            .and_then(|n| n.strip_suffix(')'))
            .unwrap_or("");
        let (field, rule) = match ty {
            "sha256" => (
                "source.sha256",
                "must be 64 lowercase hexadecimal digits".to_string(),
            ),
            "source_url" => (
                "source.url",
                "must be an http or https URL (file with --allow-file-sources)".to_string(),
            ),
            "Role" => (
                "role",
                one_of(
                    [Role::Read, Role::Write, Role::Admin]
                        .map(Role::as_str)
                        .to_vec(),
                ),
            ),
            "ActivateMode" => (
                "activate",
                one_of(ActivateMode::ALL.map(ActivateMode::as_str).to_vec()),
            ),
            "boolean" => ("pinned", "must be true or false".to_string()),
            "SourceInput" => (
                "source",
                "must be an object with url and sha256, or null".to_string(),
            ),
            _ if !max.is_empty() => (
                "name or version",
                format!("must be text of 1 to {max} characters"),
            ),
            _ if ty.starts_with("integer") => ("a number", "must be a whole number".to_string()),
            _ => {
                return format!(
                    "must be a JSON object of the fields this call takes (got {found})"
                );
            }
        };
        return if found == "null" {
            format!("{field}: is required ({rule})")
        } else {
            format!("{field}: {rule} (got {found})")
        };
    }
    if bare.contains("invalid integer") || bare.contains("\"integer(") {
        return "a number must be a whole number, 0 or more".into();
    }
    // `failed to parse "NewPackage": unknown field `x``: the part after the
    // layer's type name is already in words.
    match bare.strip_prefix("failed to parse \"") {
        Some(rest) => rest
            .split_once("\": ")
            .map_or(rest, |(_, said)| said)
            .to_string(),
        None => bare.to_string(),
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
        return Problem::bad_request(format!(
            "parameter `{}`: {}",
            e.name,
            in_our_words(e.name, &e.reason)
        ));
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return Problem::bad_request(format!("request body: {}", body_in_our_words(&e.reason)));
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
