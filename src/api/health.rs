//! Service endpoints that need no key: liveness and readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::problem::{ErrorCode, Problem, ProblemBody};

/// Whether the service takes work: set once the store is open and the
/// socket bound, cleared when shutdown starts.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Object)]
struct HealthStatus {
    /// `ok` or `ready`.
    status: String,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Ready to take requests.
    #[oai(status = 200)]
    Ready(Json<HealthStatus>),
    /// Starting or stopping (`unavailable`).
    #[oai(status = 503, content_type = "application/problem+json")]
    NotReady(Json<ProblemBody>),
}

#[derive(ApiResponse)]
enum RedirectResponse {
    /// The explorer.
    #[oai(status = 307)]
    ToDocs(#[oai(header = "Location")] String),
}

pub struct HealthApi {
    pub readiness: Readiness,
}

#[OpenApi(tag = "ApiTags::Service")]
impl HealthApi {
    /// `/` leads people who open the server in a browser to the explorer.
    #[oai(path = "/", method = "get", hidden)]
    async fn root(&self) -> RedirectResponse {
        RedirectResponse::ToDocs("/docs".into())
    }

    /// Liveness: 200 while the process serves. Needs no key.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<HealthStatus> {
        Json(HealthStatus {
            status: "ok".into(),
        })
    }

    /// Readiness: 200 once the store is open and the service takes work; 503
    /// while starting or shutting down. Needs no key.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self) -> ReadyResponse {
        if self.readiness.get() {
            ReadyResponse::Ready(Json(HealthStatus {
                status: "ready".into(),
            }))
        } else {
            ReadyResponse::NotReady(Json(
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the service is starting or stopping",
                )
                .body(),
            ))
        }
    }
}
