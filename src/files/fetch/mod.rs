//! Fetching an artifact into `partial/`: a streaming GET (or a read of a
//! local file), hashed as it goes (the artifact is never held in memory),
//! resumed with `Range` and `If-Range` after a cut, a retry or a restart.
//!
//! The answer is received by a task of its own, gathered into blocks and
//! sent through a bounded channel to a blocking thread that writes them
//! (and has them hashed and synced beside it, `disk.rs`), so the async
//! threads never wait on the disk and the memory a transfer holds is
//! bounded. The task owns each block until the channel takes it: a block
//! is never dropped on its way because a checkpoint arrived first (one
//! was, and a download faster than the disk lost bytes). A local file is
//! read on a blocking
//! thread too, and only a regular file outside `/proc`, `/sys` and `/dev`
//! (a FIFO would block its reader for ever; `/proc/self/environ` holds
//! packd's secrets). Every thread a fetch starts is awaited before it
//! returns, whatever the outcome, so two attempts never write one file.
//!
//! Durability order: bytes are written, the partial file is synced, and only
//! then is the checkpoint (its length and the server's validator) handed to
//! the caller to save with the operation. A saved offset therefore never
//! claims bytes the disk may not hold; on resume the file is cut back to it
//! and that prefix is hashed again.
//!
//! No message says what was fetched beyond its length being wrong: the
//! digest of bytes that did not match would let a client read a file it
//! cannot otherwise see, one guess at a time.
//!
//! `disk.rs` has the partial file and the writing thread, `local.rs` the
//! local sources; this file the HTTP side and the transfer that joins them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256 as Hasher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::budget::{Budget, Interrupted};
use crate::domain::operation::Transfer;
use crate::domain::source::Source;
use crate::trust::Vouched;

mod disk;
mod local;
mod small;

use disk::{BLOCK, Buffers, Lanes, PartialError, Writer, Written, open_partial, too_large};
pub use disk::{HashError, hash_prefix};
use local::{open_local, read_local};
pub use small::Small;

/// Settings of the HTTP client that fetches artifacts.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub connect_timeout: Duration,
    /// The longest silence while reading an answer.
    pub read_timeout: Duration,
    /// The longest one attempt may take in all (`--download-timeout`).
    pub download_timeout: Option<Duration>,
    /// The most bytes one artifact may have.
    pub max_bytes: u64,
    /// Extra trusted roots (PEM) for https sources, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Every download goes through this proxy (`--proxy`), but to loopback
    /// and the hosts in `no_proxy`.
    pub proxy: Option<String>,
}

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// A checkpoint is offered after this many bytes or this long, whichever
/// comes first, to a syncing thread that is idle: a resume repeats about
/// that much.
pub const CHECKPOINT_BYTES: u64 = 32 * 1024 * 1024;
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The longest a part of a block waits for the rest while the answer is
/// quiet: a slow source's bytes reach the disk (and a checkpoint) as they
/// come.
const HOLD: Duration = Duration::from_millis(20);

/// What one read of a local source takes.
const FILE_CHUNK: usize = 256 * 1024;

/// Why a fetch stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A retry may mend it: a connection error, a timeout, 5xx, 408, 429.
    #[error("{0}")]
    Retry(String),
    /// It will not get better: 4xx, a size or digest mismatch, too large,
    /// a full disk, a local source packd may not read.
    #[error("{0}")]
    Fatal(String),
    /// The bytes are not the ones the trusted signature vouches for.
    #[error("{0}")]
    Signature(String),
}

/// How a fetch ended, if not with the artifact.
#[derive(Debug)]
pub enum FetchEnd {
    Failed(FetchError),
    /// The budget ended it: cancelled, or past `--download-timeout`.
    Interrupted(Interrupted),
}

/// A verified artifact in its partial file, synced.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// What was fetched in all, for the completion to record.
    pub transfer: Transfer,
    /// Whether bytes an earlier attempt saved were used.
    pub resumed: bool,
}

/// The HTTP client for artifacts, with its trust roots. Cheap to clone.
/// The client itself is built on the first download: loading the system's
/// certificate store costs start-up time a service that never downloads
/// should not pay. `--ca-file` is checked at once all the same.
#[derive(Clone)]
pub struct Fetcher {
    settings: FetchSettings,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    client: Arc<std::sync::OnceLock<reqwest::Client>>,
}

impl Fetcher {
    /// Trusts the bundled Mozilla roots (so https works in the scratch
    /// image, which has no system store), the system's store where there is
    /// one, and `ca_file`. `--proxy` wins over `http_proxy` and
    /// `https_proxy`; `no_proxy` is honoured either way.
    pub fn new(settings: &FetchSettings) -> anyhow::Result<Fetcher> {
        use anyhow::Context;
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;

        let mut extra_roots = Vec::new();
        if let Some(path) = &settings.ca_file {
            let mut check = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read --ca-file {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("--ca-file {} is not PEM", path.display()))?;
                check.add(cert.clone()).with_context(|| {
                    format!("--ca-file {} holds a bad certificate", path.display())
                })?;
                extra_roots.push(cert);
            }
            anyhow::ensure!(
                !extra_roots.is_empty(),
                "--ca-file {} holds no certificate",
                path.display()
            );
        }
        Ok(Fetcher {
            settings: settings.clone(),
            extra_roots,
            client: Arc::default(),
        })
    }

    fn client(&self) -> Result<&reqwest::Client, FetchError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let tls = crate::tls::client_config(&self.extra_roots, true).map_err(FetchError::Fatal)?;
        let mut builder = reqwest::Client::builder();
        if let Some(proxy) = &self.settings.proxy {
            let direct = format!(
                "{},localhost,127.0.0.0/8,::1",
                std::env::var("no_proxy")
                    .or_else(|_| std::env::var("NO_PROXY"))
                    .unwrap_or_default()
            );
            let proxy = reqwest::Proxy::all(proxy)
                .map_err(|e| FetchError::Fatal(format!("cannot use --proxy: {e}")))?
                .no_proxy(reqwest::NoProxy::from_string(&direct));
            builder = builder.proxy(proxy);
        }
        let client = builder
            .use_preconfigured_tls(tls)
            .connect_timeout(self.settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .user_agent(concat!("packd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Fatal(format!("cannot set up the HTTP client: {e}")))?;
        // Two first downloads at once may both build one; either serves.
        Ok(self.client.get_or_init(|| client))
    }

    /// Fetches `source` into `partial` (resuming from `saved`) and verifies
    /// it: its size, its digest and, when `vouched`, its signature (checked
    /// over the same stream of bytes, never read again). `checkpoint` is told each synced checkpoint (whoever saves them
    /// stops the fetch through the budget). Ends early when `budget` is
    /// cancelled or its deadline (`--download-timeout`) passes. Whatever
    /// the outcome, every thread it started has ended when it returns.
    pub async fn fetch(
        &self,
        source: &Source,
        partial: &Path,
        saved: &Transfer,
        vouched: Option<&Vouched>,
        budget: &Budget,
        mut checkpoint: impl FnMut(Transfer),
    ) -> Result<Fetched, FetchEnd> {
        let budget = budget.child(self.settings.download_timeout);
        let mut download = tokio::select! {
            started = self.start(source, partial, saved, vouched, &budget) => started.map_err(FetchEnd::Failed)?,
            why = budget.ended() => return Err(FetchEnd::Interrupted(why)),
        };
        let ended = loop {
            let next = tokio::select! {
                next = download.advance() => next,
                why = budget.ended() => break FetchEnd::Interrupted(why),
            };
            match next {
                Ok(Some(transfer)) => checkpoint(transfer),
                Ok(None) => {
                    return download.verify().await.map_err(FetchEnd::Failed);
                }
                Err(e) => break FetchEnd::Failed(e),
            }
        };
        // What the writer synced before it ended is a checkpoint too: a
        // retry or a restart resumes from there, not from the last one.
        // After a failure the writer first writes what was received.
        let drain = matches!(ended, FetchEnd::Failed(_));
        if let Some(last) = download.stop(drain).await {
            checkpoint(last);
        }
        Err(ended)
    }

    /// Opens the partial file (re-hashing what an earlier attempt saved)
    /// and the source, and starts the thread that writes.
    async fn start(
        &self,
        source: &Source,
        partial: &Path,
        saved: &Transfer,
        vouched: Option<&Vouched>,
        budget: &Budget,
    ) -> Result<Download, FetchError> {
        let limit = source
            .size()
            .map_or(self.settings.max_bytes, |s| s.min(self.settings.max_bytes));
        if source.size().is_some_and(|s| s > self.settings.max_bytes) {
            return Err(FetchError::Fatal(format!(
                "the source's size is over --max-download-bytes ({} bytes)",
                self.settings.max_bytes
            )));
        }
        let local = if source.url().starts_with("file:") {
            let path = url::Url::parse(source.url())
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| FetchError::Fatal("the file URL names no local path".into()))?;
            Some(
                tokio::task::spawn_blocking(move || open_local(&path))
                    .await
                    .map_err(|e| FetchError::Retry(e.to_string()))??,
            )
        } else {
            None
        };
        let (path, keep, b) = (partial.to_path_buf(), saved.clone(), budget.clone());
        let (file, hasher, done) =
            tokio::task::spawn_blocking(move || open_partial(&path, &keep, &b))
                .await
                .map_err(|e| FetchError::Retry(e.to_string()))?
                .map_err(|e| match e {
                    PartialError::Io(e) => {
                        FetchError::Fatal(format!("cannot write {}: {e}", partial.display()))
                    }
                    PartialError::Interrupted(i) => {
                        FetchError::Retry(format!("re-reading the partial download {i}"))
                    }
                })?;
        let mut download = Download {
            expected: source.clone(),
            reader: None,
            writer: None,
            synced: watch::channel(done).1,
            state: None,
            total: source.size(),
            validator: saved.validator.clone(),
            resumed: false,
            budget: budget.clone(),
            vouched: vouched.cloned(),
        };
        if let Some(local) = local {
            let (feed, buffers, writer) = download.start_writer(file, hasher, done, limit);
            let reader_budget = budget.clone();
            download.reader = Some(tokio::task::spawn_blocking(move || {
                read_local(local, done, feed, buffers, &reader_budget)
            }));
            download.writer = Some(writer);
            download.resumed = done > 0;
            return Ok(download);
        }
        let mut request = self.client()?.get(source.url());
        // Resume only where the server can say whether the bytes are still
        // the same: without a validator the partial is fetched again.
        let validator = saved.validator.clone().filter(|_| done > 0);
        let mut from = done;
        if let Some(validator) = &validator {
            request = request
                .header(reqwest::header::RANGE, format!("bytes={done}-"))
                .header(reqwest::header::IF_RANGE, validator);
        } else {
            from = 0;
        }
        // A server that takes the connection and never answers is a
        // silence like any other: bounded by the read timeout.
        let response = tokio::time::timeout(self.settings.read_timeout, request.send())
            .await
            .map_err(|_| {
                FetchError::Retry(format!(
                    "{} sent no answer within {:?}",
                    source.url(),
                    self.settings.read_timeout
                ))
            })?
            .map_err(|e| {
                FetchError::Retry(format!(
                    "cannot reach {}: {}",
                    source.url(),
                    error_chain(&e)
                ))
            })?;
        let status = response.status();
        match status.as_u16() {
            206 if validator.is_some() => {
                let starts_at = content_range_start(response.headers());
                if starts_at != Some(done) {
                    return Err(FetchError::Retry(format!(
                        "the server resumed at {starts_at:?}, not at byte {done}"
                    )));
                }
                download.resumed = true;
            }
            200 => {
                // A full answer: the server ignored the range, or the bytes
                // changed since (If-Range did not match). From the start.
                from = 0;
                if let Some(len) = response.content_length() {
                    download.total = Some(download.total.unwrap_or(len));
                    if len > limit {
                        return Err(too_large(len, limit, source));
                    }
                }
            }
            408 | 429 | 500..=599 => {
                return Err(FetchError::Retry(format!(
                    "{} answered {status}",
                    source.url()
                )));
            }
            _ => {
                return Err(FetchError::Fatal(format!(
                    "{} answered {status}",
                    source.url()
                )));
            }
        }
        // From the start when the server sends everything again: the
        // writer empties the partial before its first write.
        let hasher = if from == done { hasher } else { Hasher::new() };
        download.validator = validator_of(response.headers());
        let (feed, buffers, writer) = download.start_writer(file, hasher, from, limit);
        download.reader = Some(tokio::spawn(receive(
            response,
            feed,
            buffers,
            self.settings.read_timeout,
        )));
        download.writer = Some(writer);
        Ok(download)
    }
}

/// A transfer in progress: bytes come from the pump and go through a
/// bounded channel to the writer thread, which reports what it synced.
struct Download {
    expected: Source,
    /// What feeds the writer: the task receiving the answer, or the thread
    /// reading a local file. Taken once it has ended.
    reader: Option<JoinHandle<Result<(), FetchError>>>,
    writer: Option<JoinHandle<Result<Written, FetchError>>>,
    /// The length of the partial file last synced.
    synced: watch::Receiver<u64>,
    /// What the writer ended with, once it has.
    state: Option<Written>,
    total: Option<u64>,
    validator: Option<String>,
    resumed: bool,
    budget: Budget,
    /// The signature the bytes must match, if keys are trusted.
    vouched: Option<Vouched>,
}

impl Download {
    fn start_writer(
        &mut self,
        file: std::fs::File,
        hasher: Hasher,
        done: u64,
        limit: u64,
    ) -> (
        mpsc::Sender<Vec<u8>>,
        Buffers,
        JoinHandle<Result<Written, FetchError>>,
    ) {
        let Lanes {
            buffers,
            feed,
            blocks,
            back,
        } = Lanes::new();
        let (synced_tx, synced_rx) = watch::channel(done);
        self.synced = synced_rx;
        let writer = Writer {
            file,
            hasher,
            done,
            limit,
            expected: self.expected.clone(),
            synced: synced_tx,
            budget: self.budget.clone(),
            vouched: self.vouched.clone(),
        };
        (
            feed,
            buffers,
            tokio::task::spawn_blocking(move || writer.run(blocks, back)),
        )
    }

    /// Goes on until a checkpoint is synced (`Some`) or everything is
    /// written and synced (`None`). A reader that fails ends it at once.
    async fn advance(&mut self) -> Result<Option<Transfer>, FetchError> {
        loop {
            if self.state.is_some() {
                return Ok(None);
            }
            let Download { synced, reader, .. } = self;
            let reading = reader.is_some();
            tokio::select! {
                biased;
                changed = synced.changed() => {
                    if changed.is_ok() {
                        return Ok(Some(self.checkpoint()));
                    }
                    // The writer has ended: what did it end with?
                    self.state = Some(self.join().await?);
                }
                // Awaited by reference: nothing is lost when a checkpoint
                // comes first.
                read = async { reader.as_mut().expect("reading").await }, if reading => {
                    self.reader = None;
                    read.map_err(|e| FetchError::Retry(e.to_string()))??;
                }
            }
        }
    }

    /// Joins the writer (and a reader still running): the first error wins.
    async fn join(&mut self) -> Result<Written, FetchError> {
        let read = match self.reader.take() {
            Some(reader) => reader
                .await
                .map_err(|e| FetchError::Retry(e.to_string()))
                .and_then(|r| r),
            None => Ok(()),
        };
        let written = match self.writer.take() {
            Some(writer) => writer
                .await
                .map_err(|e| FetchError::Retry(e.to_string()))
                .and_then(|r| r),
            None => Err(FetchError::Retry("the download was stopped".into())),
        };
        read?;
        written
    }

    /// Where it stands, for the operation's progress.
    fn checkpoint(&self) -> Transfer {
        Transfer {
            bytes_done: Some(*self.synced.borrow()),
            bytes_total: self.total,
            validator: self.validator.clone(),
        }
    }

    /// Ends a transfer early: the source is dropped, the writer sees its
    /// channel close and ends (syncing what it has; with `drain`, after
    /// writing what is queued, else at once), and both are awaited.
    /// Returns the checkpoint of what the writer synced last, if it moved.
    async fn stop(mut self, drain: bool) -> Option<Transfer> {
        if !drain {
            self.budget.cancel();
        }
        if let Some(reader) = self.reader.take() {
            // The receiving task stops at once; a local reader at its next
            // look at the budget.
            reader.abort();
            let _ = reader.await;
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
        self.synced
            .has_changed()
            .unwrap_or(true)
            .then(|| self.checkpoint())
    }

    /// Checks the size and digest of what was written. On a mismatch the
    /// caller removes the partial: it will never become right.
    async fn verify(mut self) -> Result<Fetched, FetchError> {
        let written = match self.state.take() {
            Some(w) => w,
            None => self.join().await?,
        };
        if let Some(size) = self.expected.size()
            && size != written.done
        {
            let sent = if written.done < size { "fewer" } else { "more" };
            return Err(FetchError::Fatal(format!(
                "size mismatch: the source says {size} bytes, the server sent {sent}"
            )));
        }
        if written.digest != self.expected.sha256() {
            return Err(FetchError::Fatal(format!(
                "SHA-256 mismatch: what was fetched does not have the digest the source gives ({})",
                self.expected.sha256()
            )));
        }
        if let Some(Err(why)) = written.signed {
            return Err(FetchError::Signature(why));
        }
        Ok(Fetched {
            transfer: Transfer {
                bytes_done: Some(written.done),
                bytes_total: Some(written.done),
                validator: self.validator.clone(),
            },
            resumed: self.resumed,
        })
    }
}

/// The receiving task: reads the answer into the transfer's buffers and
/// sends each full one to the writer; ends at the answer's end (closing
/// the channel), when the writer stops (it says why), or with an error.
/// What was received is passed on in every case, and a buffer is not held
/// back longer than `HOLD` while the answer is quiet.
async fn receive(
    mut response: reqwest::Response,
    feed: mpsc::Sender<Vec<u8>>,
    mut buffers: Buffers,
    read_timeout: Duration,
) -> Result<(), FetchError> {
    let mut block: Option<Vec<u8>> = None;
    let end = loop {
        let holding = block.as_ref().is_some_and(|b| !b.is_empty());
        let wait = if holding { HOLD } else { read_timeout };
        let mut chunk = match tokio::time::timeout(wait, response.chunk()).await {
            Err(_) if holding => {
                if let Some(full) = block.take()
                    && feed.send(full).await.is_err()
                {
                    return Ok(());
                }
                continue;
            }
            Err(_) => break Err(FetchError::Retry(format!("no data for {read_timeout:?}"))),
            Ok(Err(e)) => {
                break Err(FetchError::Retry(format!(
                    "the connection broke: {}",
                    error_chain(&e)
                )));
            }
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(chunk))) => chunk,
        };
        while !chunk.is_empty() {
            let buf = match &mut block {
                Some(buf) => buf,
                None => match buffers.next().await {
                    Some(buf) => block.insert(buf),
                    None => return Ok(()), // the writer stopped; it says why
                },
            };
            let take = (BLOCK - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk.split_to(take));
            if buf.len() == BLOCK
                && let Some(full) = block.take()
                && feed.send(full).await.is_err()
            {
                return Ok(());
            }
        }
    };
    if let Some(rest) = block.filter(|b| !b.is_empty()) {
        let _ = feed.send(rest).await;
    }
    end
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
fn content_range_start(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The validator to resume with: a strong `ETag`, else `Last-Modified`.
fn validator_of(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let etag = headers
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("W/"));
    etag.or_else(|| {
        headers
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
    })
    .map(str::to_string)
}

/// An error and its causes on one line (reqwest's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_validators_are_read_from_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("content-range", "bytes 100-199/200".parse().unwrap());
        assert_eq!(content_range_start(&h), Some(100));
        h.insert("etag", "W/\"weak\"".parse().unwrap());
        h.insert(
            "last-modified",
            "Mon, 30 Nov 2026 10:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            validator_of(&h).as_deref(),
            Some("Mon, 30 Nov 2026 10:00:00 GMT"),
            "a weak ETag cannot validate a range"
        );
        h.insert("etag", "\"strong\"".parse().unwrap());
        assert_eq!(validator_of(&h).as_deref(), Some("\"strong\""));
    }

    #[test]
    fn a_partial_is_cut_back_to_its_checkpoint_and_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partial");
        std::fs::write(&path, b"0123456789unvouched").unwrap();
        let saved = Transfer {
            bytes_done: Some(10),
            bytes_total: None,
            validator: Some("\"v\"".into()),
        };
        let budget = Budget::unbounded();
        let Ok((_, hasher, kept)) = open_partial(&path, &saved, &budget) else {
            panic!("open")
        };
        assert_eq!(kept, 10);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10);
        assert_eq!(
            hasher.finalize().as_slice(),
            Hasher::digest(b"0123456789").as_slice()
        );
        // A checkpoint beyond the file (lost with the page cache): what is there.
        let saved = Transfer {
            bytes_done: Some(99),
            ..saved
        };
        assert!(matches!(
            open_partial(&path, &saved, &budget),
            Ok((_, _, 10))
        ));
        // A cancel stops the re-hash.
        budget.cancel();
        assert!(matches!(
            open_partial(&path, &saved, &budget),
            Err(PartialError::Interrupted(Interrupted::Cancelled))
        ));
    }

    #[test]
    fn local_sources_are_regular_files_outside_the_kernel_views() {
        let dir = tempfile::tempdir().unwrap();
        let fine = dir.path().join("a.tar");
        std::fs::write(&fine, b"x").unwrap();
        assert!(open_local(&fine).is_ok());
        // A link to /proc is followed to where it leads, and refused.
        let link = dir.path().join("environ");
        std::os::unix::fs::symlink("/proc/self/environ", &link).unwrap();
        for refused in [
            Path::new("/proc/self/environ"),
            Path::new("/dev/zero"),
            Path::new("/sys/kernel/mm/transparent_hugepage/enabled"),
            link.as_path(),
            dir.path(),
        ] {
            let err = open_local(refused).unwrap_err();
            assert!(matches!(err, FetchError::Fatal(_)), "{refused:?}");
        }
        // A FIFO is refused without blocking on its open.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the path string, which `c` keeps alive.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = open_local(&fifo).unwrap_err();
        assert!(err.to_string().contains("regular files"), "{err}");
    }
}
