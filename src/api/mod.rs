//! HTTP: the only module that knows poem. Builds the route tree, the OpenAPI
//! description and the explorer, and wraps everything in the edge middleware
//! (request id, body limit, access log, problem+json for every error).

mod audit;
mod auth;
mod backup;
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
pub mod serve;
mod types;

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
    /// Requests per second per key without a limit of its own; `None`: off.
    pub rate_limit: Option<u32>,
    /// Failed authentications per client address before 429 (refilling one
    /// a second); 0: no throttle.
    pub auth_failure_burst: u32,
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
        shutdown: crate::shutdown::Shutdown::never(),
        layout: None,
    };
    let spec = described(&service(&state, &ApiOptions::default()));
    state.store.close();
    Ok(spec.to_string())
}

/// Request bodies refuse unknown fields (`deny_unknown_fields`), which
/// poem-openapi does not write into the description: said here, so clients
/// and fuzzers know a stray field is an error. A test checks every request
/// body is listed.
const CLOSED_BODIES: &[&str] = &[
    "NewPackage",
    "SourceInput",
    "PackagePatch",
    "NewApiKey",
    "ApiKeyPatch",
    "RotateApiKey",
];

/// The OpenAPI description as served: poem-openapi's, with what it leaves out.
fn described(api: &OpenApiService<Apis, ()>) -> serde_json::Value {
    let mut spec: serde_json::Value =
        serde_json::from_str(&api.spec()).unwrap_or(serde_json::Value::Null);
    for name in CLOSED_BODIES {
        if let Some(schema) = spec["components"]["schemas"].get_mut(*name) {
            schema["additionalProperties"] = serde_json::Value::Bool(false);
        }
    }
    // `source` may be null in a create (no source) and a PATCH (remove it);
    // poem-openapi describes an optional field as non-nullable, and OpenAPI
    // 3.0 ignores `nullable` beside a `$ref`, so the reference is wrapped.
    for body in ["NewPackage", "PackagePatch"] {
        if let Some(source) = spec["components"]["schemas"][body]["properties"].get_mut("source") {
            if source.get("$ref").is_some() {
                let reference = source.take();
                *source = serde_json::json!({"allOf": [reference]});
            }
            source["nullable"] = serde_json::Value::Bool(true);
        }
    }
    // `status` is in the PATCH body only to refuse it with a clear 422; no
    // value of it is valid, which JSON Schema says with `not: {}`.
    if let Some(status) =
        spec["components"]["schemas"]["PackagePatch"]["properties"].get_mut("status")
    {
        status["not"] = serde_json::json!({});
    }
    // `code` as a plain reference: poem-openapi wraps it in `allOf` with a
    // description, which generators (openapi-python-client) cannot take,
    // and then drop the whole `Problem` model.
    if let Some(code) = spec["components"]["schemas"]["Problem"]["properties"].get_mut("code") {
        *code = serde_json::json!({"$ref": "#/components/schemas/ErrorCode"});
    }
    if let Some(codes) = spec["components"]["schemas"].get_mut("ErrorCode") {
        codes["description"] = "What went wrong, for a program.".into();
    }
    add_examples(&mut spec);
    spec
}

/// Example request bodies, so the explorer's prefilled requests are
/// meaningful and work unedited.
const BODY_EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "/v1/packages",
        "post",
        r#"{"name": "jq", "version": "1.7.1"}"#,
    ),
    ("/v1/packages/{id}", "patch", r#"{"version": "1.7.2"}"#),
    ("/v1/keys", "post", r#"{"name": "ci", "role": "write"}"#),
    ("/v1/keys/{id}", "patch", r#"{"name": "ci-nightly"}"#),
    ("/v1/keys/{id}/rotate", "post", r#"{"grace_seconds": 600}"#),
];

/// The `code` a 409 of each operation most likely carries.
const CONFLICTS: &[(&str, problem::ErrorCode)] = &[
    ("create_package", problem::ErrorCode::Duplicate),
    ("update_package", problem::ErrorCode::OperationInProgress),
    ("delete_package", problem::ErrorCode::InvalidTransition),
    ("download_package", problem::ErrorCode::InvalidTransition),
    ("activate_package", problem::ErrorCode::InvalidTransition),
    ("deactivate_package", problem::ErrorCode::InvalidTransition),
    ("cancel_operation", problem::ErrorCode::AlreadyFinished),
    ("deactivate_key", problem::ErrorCode::LastAdmin),
    ("delete_key", problem::ErrorCode::LastAdmin),
    ("update_key", problem::ErrorCode::LastAdmin),
];

/// Example bodies: one per request body, and a problem per error status
/// with the `code` that status carries.
fn add_examples(spec: &mut serde_json::Value) {
    // Looked up with `get_mut`, never indexed mutably: indexing would add
    // `null` members where there were none.
    for (path, method, example) in BODY_EXAMPLES {
        let content = spec
            .get_mut("paths")
            .and_then(|p| p.get_mut(*path))
            .and_then(|p| p.get_mut(*method))
            .and_then(|m| m.get_mut("requestBody"))
            .and_then(|b| b.get_mut("content"))
            .and_then(serde_json::Value::as_object_mut);
        if let Some(content) = content {
            for (media_type, media) in content.iter_mut() {
                if media_type.starts_with("application/json") {
                    media["example"] = serde_json::from_str(example).unwrap_or_default();
                }
            }
        }
    }
    let Some(paths) = spec
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for item in paths.values_mut() {
        let Some(methods) = item.as_object_mut() else {
            continue;
        };
        for operation in methods.values_mut() {
            let id = operation["operationId"].as_str().unwrap_or("").to_string();
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(serde_json::Value::as_object_mut)
            else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                let Some(media) = response
                    .get_mut("content")
                    .and_then(|c| c.get_mut("application/problem+json"))
                else {
                    continue;
                };
                let Ok(status) = status.parse::<u16>() else {
                    continue;
                };
                let code = if status == 409 {
                    CONFLICTS
                        .iter()
                        .find(|(op, _)| *op == id)
                        .map_or(problem::ErrorCode::Conflict, |(_, code)| *code)
                } else {
                    problem::code_for_status(status)
                };
                media["example"] = problem::example(status, code);
            }
        }
    }
}

/// A documentation page as packd serves it: the description it embeds is
/// the served one (`described`), and nothing is fetched from elsewhere
/// (poem-openapi's Redoc page links web fonts; the page falls back to the
/// system's).
fn offline_page(html: String, draft: &str, served: &str) -> String {
    let mut page = html.replace(draft, served);
    // Only the page's own head is looked at: the inlined scripts after it
    // are code, not tags.
    loop {
        let head_end = page.find("<script").unwrap_or(page.len());
        let Some(start) = page[..head_end].find("<link href=\"https://") else {
            return page;
        };
        let Some(len) = page[start..].find('>') else {
            return page;
        };
        page.replace_range(start..=start + len, "");
    }
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

/// The whole application: every route behind the edge middleware.
pub fn app(state: AppState, options: &ApiOptions) -> impl Endpoint + 'static {
    let api = service(&state, options);
    let description = described(&api);
    let allowed = middleware::AllowedMethods::from_spec(&description);
    let spec = shared_body(
        description.to_string().into(),
        "application/json; charset=utf-8",
    );
    // The explorer page is 1.6 MB and the reference page 1 MB (their
    // scripts are inlined, so they work offline). poem-openapi's own
    // endpoints copy them for every request; one shared buffer each means a
    // client that asks and never reads holds nothing. Both show the
    // description as served, not poem-openapi's draft of it.
    let served = description.to_string();
    let draft = api.spec();
    let docs = shared_body(
        offline_page(api.swagger_ui_html(), &draft, &served).into(),
        "text/html; charset=utf-8",
    );
    let redoc = shared_body(
        offline_page(api.redoc_html(), &draft, &served).into(),
        "text/html; charset=utf-8",
    );
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
                    limiter: Arc::new(ratelimit::RateLimiter::new(
                        options.rate_limit,
                        options.auth_failure_burst,
                    )),
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
        .with(CatchPanic::new())
        .with(middleware::Edge {
            allowed: Arc::new(allowed),
        })
}
