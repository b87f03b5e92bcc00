//! A test artifact server on 127.0.0.1 with knobs: Range on or off, a
//! connection dropped after some bytes, a pause partway (so packd saves a
//! checkpoint), a fixed status. Each body's `ETag` follows its bytes, and
//! `If-None-Match` gets a 304, as a static file server's would. It records
//! every request's conditional headers and the status it answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How one artifact is served.
#[derive(Clone, Default)]
pub struct Knobs {
    /// Answer this status (with no body) instead of the artifact.
    pub status: Option<u16>,
    /// Ignore `Range` and always send everything (200).
    pub no_range: bool,
    /// Close the connection after this many body bytes, on the first
    /// request only.
    pub drop_after: Option<usize>,
    /// Pause this long after the first `pause_after` body bytes.
    pub pause_after: Option<usize>,
    pub pause: Duration,
    /// Send the body in chunks of this size, sleeping `chunk_delay` between.
    pub chunk: usize,
    pub chunk_delay: Duration,
    /// Wait this long before answering at all, on the first request only.
    pub head_delay: Duration,
}

struct Artifact {
    body: Arc<Vec<u8>>,
    knobs: Knobs,
}

/// What the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_none_match: Option<String>,
    /// The status answered (0 until the answer is decided).
    pub status: u16,
}

pub struct ArtifactServer {
    pub base: String,
    artifacts: Arc<Mutex<HashMap<String, Artifact>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

/// The `ETag` of a body: its bytes', so a new body has a new one.
fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &sha256_hex(body)[..16])
}

impl ArtifactServer {
    pub fn start() -> Self {
        let (runtime, listener) = on_loopback();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let artifacts: Arc<Mutex<HashMap<String, Artifact>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (a, s) = (artifacts.clone(), seen.clone());
        runtime.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(conn, a.clone(), s.clone()));
            }
        });
        Self {
            base,
            artifacts,
            seen,
            _runtime: runtime,
        }
    }

    /// Serves `body` at `path` (which starts with `/`); returns its URL.
    pub fn put(&self, path: &str, body: Vec<u8>, knobs: Knobs) -> String {
        self.artifacts.lock().unwrap().insert(
            path.to_string(),
            Artifact {
                body: Arc::new(body),
                knobs,
            },
        );
        format!("{}{path}", self.base)
    }

    /// The requests made for `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

async fn serve(
    mut conn: tokio::net::TcpStream,
    artifacts: Arc<Mutex<HashMap<String, Artifact>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let (range, if_range) = (header("range"), header("if-range"));
    let if_none_match = header("if-none-match");
    let found = artifacts
        .lock()
        .unwrap()
        .get(&path)
        .map(|a| (a.body.clone(), a.knobs.clone()));
    let etag = found.as_ref().map(|(body, _)| etag_of(body));
    let not_modified = etag.is_some() && if_none_match == etag;
    let first = {
        let mut seen = seen.lock().unwrap();
        let first = !seen.iter().any(|s| s.path == path);
        let status = match &found {
            None => 404,
            Some((_, knobs)) => knobs.status.unwrap_or(if not_modified { 304 } else { 200 }),
        };
        seen.push(Seen {
            path: path.clone(),
            range: range.clone(),
            if_range: if_range.clone(),
            if_none_match: if_none_match.clone(),
            status,
        });
        first
    };
    let Some((body, knobs)) = found else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    };
    if first && !knobs.head_delay.is_zero() {
        tokio::time::sleep(knobs.head_delay).await;
    }
    if let Some(status) = knobs.status {
        let _ = conn
            .write_all(
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        return;
    }
    let etag = etag.unwrap_or_default();
    if not_modified {
        let _ = conn
            .write_all(
                format!("HTTP/1.1 304 Not Modified\r\netag: {etag}\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        return;
    }
    let start = range
        .as_deref()
        .filter(|_| !knobs.no_range && if_range.as_deref() == Some(etag.as_str()))
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n <= body.len());
    let (status_line, from) = match start {
        Some(n) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {n}-{}/{}\r\n",
                body.len().saturating_sub(1),
                body.len()
            ),
            n,
        ),
        None => ("HTTP/1.1 200 OK\r\n".to_string(), 0),
    };
    let head = format!(
        "{status_line}etag: {etag}\r\naccept-ranges: bytes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len() - from
    );
    if conn.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let chunk = if knobs.chunk == 0 {
        64 * 1024
    } else {
        knobs.chunk
    };
    let mut sent = 0;
    for piece in body[from..].chunks(chunk) {
        if first && knobs.drop_after.is_some_and(|d| sent >= d) {
            return; // dropped: the client sees the body end early
        }
        if conn.write_all(piece).await.is_err() {
            return;
        }
        sent += piece.len();
        if first
            && knobs
                .pause_after
                .is_some_and(|p| sent >= p && sent - piece.len() < p)
        {
            tokio::time::sleep(knobs.pause).await;
        }
        if !knobs.chunk_delay.is_zero() {
            tokio::time::sleep(knobs.chunk_delay).await;
        }
    }
}

/// A runtime for a test server and a listener on a free loopback port.
fn on_loopback() -> (tokio::runtime::Runtime, tokio::net::TcpListener) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    (runtime, listener)
}

/// The SHA-256 of `bytes` in lowercase hex, as a source names it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Bytes that are not all the same, so a misplaced range shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// An https server with a certificate for 127.0.0.1 from a test CA of its
/// own, serving one body at any path. `ca_pem` is the CA to trust.
pub struct TlsServer {
    pub url: String,
    pub ca_pem: String,
    _runtime: tokio::runtime::Runtime,
}

impl TlsServer {
    pub fn start(body: Vec<u8>) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();

        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let (runtime, listener) = on_loopback();
        let url = format!("https://{}/secure.bin", listener.local_addr().unwrap());
        let body = Arc::new(body);
        runtime.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, body) = (acceptor.clone(), body.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(conn).await else {
                        return; // an untrusting client hangs up
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.write_all(&body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            url,
            ca_pem: ca.pem(),
            _runtime: runtime,
        }
    }
}
