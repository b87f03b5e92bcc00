//! Records every authenticated write (key changes are writes) and every
//! backup in the audit log, after the answer is known, without delaying it.

use poem::http::Method;
use poem::{Endpoint, IntoResponse, Middleware, PathPattern, Request, Response, Result};

use super::middleware::RequestId;
use crate::domain::Timestamp;
use crate::store::{AuditEntry, Principal, Store};

pub struct Audit {
    pub store: Store,
}

impl<E: Endpoint> Middleware<E> for Audit {
    type Output = AuditEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        AuditEndpoint {
            inner,
            store: self.store.clone(),
        }
    }
}

pub struct AuditEndpoint<E> {
    inner: E,
    store: Store,
}

/// The resource acted on: the path up to its id, or where a create put it.
fn target(path: &str, resp: &Response) -> String {
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(seg);
        if uuid::Uuid::parse_str(seg).is_ok() {
            return out;
        }
    }
    resp.headers()
        .get(poem::http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or(out)
}

impl<E: Endpoint> Endpoint for AuditEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        // Writes, and the backup: it carries every record (key hashes too),
        // so who took one belongs in the log.
        let audited = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
            || req.uri().path() == super::backup::BACKUP_PATH;
        let principal = req.data::<Principal>().copied();
        let (Some(principal), true) = (principal, audited) else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let request_id = req
            .data::<RequestId>()
            .map(|r| r.0.to_string())
            .unwrap_or_default();
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let (status, pattern, target) = match &result {
            Ok(resp) => (
                resp.status().as_u16(),
                resp.data::<PathPattern>().map(|p| p.0.to_string()),
                target(&path, resp),
            ),
            // The status the client receives: the edge answers errors as
            // `from_poem_error` maps them (a malformed id is a 404, not
            // the parser's 400).
            Err(err) => (
                super::problem::from_poem_error(err).status.as_u16(),
                err.data::<PathPattern>().map(|p| p.0.to_string()),
                target(&path, &Response::default()),
            ),
        };
        let entry = AuditEntry {
            id: uuid::Uuid::now_v7(),
            at: Timestamp::now(),
            key_id: Some(principal.key_id),
            action: format!(
                "{method} {}",
                crate::metrics::route_label(Some(pattern.as_deref().unwrap_or(&path)))
            ),
            target,
            status,
            request_id,
        };
        let store = self.store.clone();
        // Written by the writer with whatever else commits next; the client
        // does not wait for it.
        tokio::spawn(async move {
            if let Err(e) = store.append_audit(entry).await {
                tracing::error!(error = %e, "cannot write an audit entry");
            }
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_targets() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(
            target(&format!("/v1/keys/{id}/rotate"), &Response::default()),
            format!("/v1/keys/{id}")
        );
        let created = Response::builder()
            .header("location", format!("/v1/packages/{id}"))
            .finish();
        assert_eq!(
            target("/v1/packages", &created),
            format!("/v1/packages/{id}")
        );
        assert_eq!(target("/v1/packages", &Response::default()), "/v1/packages");
    }
}
