//! HTTP: the only module that knows poem. Builds the route tree, the OpenAPI
//! description and the explorer, and wraps everything in the edge middleware
//! (request id, body limit, access log, problem+json for every error).

mod health;
mod middleware;
mod packages;
mod pagination;
pub mod problem;
mod types;

use poem::middleware::{CatchPanic, Cors};
use poem::{Endpoint, EndpointExt, IntoEndpoint, Route};
use poem_openapi::{OpenApiService, Tags};

pub use self::health::Readiness;
pub use self::middleware::{MAX_BODY_BYTES, REQUEST_ID_HEADER, RequestId};
use crate::store::Store;

#[derive(Tags)]
enum ApiTags {
    /// Packages and their statuses.
    Packages,
    /// Health and readiness of the service.
    Service,
}

/// What the HTTP layer needs from the rest of the process.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub readiness: Readiness,
}

/// Settings of the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// Browser origins allowed by CORS; empty turns CORS off.
    pub cors_origins: Vec<String>,
}

type Apis = (packages::PackagesApi, health::HealthApi);

const DESCRIPTION: &str = "\
packd manages software packages on this machine: define them, download them, \
activate them.\n\n\
Every error is an RFC 9457 `application/problem+json` body whose `code` says \
what went wrong. Lists are cursor-paginated and oldest first. Every response \
carries `X-Request-Id`.";

fn service(state: &AppState) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            packages::PackagesApi {
                store: state.store.clone(),
            },
            health::HealthApi {
                readiness: state.readiness.clone(),
            },
        ),
        "packd",
        env!("CARGO_PKG_VERSION"),
    )
    .description(DESCRIPTION)
}

/// The OpenAPI description as JSON, without a running server.
pub fn openapi_json() -> Result<String, crate::store::OpenError> {
    // The description needs no data, but the handlers hold a store: an
    // in-memory one serves and is thrown away.
    let state = AppState {
        store: Store::in_memory()?,
        readiness: Readiness::default(),
    };
    let spec = service(&state).spec();
    state.store.close();
    Ok(spec)
}

/// The whole application: every route behind the edge middleware.
pub fn app(state: AppState, options: &ApiOptions) -> impl Endpoint + 'static {
    let api = service(&state);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    let routes = Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", api.into_endpoint());
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
            .expose_headers(["etag", "location", "x-request-id", "retry-after"])
            .max_age(600)
    });
    routes
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .with(CatchPanic::new())
        .with(middleware::Edge)
}
