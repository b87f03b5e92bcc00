//! Authentication and authorization.
//!
//! One middleware authenticates every `/v1` request before any handler or
//! body parsing runs (so no route can forget it), and leaves the caller's
//! `Principal` on the request. Each operation then names the role it needs
//! with an extractor (`ReadAccess`, `WriteAccess`, `AdminAccess`), which also
//! puts the security scheme in the OpenAPI description, so the explorer's
//! Authorize button works.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::problem::{ErrorCode, Problem};
use super::ratelimit::RateLimiter;
use crate::domain::key::{FormatError, KeyRefusal, Role};
use crate::metrics::{self, AuthFailureCode};
use crate::store::{AuthFailure, Principal, Store};

pub const API_KEY_HEADER: &str = "x-api-key";
const QUERY_KEY: &str = "api_key";

pub struct Authenticate {
    pub store: Store,
    pub allow_query_key: bool,
    pub limiter: std::sync::Arc<RateLimiter>,
}

impl<E: Endpoint> Middleware<E> for Authenticate {
    type Output = AuthenticateEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        AuthenticateEndpoint {
            inner,
            store: self.store.clone(),
            allow_query_key: self.allow_query_key,
            limiter: self.limiter.clone(),
        }
    }
}

pub struct AuthenticateEndpoint<E> {
    inner: E,
    store: Store,
    allow_query_key: bool,
    limiter: std::sync::Arc<RateLimiter>,
}

/// Every 401 says how to authenticate (RFC 9110 §11.6.1).
fn refused(code: ErrorCode, detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, code, detail).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"packd\""),
    )
}

fn unauthorized(detail: &str) -> Problem {
    refused(ErrorCode::Unauthorized, detail)
}

/// The secret a request presents, from the first place that has one.
fn presented(req: &Request, allow_query_key: bool) -> Option<String> {
    if let Some(v) = req.headers().get(API_KEY_HEADER) {
        return Some(v.to_str().unwrap_or("").trim().to_string());
    }
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().unwrap_or("").trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        return Some(if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim().to_string()
        } else {
            String::new()
        });
    }
    if allow_query_key {
        return req.uri().query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == QUERY_KEY)
                .map(|(_, v)| v.into_owned())
        });
    }
    None
}

/// Why a `/v1` request was not let in.
#[derive(Debug, Clone, Copy)]
enum AuthRefusal {
    /// No key at all.
    NoKey,
    /// A key that does not authenticate.
    Presented(AuthFailure),
}

/// What a key over its rate limit is told.
const KEY_OVER_LIMIT: &str = "this API key is over its rate limit; wait and retry";

fn forbidden(needed: Role, has: Role) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        format!("this call needs the {needed} role; the key has the {has} role"),
    )
}

/// The problems authentication and authorization answer, as the
/// description's examples show them (made by the code that answers them).
pub(super) fn example(code: ErrorCode) -> Option<Problem> {
    let presented = |f| AuthRefusal::Presented(f).problem();
    match code {
        ErrorCode::Unauthorized => Some(presented(AuthFailure::Unknown)),
        ErrorCode::KeyInactive => Some(presented(AuthFailure::Refused(KeyRefusal::Inactive))),
        ErrorCode::KeyExpired => Some(presented(AuthFailure::Refused(KeyRefusal::Expired))),
        ErrorCode::Forbidden => Some(forbidden(Role::Write, Role::Read)),
        ErrorCode::RateLimited => Some(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            KEY_OVER_LIMIT,
        )),
        _ => None,
    }
}

impl AuthRefusal {
    fn problem(self) -> Problem {
        match self {
            AuthRefusal::NoKey => {
                unauthorized("send an API key in `X-API-Key` or `Authorization: Bearer`")
            }
            AuthRefusal::Presented(AuthFailure::Refused(KeyRefusal::Inactive)) => {
                refused(ErrorCode::KeyInactive, "this API key is deactivated")
            }
            AuthRefusal::Presented(AuthFailure::Refused(KeyRefusal::Expired)) => {
                refused(ErrorCode::KeyExpired, "this API key has expired")
            }
            AuthRefusal::Presented(AuthFailure::Malformed(_) | AuthFailure::Unknown) => {
                unauthorized("the API key is not valid")
            }
        }
    }

    /// For the log: why, more precisely than the answer tells the client.
    fn reason(self) -> &'static str {
        match self {
            AuthRefusal::NoKey => "missing",
            AuthRefusal::Presented(AuthFailure::Malformed(FormatError::TooShort)) => "too_short",
            AuthRefusal::Presented(AuthFailure::Malformed(FormatError::BadChecksum)) => {
                "bad_checksum"
            }
            AuthRefusal::Presented(AuthFailure::Unknown) => "unknown",
            AuthRefusal::Presented(AuthFailure::Refused(KeyRefusal::Inactive)) => "inactive",
            AuthRefusal::Presented(AuthFailure::Refused(KeyRefusal::Expired)) => "expired",
        }
    }
}

impl<E: Endpoint> Endpoint for AuthenticateEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let path = req.uri().path();
        if !(path == "/v1" || path.starts_with("/v1/")) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let client = req.remote_addr().as_socket_addr().map(|a| a.ip());
        if let Some(v) = client.and_then(|ip| self.limiter.check_address(ip)) {
            metrics::global().rate_limited.inc();
            return Ok(v
                .refusal("too many failed authentications from this address; wait and retry")
                .into_response());
        }
        let outcome = match presented(&req, self.allow_query_key) {
            None => Err(AuthRefusal::NoKey),
            Some(secret) => self
                .store
                .authenticate(&secret)
                .map_err(AuthRefusal::Presented),
        };
        match outcome {
            Ok(principal) => {
                let verdict = self
                    .limiter
                    .check_key(principal.key_id, principal.rate_limit);
                if let Some(v) = verdict.filter(|v| !v.allowed) {
                    metrics::global().rate_limited.inc();
                    return Ok(v.refusal(KEY_OVER_LIMIT).into_response());
                }
                req.set_data(principal);
                let mut resp = self.inner.call(req).await?.into_response();
                if let Some(v) = verdict {
                    for (name, value) in v.headers() {
                        resp.headers_mut().insert(name, value);
                    }
                }
                Ok(resp)
            }
            Err(refusal) => {
                // A request without a key guesses nothing; every presented
                // key that fails counts against the client's address.
                if let (AuthRefusal::Presented(_), Some(ip)) = (refusal, client) {
                    self.limiter.failed(ip);
                }
                let problem = refusal.problem();
                let reason = refusal.reason();
                metrics::global().auth_failures.inc(match problem.code {
                    ErrorCode::KeyInactive => AuthFailureCode::KeyInactive,
                    ErrorCode::KeyExpired => AuthFailureCode::KeyExpired,
                    _ => AuthFailureCode::Unauthorized,
                });
                // Never the presented value: only why it failed and from where.
                tracing::warn!(
                    target: "packd::auth",
                    code = problem.code.as_str(),
                    reason,
                    client = %req.remote_addr(),
                    "authentication failed"
                );
                Ok(problem.into_response())
            }
        }
    }
}

/// A role an operation can ask for, as a type: `Access<Write>` in a
/// handler's arguments is the proof that the key may write.
pub trait NeedsRole: Send + Sync {
    const ROLE: Role;
}

pub struct Read;
pub struct Write;
pub struct Admin;

impl NeedsRole for Read {
    const ROLE: Role = Role::Read;
}
impl NeedsRole for Write {
    const ROLE: Role = Role::Write;
}
impl NeedsRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// Proof that the request's key has at least role `R::ROLE`.
pub struct Access<R: NeedsRole>(std::marker::PhantomData<R>);

pub type ReadAccess = Access<Read>;
pub type WriteAccess = Access<Write>;
pub type AdminAccess = Access<Admin>;

impl<'a, R: NeedsRole> ApiExtractor<'a> for Access<R> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            "ApiKey",
            MetaSecurityScheme {
                ty: "apiKey",
                description: Some(
                    "An API key in the `X-API-Key` header. Each operation's description \
                     names the role it needs: read < write < admin.",
                ),
                name: Some("X-API-Key"),
                key_in: Some("header"),
                scheme: None,
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
        registry.create_security_scheme(
            "Bearer",
            MetaSecurityScheme {
                ty: "http",
                description: Some("The same API key as `Authorization: Bearer <key>`."),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec!["ApiKey", "Bearer"]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> Result<Self> {
        // The middleware has authenticated every /v1 request; no principal
        // here means a route outside /v1 asked for a role, which is a bug.
        let principal = req
            .data::<Principal>()
            .copied()
            .ok_or_else(|| poem::Error::from(unauthorized("no API key was checked")))?;
        let needed = R::ROLE;
        if !principal.role.allows(needed) {
            return Err(forbidden(needed, principal.role).into());
        }
        Ok(Access(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_key_is_read_as_a_form_decodes_it() {
        let req = Request::builder()
            .uri_str("/v1/packages?a=1&api_key=packd_x%2By+z&b")
            .finish();
        assert_eq!(presented(&req, true).as_deref(), Some("packd_x+y z"));
        assert_eq!(presented(&req, false), None);
        // A malformed escape is kept as written, never read as another byte.
        let req = Request::builder().uri_str("/v1?api_key=%+f").finish();
        assert_eq!(presented(&req, true).as_deref(), Some("% f"));
    }
}
