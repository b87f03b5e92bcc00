//! A bound on open connections. Each connection costs a file descriptor and
//! a task; past `--max-connections` a new one is answered at once with a 503
//! problem and closed, instead of being left to exhaust the process's file
//! descriptors (which would also stop the database from opening files).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::metrics;

pub struct LimitedAcceptor<A> {
    inner: A,
    open: Arc<AtomicUsize>,
    max: usize,
}

impl<A> LimitedAcceptor<A> {
    pub fn new(inner: A, max: usize) -> Self {
        Self {
            inner,
            open: Arc::default(),
            max: max.max(1),
        }
    }
}

/// The whole answer to a connection over the limit.
fn refusal() -> Vec<u8> {
    let body = r#"{"type":"urn:packd:problem:unavailable","title":"Service Unavailable","status":503,"detail":"too many open connections; retry shortly","code":"unavailable"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A> {
    type Io = Counted<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let (mut io, local, remote, scheme) = self.inner.accept().await?;
            if self.open.load(Ordering::SeqCst) >= self.max {
                metrics::global().connection_refused();
                tracing::warn!(client = %remote, max = self.max, "connection refused: too many open");
                // Answered off the accept loop, so a slow client cannot stall it.
                tokio::spawn(async move {
                    let _ = io.write_all(&refusal()).await;
                    let _ = io.shutdown().await;
                    // Read what the client sends for a moment before closing:
                    // closing with unread input would reset the connection and
                    // could destroy the answer before the client reads it.
                    let mut sink = [0u8; 1024];
                    let drain =
                        async { while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {} };
                    // Short, so a flood past the limit cannot pile up open descriptors.
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_millis(250), drain).await;
                });
                continue;
            }
            self.open.fetch_add(1, Ordering::SeqCst);
            metrics::global().connection_opened();
            let io = Counted {
                io,
                open: self.open.clone(),
            };
            return Ok((io, local, remote, scheme));
        }
    }
}

/// A connection that counts itself out when dropped.
pub struct Counted<Io> {
    io: Io,
    open: Arc<AtomicUsize>,
}

impl<Io> Drop for Counted<Io> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        metrics::global().connection_closed();
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Counted<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Counted<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
