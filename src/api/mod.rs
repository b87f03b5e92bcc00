//! HTTP: the only module that knows poem. Builds the route tree, the OpenAPI
//! description and the explorer, and wraps everything in the edge middleware
//! (request id, body limit, access log, problem+json for every error).

mod audit;
mod auth;
mod backup;
mod channels;
mod description;
mod error_docs;
mod events;
mod health;
mod json;
mod keys;
mod middleware;
mod operations;
mod packages;
mod pagination;
pub mod problem;
mod ratelimit;
pub use ratelimit::RateLimiter;
pub mod serve;
mod trust;
mod types;

use self::description::{described, offline_page};

use poem::middleware::{CatchPanic, Cors};
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route};
use poem_openapi::{OpenApiService, Tags};
use std::sync::Arc;

pub use self::health::Readiness;
pub use self::middleware::{MAX_BODY_BYTES, REQUEST_ID_HEADER, RequestId};
use crate::store::Store;

#[derive(Tags)]
enum ApiTags {
    /// Packages and their statuses.
    Packages,
    /// Long-running status changes: download, activate, deactivate.
    Operations,
    /// API keys, the audit log and backups (admin role).
    Keys,
    /// Health and readiness of the service.
    Service,
    /// Channels: signed documents from a publisher that this host follows.
    Channels,
}

/// What the HTTP layer needs from the rest of the process.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub readiness: Readiness,
    /// Turns true when shutdown starts, so long polls answer at once.
    pub shutdown: crate::shutdown::Shutdown,
    /// The data directory (none for the offline OpenAPI dump).
    pub layout: Option<crate::files::Layout>,
    /// The publisher keys trusted now.
    pub trust: crate::trust::Trust,
    /// The rate limits, which a reload may change.
    pub limiter: Arc<RateLimiter>,
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// Browser origins allowed by CORS; empty turns CORS off.
    pub cors_origins: Vec<String>,
    /// Accept `?api_key=` (off by default: URLs end up in logs).
    pub allow_query_key: bool,
    /// Lifetime of keys created without `expires_at`.
    pub key_ttl: Option<std::time::Duration>,
    /// Long polls (`?wait=`) allowed to wait at once.
    pub max_waiting: usize,
    /// Accept `file://` package sources.
    pub allow_file_sources: bool,
    /// Event streams (`/v1/events`) open at once.
    pub max_streams: usize,
    /// Comment lines on idle event streams this often.
    pub event_heartbeat: std::time::Duration,
}

type Apis = (
    packages::PackagesApi,
    operations::OperationsApi,
    events::EventsApi,
    keys::KeysApi,
    backup::BackupApi,
    health::HealthApi,
    trust::TrustApi,
    channels::ChannelsApi,
);

const DESCRIPTION: &str = "\
packd manages software packages on this machine: define them, download them, \
activate them.\n\n\
Every error is an RFC 9457 `application/problem+json` body whose `code` says \
what went wrong. Lists are cursor-paginated and oldest first. Every response \
carries `X-Request-Id`.\n\n\
Every `/v1` call needs an API key, sent as `X-API-Key: <key>` or \
`Authorization: Bearer <key>` (use Authorize in the explorer). Roles: \
`read` < `write` < `admin`; each operation says which it needs.\n\n\
The interactive explorer is at [/docs](/docs), the reference page at \
[/redoc](/redoc), the description itself at [/openapi.json](/openapi.json).";

fn service(state: &AppState, options: &ApiOptions) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            packages::PackagesApi {
                store: state.store.clone(),
                schemes: if options.allow_file_sources {
                    crate::domain::source::Schemes::WebAndFile
                } else {
                    crate::domain::source::Schemes::Web
                },
                layout: state.layout.clone(),
                trust: state.trust.clone(),
            },
            operations::OperationsApi {
                store: state.store.clone(),
                shutdown: state.shutdown.clone(),
                waiting: Arc::new(tokio::sync::Semaphore::new(options.max_waiting)),
            },
            events::EventsApi {
                store: state.store.clone(),
                layout: state.layout.clone(),
                shutdown: state.shutdown.clone(),
                streams: Arc::new(tokio::sync::Semaphore::new(options.max_streams)),
                heartbeat: options.event_heartbeat,
            },
            keys::KeysApi {
                store: state.store.clone(),
                key_ttl: options.key_ttl,
            },
            backup::BackupApi {
                store: state.store.clone(),
                running: Arc::default(),
            },
            health::HealthApi {
                readiness: state.readiness.clone(),
                store: state.store.clone(),
                layout: state.layout.clone(),
            },
            trust::TrustApi {
                trust: state.trust.clone(),
            },
            channels::ChannelsApi {
                store: state.store.clone(),
                trust: state.trust.clone(),
                layout: state.layout.clone(),
            },
        ),
        "packd",
        env!("CARGO_PKG_VERSION"),
    )
    .description(DESCRIPTION)
}

/// A request whose `Origin` is the server's own (the explorer at `/docs`
/// calling the API) is not a cross-origin request, whatever
/// `--cors-origin` lists: its `Origin` is dropped before the CORS check,
/// which would otherwise refuse the server's own page. Only the host and
/// port are compared, so a TLS proxy in front (`https://` origin, plain
/// `Host`) is the same origin too. Nothing is opened by it: a client that
/// is not a browser can send any `Host`, or no `Origin` at all.
fn same_origin_is_not_cors(req: &mut poem::Request) {
    let headers = req.headers();
    let (Some(origin), Some(host)) = (
        headers
            .get(poem::http::header::ORIGIN)
            .and_then(|v| v.to_str().ok()),
        headers
            .get(poem::http::header::HOST)
            .and_then(|v| v.to_str().ok()),
    ) else {
        return;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if authority.is_some_and(|a| a.eq_ignore_ascii_case(host)) {
        req.headers_mut().remove(poem::http::header::ORIGIN);
    }
}

/// The OpenAPI description as JSON, without a running server.
pub fn openapi_json() -> Result<String, crate::store::OpenError> {
    // The description needs no data, but the handlers hold a store: an
    // in-memory one serves and is thrown away.
    let state = AppState {
        store: Store::in_memory()?,
        readiness: Readiness::default(),
        shutdown: crate::shutdown::Shutdown::never(),
        layout: None,
        trust: crate::trust::Trust::default(),
        limiter: Arc::new(RateLimiter::new(None, 0)),
    };
    let spec = described(
        &service(&state, &ApiOptions::default()),
        &ApiOptions::default(),
    );
    state.store.close();
    Ok(spec.to_string())
}

/// An endpoint that answers every request with the same bytes, shared
/// rather than copied.
fn shared_body(
    body: bytes::Bytes,
    content_type: &'static str,
) -> impl Endpoint<Output = poem::Response> {
    poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type(content_type)
            .body(body.clone())
    })
}

/// A documentation page, made at its first request and then shared. The
/// explorer page is 1.6 MB and the reference page 1 MB (their scripts are
/// inlined, so they work offline): made at start, they were a fifth of the
/// idle server's memory, for a page most servers never show. poem-openapi's
/// own endpoints copy them for every request; one shared buffer each means
/// a client that asks and never reads holds nothing. Both show the
/// description as served, not poem-openapi's draft of it.
fn lazy_page(
    state: AppState,
    options: ApiOptions,
    html: fn(&OpenApiService<Apis, ()>) -> String,
) -> impl Endpoint<Output = poem::Response> {
    let page: Arc<std::sync::OnceLock<bytes::Bytes>> = Arc::default();
    poem::endpoint::make(move |_| {
        let (page, state, options) = (page.clone(), state.clone(), options.clone());
        async move {
            // Making it takes a few milliseconds of CPU: not on the async threads.
            let body = tokio::task::spawn_blocking(move || {
                page.get_or_init(|| {
                    let api = service(&state, &options);
                    let served = described(&api, &options).to_string();
                    offline_page(html(&api), &api.spec(), &served).into()
                })
                .clone()
            })
            .await
            // A panic while making it is a bug: CatchPanic answers 500.
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            poem::Response::builder()
                .content_type("text/html; charset=utf-8")
                .body(body)
        }
    })
}

/// The whole application: every route behind the edge middleware.
pub fn app(state: AppState, options: &ApiOptions) -> impl Endpoint + 'static {
    let api = service(&state, options);
    let description = described(&api, options);
    let allowed = middleware::AllowedMethods::from_spec(&description);
    let spec = shared_body(
        description.to_string().into(),
        "application/json; charset=utf-8",
    );
    let docs = lazy_page(state.clone(), options.clone(), |api| api.swagger_ui_html());
    let redoc = lazy_page(state.clone(), options.clone(), |api| api.redoc_html());
    let routes = Route::new()
        .at("/openapi.json", poem::get(spec))
        .at("/docs", poem::get(docs))
        .at("/redoc", poem::get(redoc))
        .nest(
            "/",
            api.into_endpoint()
                .with(audit::Audit {
                    store: state.store.clone(),
                })
                .with(auth::Authenticate {
                    store: state.store.clone(),
                    allow_query_key: options.allow_query_key,
                    limiter: state.limiter.clone(),
                }),
        );
    let cors = (!options.cors_origins.is_empty()).then(|| {
        Cors::new()
            .allow_origins(options.cors_origins.iter().map(String::as_str))
            .allow_methods(["GET", "POST", "PATCH", "DELETE"])
            .allow_headers([
                "content-type",
                "authorization",
                "x-api-key",
                "if-match",
                "idempotency-key",
                "x-request-id",
            ])
            .expose_headers([
                "etag",
                "location",
                "x-request-id",
                "retry-after",
                "ratelimit",
                "ratelimit-policy",
            ])
            .max_age(600)
    });
    routes
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .before(|mut req: poem::Request| async move {
            same_origin_is_not_cors(&mut req);
            Ok(req)
        })
        .with(CatchPanic::new())
        .with(middleware::Edge {
            allowed: Arc::new(allowed),
        })
}
