//! Serving HTTP on a listener: the accept loop, the bounds on what clients
//! can make the process hold, and graceful shutdown.
//!
//! poem's own `Server` has no deadline for a request's headers, no cap per
//! client address and always speaks cleartext HTTP/2, whose streams a single
//! unauthenticated connection could multiply into gigabytes. So the loop is
//! ours: each connection is served by hyper with the poem application as its
//! service, under these rules:
//! - at most `max_connections` open, and at most `max_per_client` from one
//!   address, so one client cannot take every slot; past either, a 503
//!   problem and the connection is closed;
//! - a request's headers must arrive within `header_timeout` of the
//!   connection's waiting for them (idle keep-alive connections included);
//! - HTTP/1.1 only, unless `http2` is set; HTTP/2 then runs with few
//!   streams, small windows and small send buffers, so one connection holds
//!   a bounded amount of memory whatever its client does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt, IntoEndpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::metrics::family::Label;
use crate::metrics::{self, ConnectionRefusal};
use crate::shutdown::Shutdown;

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections from one client address at most; 0: no cap.
    pub max_per_client: usize,
    /// How long a connection may take to send a request's headers.
    pub header_timeout: Duration,
    /// Also accept cleartext HTTP/2 (prior knowledge).
    pub http2: bool,
    /// How long requests in flight may run once shutdown begins.
    pub shutdown_timeout: Duration,
}

/// Largest read buffer of an HTTP/1 connection: it holds the request head,
/// which the edge refuses past 16 KiB anyway, so a client that sends more
/// gets 431 instead of growing the buffer (hyper's default is 400 KiB).
const H1_MAX_BUF: usize = 32 * 1024;
/// Header fields hyper parses in one request (its default is 100). Past it
/// hyper answers 431 with an empty body before packd sees the request; up to
/// it the edge's own limit (16 KiB in all) answers with a problem.
const H1_MAX_HEADERS: usize = 512;
/// Streams one HTTP/2 connection may have open at once.
pub const H2_MAX_STREAMS: u32 = 32;
/// HTTP/2 flow-control windows for what clients send: bodies are at most 64 KiB.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 256 * 1024;
/// Bytes of a response hyper buffers per stream while the client's window is
/// closed; a client that reads nothing holds at most this per stream.
const H2_SEND_BUFFER: usize = 64 * 1024;
/// Header list size an HTTP/2 client may send (the edge's own limit).
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/2 keep-alive pings, so a vanished peer does not hold a slot forever.
const H2_PING_EVERY: Duration = Duration::from_secs(20);

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish for up to `shutdown_timeout` and drops what remains.
pub async fn run<E>(
    listener: TcpListener,
    app: E,
    options: &ServeOptions,
    mut shutdown: Shutdown,
) -> io::Result<()>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    let app: Arc<dyn poem::endpoint::DynEndpoint<Output = poem::Response>> = Arc::new(
        poem::endpoint::ToDynEndpoint(app.into_endpoint().map_to_response()),
    );
    let local = listener.local_addr()?;
    let limits = Arc::new(Limits::new(options.max_connections, options.max_per_client));
    let builder = Arc::new(builder(options));
    let mut connections = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was
                    // accepted: neither is a reason to stop serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let permit = match limits.admit(remote.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                metrics::global().connections_refused.inc(refusal);
                tracing::warn!(client = %remote, reason = refusal.as_str(), "connection refused");
                tokio::spawn(refuse(stream, refusal));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let app = app.clone();
                async move {
                    let req = poem::Request::from((
                        req,
                        LocalAddr(local.into()),
                        RemoteAddr(remote.into()),
                        Scheme::HTTP,
                    ));
                    let resp = app.get_response(req).await;
                    Ok::<_, Infallible>(hyper::Response::from(resp))
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                () = stop.wait() => {}
            }
            // Answer what is in flight, then close.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(options.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "requests still running after the shutdown timeout; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

fn builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(H1_MAX_BUF)
        .max_headers(H1_MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(H2_PING_EVERY)
        .keep_alive_timeout(H2_PING_EVERY);
    if options.http2 {
        builder
    } else {
        builder.http1_only()
    }
}

/// Open connections, in all and per client address.
struct Limits {
    max: usize,
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// A connection's place; dropping it frees the place.
struct Permit {
    limits: Arc<Limits>,
    client: IpAddr,
}

impl Limits {
    fn new(max: usize, max_per_client: usize) -> Self {
        Self {
            max: max.max(1),
            max_per_client,
            open: Mutex::default(),
        }
    }

    fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Permit, ConnectionRefusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max {
            return Err(ConnectionRefusal::MaxConnections);
        }
        let from_client = open.by_client.get(&client).copied().unwrap_or(0);
        if self.max_per_client > 0 && from_client >= self.max_per_client {
            return Err(ConnectionRefusal::PerClient);
        }
        open.total += 1;
        open.by_client.insert(client, from_client + 1);
        metrics::global().connections_open.inc();
        Ok(Permit {
            limits: self.clone(),
            client,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                // Only addresses with open connections are kept: the map's
                // size is bounded by the connections, not by every address seen.
                open.by_client.remove(&self.client);
            }
        }
        metrics::global().connections_open.dec();
    }
}

/// The whole answer to a connection over a limit.
fn refusal_bytes(refusal: ConnectionRefusal) -> Vec<u8> {
    let detail = match refusal {
        ConnectionRefusal::MaxConnections => "too many open connections; retry shortly",
        ConnectionRefusal::PerClient => {
            "too many open connections from your address; close some first"
        }
    };
    let body = format!(
        r#"{{"type":"urn:packd:problem:unavailable","title":"Service Unavailable","status":503,"detail":"{detail}","code":"unavailable"}}"#
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a refused connection and closes it, off the accept loop so a slow
/// client cannot stall it.
async fn refuse(mut stream: TcpStream, refusal: ConnectionRefusal) {
    let answer = async {
        let _ = stream.write_all(&refusal_bytes(refusal)).await;
        let _ = stream.shutdown().await;
        // Read what the client sends for a moment before closing: closing
        // with unread input would reset the connection and could destroy the
        // answer before the client reads it.
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    // Short, so a flood past the limit cannot pile up open descriptors.
    let _ = tokio::time::timeout(Duration::from_millis(250), answer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_in_all_and_per_client() {
        let limits = Arc::new(Limits::new(3, 2));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert!(matches!(limits.admit(a), Err(ConnectionRefusal::PerClient)));
        let _b1 = limits.admit(b).unwrap();
        assert!(matches!(
            limits.admit(b),
            Err(ConnectionRefusal::MaxConnections)
        ));
        drop(a1);
        let _b2 = limits.admit(b).unwrap();
        assert!(limits.open.lock().unwrap().by_client[&a] == 1);
    }

    #[test]
    fn addresses_without_connections_are_forgotten() {
        let limits = Arc::new(Limits::new(10, 0));
        let permits: Vec<_> = (0..5)
            .map(|i| limits.admit(IpAddr::from([127, 0, 0, i])).unwrap())
            .collect();
        assert_eq!(limits.open.lock().unwrap().by_client.len(), 5);
        drop(permits);
        let open = limits.open.lock().unwrap();
        assert_eq!((open.total, open.by_client.len()), (0, 0));
    }
}
