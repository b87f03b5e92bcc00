//! How errors are described in the OpenAPI description: handlers return
//! `Errors<SET>`, a `Problem` tagged at the type level with the statuses the
//! operation can answer, so the description lists exactly those (with the
//! problem schema) for each; and an example problem per status, whose
//! `detail` is made by the same code that makes the real answer, never a
//! copy of its text.

use poem::error::ResponseError;
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;

use super::auth;
use super::problem::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem, ProblemBody};
use crate::domain::ValidationError;
use crate::store::{Refusal, StoreError};

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

/// What an operation's 409 most likely is, as the refusal that makes it.
fn conflict_of(operation_id: &str) -> Refusal {
    use crate::domain::operation::{OperationKind, OperationState};
    use crate::domain::package::Status;
    let example_id = uuid::Uuid::from_u128(0x0193_b7a2_0000_7000_8000_0000_0000_0001);
    let wrong_status = |kind: OperationKind, actual| Refusal::InvalidTransition {
        kind,
        needed: kind.transition().map_or(actual, |(from, _)| from),
        actual,
    };
    match operation_id {
        "create_package" => Refusal::Duplicate {
            name: "jq".into(),
            version: "1.7.1".into(),
            existing: example_id,
        },
        "update_package" => Refusal::OperationInProgress {
            operation_id: example_id,
        },
        "delete_package" => Refusal::Active,
        "download_package" => wrong_status(OperationKind::Download, Status::Downloaded),
        "activate_package" => wrong_status(OperationKind::Activate, Status::Created),
        "deactivate_package" => wrong_status(OperationKind::Deactivate, Status::Downloaded),
        "cancel_operation" => Refusal::AlreadyFinished(OperationState::Succeeded),
        "deactivate_key" | "delete_key" | "update_key" => Refusal::LastAdmin,
        "create_channel" => Refusal::Conflict(super::channels::NEEDS_A_KEY.into()),
        _ => Refusal::Conflict("conflicts with the current state".into()),
    }
}

/// The problem of a value a rule refused (the examples' values are always
/// refused; a value that passed would make a 400 example, visibly wrong).
fn validation<T>(checked: Result<T, ValidationError>) -> Problem {
    checked.map_or_else(Problem::from, |_| Problem::bad_request("no example"))
}

/// The example problem of `status` for an operation, for the description:
/// made by the code that makes the real answer (a refusal of the store, a
/// rule of the domain, the authentication), so the two cannot drift.
pub fn example(operation_id: &str, status: u16) -> serde_json::Value {
    let refused = |r: Refusal| Problem::from(StoreError::Refused(r));
    let problem = match status {
        400 => Problem::bad_request(
            "the body is not valid JSON: expected `,` or `}` at line 1 column 18",
        ),
        401 => auth::example(ErrorCode::Unauthorized).unwrap_or_else(Problem::internal),
        403 => auth::example(ErrorCode::Forbidden).unwrap_or_else(Problem::internal),
        404 => refused(Refusal::NotFound),
        409 => refused(conflict_of(operation_id)),
        412 => refused(Refusal::PreconditionFailed { current: 3 }),
        413 => Problem::payload_too_large(crate::api::middleware::MAX_BODY_BYTES),
        415 => super::problem::from_status(
            poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be `application/json`",
        ),
        // The operation calls' 422 is about their Idempotency-Key; the
        // others' about a field of the body.
        422 if matches!(
            operation_id,
            "download_package" | "activate_package" | "deactivate_package"
        ) =>
        {
            refused(Refusal::IdempotencyMismatch)
        }
        422 if operation_id.ends_with("_channel") => validation(crate::domain::channel::check_url(
            "ftp://releases.example.org/c.json",
        )),
        422 if operation_id.ends_with("_key") => {
            validation(crate::domain::key::parse_key_name(String::new()))
        }
        422 => validation(crate::domain::package::PackageName::parse("").map(|_| ())),
        429 => auth::example(ErrorCode::RateLimited).unwrap_or_else(Problem::internal),
        500 => Problem::internal(),
        // Made directly: through the store error it would log a warning
        // for every example at start.
        503 => Problem::unavailable(),
        _ => super::problem::from_status(
            poem::http::StatusCode::from_u16(status).unwrap_or(poem::http::StatusCode::BAD_REQUEST),
            "",
        ),
    };
    poem_openapi::types::ToJSON::to_json(&problem.body()).unwrap_or_default()
}
