//! Requests to the server, and what becomes of their answers: a JSON value,
//! or a `Failure` that knows its exit status and how to say itself.

use std::process::ExitCode;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::answers::{Package, Page, Problem};

use crate::client::args::ClientOptions;

/// Why a command did not do what it was asked, and its exit status.
#[derive(Debug)]
pub enum Failure {
    /// 1: the operation ended `failed` or `cancelled`.
    OperationFailed(String),
    /// 2: the command line cannot be carried out as given.
    Usage(String),
    /// 3: no answer from the server.
    Unreachable(String),
    /// 4: the key is missing, unknown, inactive, expired or lacks the role.
    Refused(ServerProblem),
    /// 5: any other problem the API answered.
    Api(ServerProblem),
    /// 5: anything else (an answer that is not what the API sends).
    Other(String),
}

/// An RFC 9457 problem as the server sent it.
#[derive(Debug)]
pub struct ServerProblem {
    pub status: u16,
    pub code: String,
    pub detail: String,
}

impl Failure {
    /// Says what went wrong on standard error; returns the exit status.
    pub fn report(self) -> ExitCode {
        let (status, text) = match self {
            Failure::OperationFailed(m) => (1, m),
            Failure::Usage(m) => (2, m),
            Failure::Unreachable(m) => (3, m),
            Failure::Refused(p) | Failure::Api(p) => {
                let status = if matches!(p.status, 401 | 403) { 4 } else { 5 };
                (status, format!("{} {}: {}", p.status, p.code, p.detail))
            }
            Failure::Other(m) => (5, m),
        };
        eprintln!("packd: {text}");
        ExitCode::from(status)
    }
}

/// The server, as the client sees it.
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

/// The HTTP client of every client command. The system's certificate
/// store is read only for an https server: plain http (the usual loopback)
/// starts faster without it.
pub fn client(https: bool, user_agent: &'static str) -> Result<reqwest::Client, Failure> {
    let tls = crate::tls::client_config(&[], https).map_err(Failure::Other)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(user_agent)
        .build()
        .map_err(|e| Failure::Other(format!("cannot set up the HTTP client: {e}")))
}

impl Api {
    pub fn new(options: &ClientOptions) -> Result<Self, Failure> {
        let base = options.url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base)
            .map_err(|e| Failure::Usage(format!("--url {base:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Failure::Usage(format!(
                "--url {base:?} must be http or https"
            )));
        }
        let http = client(
            parsed.scheme() == "https",
            concat!("packd-cli/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(Self {
            http,
            base,
            key: options.session.key.clone(),
        })
    }

    /// A request with the key, to `path` (which starts with `/`).
    pub fn request(&self, method: &str, path: &str) -> Result<reqwest::RequestBuilder, Failure> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| Failure::Other(e.to_string()))?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => req = req.header("X-API-Key", key),
            // Said here, in the command line's terms, rather than as the
            // server's 401 (which speaks of HTTP headers).
            None if path.starts_with("/v1/") => {
                return Err(Failure::Refused(ServerProblem {
                    status: 401,
                    code: "unauthorized".into(),
                    detail: "no API key: set PACKD_API_KEY or pass --key".into(),
                }));
            }
            None => {}
        }
        Ok(req)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        self.send_with(method, path, body, &[]).await
    }

    /// Sends a request with a JSON body and headers; the answer's JSON
    /// (`null` for 204), or the failure it means.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value, Failure> {
        let mut req = self.request(method, path)?.timeout(Duration::from_secs(90));
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let answer = req.send().await.map_err(|e| self.unreachable(&e))?;
        read(answer).await
    }

    /// A request whose answer is read as `T`.
    pub async fn get_as<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<T, Failure> {
        typed(self.send_with(method, path, body, headers).await?)
    }

    /// Every item of a paginated list.
    pub async fn all_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, Failure> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params: Vec<(&str, String)> = query.to_vec();
            params.push(("limit", "1000".into()));
            if let Some(c) = &cursor {
                params.push(("cursor", c.clone()));
            }
            let qs = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            let page: Page<T> = self
                .get_as("GET", &format!("{path}?{qs}"), None, &[])
                .await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// A package by REF: its id, or `NAME@VERSION` (split at the last `@`).
    pub async fn package(&self, reference: &str) -> Result<Package, Failure> {
        if let Ok(id) = reference.parse::<uuid::Uuid>() {
            return self
                .get_as("GET", &format!("/v1/packages/{id}"), None, &[])
                .await;
        }
        let Some((name, version)) = reference
            .rsplit_once('@')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        else {
            return Err(Failure::Usage(format!(
                "{reference:?} is neither a package id nor NAME@VERSION"
            )));
        };
        let found: Vec<Package> = self
            .all_pages("/v1/packages", &[("name", name.to_string())])
            .await?;
        found
            .into_iter()
            .find(|p| p.version == version)
            .ok_or_else(|| {
                Failure::Api(ServerProblem {
                    status: 404,
                    code: "not_found".into(),
                    detail: format!("no package {name}@{version}"),
                })
            })
    }

    pub fn unreachable(&self, e: &reqwest::Error) -> Failure {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        Failure::Unreachable(format!("cannot reach {}: {cause}", self.base))
    }
}

/// An answer read as the type it should be.
pub fn typed<T: DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| {
        Failure::Other(format!(
            "the server's answer is not what this client expects ({e}); is it a packd of another version?"
        ))
    })
}

/// The answer's JSON, or the problem it carries.
pub async fn read(answer: reqwest::Response) -> Result<Value, Failure> {
    let status = answer.status().as_u16();
    let text = answer
        .text()
        .await
        .map_err(|e| Failure::Unreachable(format!("the answer was cut: {e}")))?;
    if (200..300).contains(&status) {
        if text.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(&text)
            .map_err(|e| Failure::Other(format!("the server sent something else than JSON: {e}")));
    }
    let problem = match serde_json::from_str::<Problem>(&text) {
        Ok(p) => ServerProblem {
            status,
            code: p.code,
            detail: p.detail,
        },
        // Another server (a proxy's error page, a web server on the
        // port): its page is not echoed, only what it was.
        Err(_) => ServerProblem {
            status,
            code: "not_packd".into(),
            detail: "the answer is not packd's (no problem+json body): is the URL a packd \
                     server's?"
                .into(),
        },
    };
    Err(if matches!(status, 401 | 403) {
        Failure::Refused(problem)
    } else {
        Failure::Api(problem)
    })
}
