//! Fetching an artifact into `partial/`: a streaming GET, hashed as it
//! goes (the artifact is never held in memory), resumed with `Range` and
//! `If-Range` after a cut, a retry or a restart.
//!
//! Durability order: bytes are written, the partial file is synced, and only
//! then is the checkpoint (its length and the server's validator) handed to
//! the caller to save with the operation. A saved offset therefore never
//! claims bytes the disk may not hold; on resume the file is cut back to it
//! and that prefix is hashed again.

use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256 as Hasher};

use crate::domain::operation::Transfer;
use crate::domain::source::{Sha256, Source};

/// Settings of the HTTP client that fetches artifacts.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub connect_timeout: Duration,
    /// The longest silence while reading an answer.
    pub read_timeout: Duration,
    /// The most bytes one artifact may have.
    pub max_bytes: u64,
    /// Extra trusted roots (PEM) for https sources, besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// A checkpoint is offered after this many bytes or this long, whichever
/// comes first: a resume repeats at most that much.
pub const CHECKPOINT_BYTES: u64 = 8 * 1024 * 1024;
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Why a fetch stopped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A retry may mend it: a connection error, a timeout, 5xx, 408, 429.
    #[error("{0}")]
    Retry(String),
    /// It will not get better: 4xx, a size or digest mismatch, too large,
    /// a full disk.
    #[error("{0}")]
    Fatal(String),
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
    /// one, and `ca_file`. `http_proxy`, `https_proxy` and `no_proxy` are
    /// honoured.
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
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(self.settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .user_agent(concat!("packd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Fatal(format!("cannot set up the HTTP client: {e}")))?;
        // Two first downloads at once may both build one; either serves.
        Ok(self.client.get_or_init(|| client))
    }

    /// Starts (or resumes from `saved`) the download of `source` into
    /// `partial`. `file://` sources are read from the file.
    pub async fn start(
        &self,
        source: &Source,
        partial: &Path,
        saved: &Transfer,
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
        let (file, hasher, done) = open_partial(partial, saved)
            .map_err(|e| FetchError::Fatal(format!("cannot write {}: {e}", partial.display())))?;
        let resumed = done > 0;
        let mut download = Download {
            body: Body::Done,
            file,
            hasher,
            done,
            total: source.size(),
            validator: saved.validator.clone(),
            limit,
            expected: source.clone(),
            read_timeout: self.settings.read_timeout,
            synced_at: (Instant::now(), done),
            resumed: false,
        };
        if source.url().starts_with("file:") {
            let path = url::Url::parse(source.url())
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| FetchError::Fatal("the file URL names no local path".into()))?;
            let mut local = std::fs::File::open(&path)
                .map_err(|e| FetchError::Fatal(format!("cannot read {}: {e}", path.display())))?;
            local
                .seek(io::SeekFrom::Start(download.done))
                .map_err(|e| FetchError::Fatal(e.to_string()))?;
            download.body = Body::File(local);
            return Ok(download);
        }
        let mut request = self.client()?.get(source.url());
        // Resume only where the server can say whether the bytes are still
        // the same: without a validator the partial is fetched again.
        let validator = saved.validator.clone().filter(|_| resumed);
        if let Some(validator) = &validator {
            request = request
                .header(reqwest::header::RANGE, format!("bytes={}-", download.done))
                .header(reqwest::header::IF_RANGE, validator);
        } else if resumed {
            download.restart().map_err(disk)?;
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
                if starts_at != Some(download.done) {
                    return Err(FetchError::Retry(format!(
                        "the server resumed at {starts_at:?}, not at byte {}",
                        download.done
                    )));
                }
                download.resumed = true;
            }
            200 => {
                // A full answer: the server ignored the range, or the bytes
                // changed since (If-Range did not match). From the start.
                download.restart().map_err(disk)?;
                if let Some(len) = response.content_length() {
                    download.total = Some(download.total.unwrap_or(len));
                    if len > download.limit {
                        return Err(too_large(len, download.limit, source));
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
        download.validator = validator_of(response.headers());
        download.body = Body::Http(response);
        Ok(download)
    }
}

/// An answer being written to the partial file.
pub struct Download {
    body: Body,
    file: std::fs::File,
    hasher: Hasher,
    done: u64,
    total: Option<u64>,
    validator: Option<String>,
    limit: u64,
    expected: Source,
    read_timeout: Duration,
    /// When the file was last synced, and its length then.
    synced_at: (Instant, u64),
    resumed: bool,
}

enum Body {
    Http(reqwest::Response),
    File(std::fs::File),
    Done,
}

impl Download {
    /// Whether this download picked up bytes an earlier attempt saved.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Reads on until a checkpoint is due or the answer ends. A checkpoint
    /// is returned only once its bytes are synced; `None` at the end.
    pub async fn advance(&mut self) -> Result<Option<Transfer>, FetchError> {
        loop {
            let chunk = match &mut self.body {
                Body::Done => return Ok(None),
                Body::Http(response) => {
                    match tokio::time::timeout(self.read_timeout, response.chunk()).await {
                        Err(_) => {
                            return Err(FetchError::Retry(format!(
                                "no data for {:?}",
                                self.read_timeout
                            )));
                        }
                        Ok(Err(e)) => {
                            return Err(FetchError::Retry(format!(
                                "the connection broke: {}",
                                error_chain(&e)
                            )));
                        }
                        Ok(Ok(chunk)) => chunk,
                    }
                }
                Body::File(file) => {
                    let mut buf = vec![0u8; 256 * 1024];
                    let n = file
                        .read(&mut buf)
                        .map_err(|e| FetchError::Fatal(e.to_string()))?;
                    buf.truncate(n);
                    (n > 0).then(|| bytes::Bytes::from(buf))
                }
            };
            let Some(chunk) = chunk else {
                self.body = Body::Done;
                self.sync().map_err(disk)?;
                return Ok(None);
            };
            let len = chunk.len() as u64;
            if self.done + len > self.limit {
                return Err(too_large(self.done + len, self.limit, &self.expected));
            }
            self.file.write_all(&chunk).map_err(disk)?;
            self.hasher.update(&chunk);
            self.done += len;
            let (at, synced) = self.synced_at;
            if self.done - synced >= CHECKPOINT_BYTES || at.elapsed() >= CHECKPOINT_EVERY {
                self.sync().map_err(disk)?;
                return Ok(Some(self.checkpoint()));
            }
        }
    }

    /// Where it stands, for the operation's progress.
    pub fn checkpoint(&self) -> Transfer {
        Transfer {
            bytes_done: Some(self.done),
            bytes_total: self.total,
            validator: self.validator.clone(),
        }
    }

    /// Checks the size and digest of what was fetched. On a mismatch the
    /// caller removes the partial: it will never become right.
    pub fn verify(self) -> Result<Sha256, FetchError> {
        let digest = Sha256(self.hasher.finalize().into());
        if let Some(size) = self.expected.size()
            && size != self.done
        {
            return Err(FetchError::Fatal(format!(
                "size mismatch: the source says {size} bytes, the server sent {}",
                self.done
            )));
        }
        if digest != self.expected.sha256() {
            return Err(FetchError::Fatal(format!(
                "SHA-256 mismatch: expected {}, got {digest}",
                self.expected.sha256()
            )));
        }
        Ok(digest)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()?;
        self.synced_at = (Instant::now(), self.done);
        Ok(())
    }

    /// Back to an empty partial file: the server sends everything again.
    fn restart(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(io::SeekFrom::Start(0))?;
        self.hasher = Hasher::new();
        self.done = 0;
        self.synced_at = (Instant::now(), 0);
        self.resumed = false;
        Ok(())
    }
}

/// Opens the partial file, cut back to what the last checkpoint saved (a
/// longer file holds bytes no checkpoint vouched for), and hashes that
/// prefix again.
fn open_partial(path: &Path, saved: &Transfer) -> io::Result<(std::fs::File, Hasher, u64)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let on_disk = file.metadata()?.len();
    let keep = saved.bytes_done.unwrap_or(0).min(on_disk);
    file.set_len(keep)?;
    let mut hasher = Hasher::new();
    file.seek(io::SeekFrom::Start(0))?;
    io::copy(&mut (&mut file).take(keep), &mut HashWriter(&mut hasher))?;
    file.seek(io::SeekFrom::Start(keep))?;
    Ok((file, hasher, keep))
}

struct HashWriter<'a>(&'a mut Hasher);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

fn too_large(len: u64, limit: u64, source: &Source) -> FetchError {
    FetchError::Fatal(match source.size() {
        Some(size) if len > size => {
            format!("size mismatch: the source says {size} bytes, the server sends more")
        }
        _ => format!("the artifact is over --max-download-bytes ({limit} bytes)"),
    })
}

/// A write to the partial file failed: a full disk or an I/O error, which a
/// retry does not mend.
fn disk(e: io::Error) -> FetchError {
    FetchError::Fatal(format!("cannot write the download: {e}"))
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
        let (_, hasher, kept) = open_partial(&path, &saved).unwrap();
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
        assert_eq!(open_partial(&path, &saved).unwrap().2, 10);
    }
}
