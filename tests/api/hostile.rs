//! Hostile clients: what one client can make the server hold (memory,
//! connections, time) is bounded, and a client from another address is
//! served meanwhile. On one machine the whole of 127.0.0.0/8 is loopback, so
//! the attacker connects from 127.0.0.2 and the honest client from 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{DEADLINE, TestServer, rss, wait_for};

fn addr(s: &TestServer) -> SocketAddr {
    s.base.trim_start_matches("http://").parse().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// Opens `streams` requests for `/docs` on one HTTP/2 connection whose client
/// never opens its flow-control window, so the server can send no body
/// bytes. Returns how many got their response headers, once that stops
/// growing, and keeps the connection open while the runtime lives.
async fn h2_flood(to: SocketAddr, streams: usize) -> Result<Arc<AtomicUsize>, h2::Error> {
    let tcp = TcpStream::connect(to).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tcp)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let answered = Arc::new(AtomicUsize::new(0));
    for _ in 0..streams {
        let client = client.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let Ok(mut ready) = client.ready().await else {
                return;
            };
            let req = http::Request::get(format!("http://{to}/docs"))
                .body(())
                .unwrap();
            let Ok((response, _)) = ready.send_request(req, true) else {
                return;
            };
            if let Ok(response) = response.await {
                answered.fetch_add(1, Ordering::SeqCst);
                // Hold the body unread for as long as the test runs.
                let _body = response.into_body();
                std::future::pending::<()>().await;
            }
        });
    }
    Ok(answered)
}

#[test]
fn cleartext_http2_is_refused_by_default() {
    let s = TestServer::in_process(&[]);
    let rt = runtime();
    let to = addr(&s);
    let outcome = rt.block_on(async {
        let tcp = TcpStream::connect(to).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let req = http::Request::get(format!("http://{to}/healthz"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true)?;
        tokio::time::timeout(DEADLINE, response)
            .await
            .expect("the server answers or closes")
    });
    assert!(
        outcome.is_err(),
        "an HTTP/2 request was served: {outcome:?}"
    );
    s.get("/healthz").assert_status(200);
}

#[test]
fn an_http2_stream_flood_with_a_closed_window_holds_little_memory() {
    let s = TestServer::start_with(&["--http2"], &[]);
    let to = addr(&s);
    s.get("/docs").assert_status(200);
    let before = rss(s.pid());
    let rt = runtime();
    let answered = rt.block_on(h2_flood(to, 3000)).expect("HTTP/2 handshake");
    // The server allows 32 streams at once; the client library queues the rest.
    wait_for("the flood's streams to be answered", || {
        (answered.load(Ordering::SeqCst) >= 32).then_some(())
    });
    let grown = rss(s.pid()).saturating_sub(before);
    assert!(
        grown < 150 * 1024 * 1024,
        "RSS grew by {} MiB",
        grown / (1024 * 1024)
    );
    // Others are still served, over HTTP/1.1 and over a second HTTP/2 connection.
    s.get("/healthz").assert_status(200);
    let second = rt.block_on(async {
        let tcp = TcpStream::connect(to).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let req = http::Request::get(format!("http://{to}/healthz"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        response.await.map(|r| r.status())
    });
    assert_eq!(second.unwrap(), 200);
    drop(rt);
}

#[test]
fn one_address_cannot_take_every_connection() {
    let s = TestServer::start();
    let to = addr(&s);
    let rt = runtime();
    // 600 slow connections from 127.0.0.2, each starting a request it never
    // finishes: more than the server's 512 connections in all.
    let (held, refused) = rt.block_on(async {
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..600 {
            let mut c = connect_from([127, 0, 0, 2], to).await.unwrap();
            c.write_all(b"GET /v1/packages HTTP/1.1\r\n").await.unwrap();
            let mut first = [0u8; 12];
            match tokio::time::timeout(Duration::from_millis(50), c.read(&mut first)).await {
                Ok(Ok(n)) if first[..n].starts_with(b"HTTP/1.1 503") => refused += 1,
                _ => held.push(c),
            }
        }
        (held, refused)
    });
    assert_eq!(held.len(), 64, "connections held from one address");
    assert_eq!(refused, 600 - 64);
    // Another address is served while those are held.
    s.get("/healthz").assert_status(200);
    let metrics = s.get("/metrics").body;
    assert!(
        metrics.contains("packd_connections_refused_total{reason=\"per_client\"} 536"),
        "{metrics}"
    );
    drop(held);
}

#[test]
fn headers_trickled_a_byte_at_a_time_are_cut_off_at_the_deadline() {
    let s = TestServer::in_process(&["--header-timeout", "1s"]);
    let to = addr(&s);
    let rt = runtime();
    let (sent, took) = rt.block_on(async {
        let mut c = connect_from([127, 0, 0, 2], to).await.unwrap();
        let request = b"GET /v1/packages HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let started = Instant::now();
        let mut sent = 0;
        // A byte every 200 ms: the connection is never silent for long, so
        // only a deadline on the whole head can end it.
        for byte in request {
            if c.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => panic!("the server answered a request it never fully got"),
                Err(_) => {}
            }
            assert!(started.elapsed() < DEADLINE, "the connection was kept");
        }
        (sent, started.elapsed())
    });
    assert!(
        sent < 90,
        "the whole head was accepted ({sent} bytes over {took:?})"
    );
    assert!(
        took >= Duration::from_secs(1),
        "closed before the deadline: {took:?}"
    );
    s.get("/healthz").assert_status(200);
}
