//! Service endpoints that need no key: liveness, readiness and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use poem::http::StatusCode;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::problem::{ErrorCode, Problem, ProblemBody};
use crate::liveness::Liveness;
use crate::metrics::{self, StoreGauges};
use crate::store::{Damage, Store};

/// Whether the service takes work: serving is set once the store is open
/// and the socket bound, and cleared when shutdown starts; the workers must
/// all be running too.
#[derive(Clone, Default)]
pub struct Readiness {
    serving: Arc<AtomicBool>,
    workers: Liveness,
    damage: Damage,
}

impl Readiness {
    pub fn new(workers: Liveness, damage: Damage) -> Self {
        Self {
            serving: Arc::default(),
            workers,
            damage,
        }
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// `None` when ready, otherwise why not.
    fn not_ready(&self) -> Option<String> {
        if let Some(reason) = self.damage.found() {
            return Some(format!(
                "the database file is damaged ({reason}); writes are refused"
            ));
        }
        if !self.serving.load(Ordering::SeqCst) {
            return Some("the service is starting or stopping".into());
        }
        if !self.workers.all_running() {
            return Some(format!(
                "{} of {} workers are running",
                self.workers.running(),
                self.workers.started()
            ));
        }
        None
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

#[derive(ApiResponse)]
enum MetricsResponse {
    /// The metrics, Prometheus text format 0.0.4.
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PlainText<String>),
}

pub struct HealthApi {
    pub readiness: Readiness,
    pub store: Store,
    /// The data directory, whose file system's space `/metrics` shows.
    pub layout: Option<crate::files::Layout>,
}

#[OpenApi(tag = "ApiTags::Service")]
impl HealthApi {
    /// `/` leads people who open the server in a browser to the explorer.
    #[oai(path = "/", method = "get", hidden)]
    async fn root(&self) -> RedirectResponse {
        RedirectResponse::ToDocs("/docs".into())
    }

    /// Liveness.
    ///
    /// 200 while the process serves. Needs no key.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<HealthStatus> {
        Json(HealthStatus {
            status: "ok".into(),
        })
    }

    /// Readiness.
    ///
    /// 200 once the store is open and the service takes work; 503 while
    /// starting or shutting down. Needs no key.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self) -> ReadyResponse {
        match self.readiness.not_ready() {
            None => ReadyResponse::Ready(Json(HealthStatus {
                status: "ready".into(),
            })),
            Some(why) => ReadyResponse::NotReady(Json(
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, why).body(),
            )),
        }
    }

    /// Prometheus metrics.
    ///
    /// In the text exposition format: requests by route
    /// and status with latency histograms, operations by kind and state,
    /// queue depth, retries, refused authentications, store commit latency.
    /// Needs no key (scrapers are configured per network, not per key).
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self) -> MetricsResponse {
        let space = match self.layout.as_ref().map(|l| l.root().to_path_buf()) {
            Some(root) => tokio::task::spawn_blocking(move || crate::files::space::space(&root))
                .await
                .ok()
                .and_then(|read| {
                    read.inspect_err(
                        |e| tracing::warn!(error = %e, "cannot read the data directory's free space"),
                    )
                    .ok()
                }),
            None => None,
        };
        let gauges = StoreGauges {
            data_dir: space.map(|s| (s.free, s.used())),
            queue_depth: self.store.queue_depth().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the queue depth for metrics");
                0
            }),
            active: self.store.active_operations().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot count operations for metrics");
                Vec::new()
            }),
            channel_sequences: self
                .store
                .list_channels()
                .map(|cs| {
                    cs.into_iter()
                        .filter_map(|c| Some((c.id, c.sequence?)))
                        .collect()
                })
                .unwrap_or_default(),
        };
        MetricsResponse::Ok(PlainText(metrics::global().render(&gauges)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_serving_with_every_worker_running() {
        let r = Readiness::new(Liveness::fixed(4, 4), Damage::default());
        assert!(r.not_ready().is_some(), "not serving yet");
        r.set_serving(true);
        assert_eq!(r.not_ready(), None);
        let r = Readiness::new(Liveness::fixed(3, 4), Damage::default());
        r.set_serving(true);
        assert_eq!(r.not_ready().as_deref(), Some("3 of 4 workers are running"));
        // Without workers (the offline OpenAPI dump) the service is never ready.
        let r = Readiness::default();
        r.set_serving(true);
        assert!(r.not_ready().is_some());
    }
}
