//! The edge of every request: request id, body size limit, one log line, and
//! the guarantee that every error leaves as problem+json, whichever layer
//! raised it.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use poem::PathPattern;
use poem::http::{HeaderValue, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use super::problem::{self, PROBLEM_CONTENT_TYPE, Problem};
use crate::metrics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Largest request body accepted: 64 KiB (README, Limits).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest total of header names and values accepted: far above what any
/// client of this API sends (a key, a few small headers), far below what
/// would let one request hold much memory.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long a request's body may take to arrive. The header deadline is the
/// server's (`--header-timeout`); this one stops a client that trickles a
/// body byte by byte from holding its connection and the buffer.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest client-sent request id echoed back; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the request being served, for logs and handlers.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

pub struct Edge {
    pub allowed: Arc<AllowedMethods>,
}

impl<E: Endpoint> Middleware<E> for Edge {
    type Output = EdgeEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        EdgeEndpoint {
            inner,
            allowed: self.allowed.clone(),
        }
    }
}

pub struct EdgeEndpoint<E> {
    inner: E,
    allowed: Arc<AllowedMethods>,
}

/// The methods of every path of the OpenAPI description, for the `Allow`
/// header a 405 must carry (RFC 9110 §15.5.6); the router does not say.
#[derive(Debug, Default)]
pub struct AllowedMethods {
    routes: Vec<Route>,
}

#[derive(Debug)]
struct Route {
    /// The description's path, such as `/v1/packages/{id}`.
    template: String,
    /// Its segments, `None` for a `{parameter}`.
    segments: Vec<Option<String>>,
    /// The `Allow` value.
    allow: String,
}

impl AllowedMethods {
    /// Reads the paths and methods of an OpenAPI description.
    pub fn from_spec(spec: &serde_json::Value) -> Self {
        let mut routes = Vec::new();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, item) in paths {
                let segments = path
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                    .collect();
                let methods: Vec<String> = item
                    .as_object()
                    .map(|m| m.keys().map(|k| k.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                routes.push(Route {
                    template: path.clone(),
                    segments,
                    allow: methods.join(", "),
                });
            }
        }
        Self { routes }
    }

    fn route(&self, path: &str) -> Option<&Route> {
        let segments: Vec<&str> = path.split('/').collect();
        self.routes.iter().find(|route| {
            route.segments.len() == segments.len()
                && route
                    .segments
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p.as_deref().is_none_or(|p| p == *s))
        })
    }

    fn for_path(&self, path: &str) -> Option<&str> {
        self.route(path).map(|r| r.allow.as_str())
    }

    /// The description's path a request path falls under, for logs.
    fn template(&self, path: &str) -> &str {
        self.route(path)
            .map_or(crate::metrics::UNMATCHED, |r| r.template.as_str())
    }
}

fn request_id(req: &Request) -> Arc<str> {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_LEN
                && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(Arc::from)
        .unwrap_or_else(new_request_id)
}

/// A UUID v7 from the thread's user-space generator: `Uuid::now_v7` asks the
/// kernel for randomness on every call, a system call per request for an id
/// that needs to be unique, not secret.
fn new_request_id() -> Arc<str> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let id =
        uuid::Builder::from_unix_timestamp_millis(millis, &rand::random::<[u8; 10]>()).into_uuid();
    Arc::from(id.to_string())
}

/// Reads the body into memory up to the limit. Checking `Content-Length` alone
/// would let a chunked body through, so the bytes themselves are counted.
async fn limit_body(req: &mut Request) -> std::result::Result<(), Problem> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Problem::payload_too_large(MAX_BODY_BYTES));
    }
    let body = req.take_body();
    let read = tokio::time::timeout(BODY_TIMEOUT, body.into_bytes_limit(MAX_BODY_BYTES)).await;
    let Ok(read) = read else {
        return Err(Problem::new(
            poem::http::StatusCode::REQUEST_TIMEOUT,
            problem::ErrorCode::BadRequest,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        ));
    };
    match read {
        Ok(bytes) => {
            let json = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    let essence = v.split(';').next().unwrap_or("").trim();
                    essence.eq_ignore_ascii_case("application/json")
                        || essence.to_ascii_lowercase().ends_with("+json")
                });
            if json && let Some(name) = super::json::duplicate_member(&bytes) {
                return Err(Problem::bad_request(format!(
                    "the JSON body has the member {name:?} twice in one object"
                )));
            }
            req.set_body(bytes);
            Ok(())
        }
        Err(poem::error::ReadBodyError::PayloadTooLarge) => {
            Err(Problem::payload_too_large(MAX_BODY_BYTES))
        }
        Err(e) => Err(Problem::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

impl<E: Endpoint> Endpoint for EdgeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let started = Instant::now();
        let id = request_id(&req);
        req.set_data(RequestId(id.clone()));
        let method = req.method().clone();
        let uri = req.uri().clone();

        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        let checked = if header_bytes > MAX_HEADER_BYTES {
            Err(Problem::new(
                poem::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                problem::ErrorCode::BadRequest,
                format!(
                    "the request headers are {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
                ),
            ))
        } else {
            limit_body(&mut req).await
        };
        // Every line logged while serving the request carries these.
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %method,
            route = self.allowed.template(uri.path()),
        );
        let (mut resp, route) = match checked {
            Err(p) => (p.into_response(), None),
            Ok(()) => match self.inner.call(req).instrument(span).await {
                Ok(out) => {
                    let resp = out.into_response();
                    let route = resp.data::<PathPattern>().map(|p| p.0.clone());
                    (ensure_problem(resp), route)
                }
                Err(err) => {
                    let route = err.data::<PathPattern>().map(|p| p.0.clone());
                    (problem::from_poem_error(&err).into_response(), route)
                }
            },
        };

        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        if resp.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
            && !resp.headers().contains_key(header::ALLOW)
            && let Some(allow) = self.allowed.for_path(uri.path())
            && let Ok(v) = HeaderValue::from_str(allow)
        {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        let status = resp.status().as_u16();
        let took = started.elapsed();
        // A long poll or an event stream takes as long as the client asks:
        // counted, not timed.
        let timed = if route.as_deref() == Some("/v1/events")
            || uri.query().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.starts_with("wait=") && kv != "wait=0")
            }) {
            metrics::Timed::Waited
        } else {
            metrics::Timed::Yes
        };
        metrics::global().request(method.as_str(), route.as_ref(), status, took, timed);
        let latency_ms = took.as_secs_f64() * 1000.0;
        let route = crate::metrics::route_label(route.as_deref());
        tracing::info!(
            target: "packd::access",
            method = %method,
            route,
            status,
            latency_ms = (latency_ms * 1000.0).round() / 1000.0,
            request_id = %id,
            "request"
        );
        Ok(resp)
    }
}

/// An error status without a problem body (a framework default, a panic
/// caught upstream) gets one, keeping the status.
fn ensure_problem(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_CONTENT_TYPE));
    if is_problem {
        return resp;
    }
    let headers = resp.headers().clone();
    let mut fixed = problem::from_status(status, "").into_response();
    // Keep what the framework said beyond the body (Allow, WWW-Authenticate, CORS).
    for (name, value) in &headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().append(name.clone(), value.clone());
        }
    }
    fixed
}
