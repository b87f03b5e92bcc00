//! The disk side of a fetch: the partial file opened and cut back to its
//! last checkpoint (that prefix hashed again), and the writing thread that
//! appends, hashes and syncs, reporting each synced length.

use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256 as Hasher};
use tokio::sync::{mpsc, watch};

use super::{CHECKPOINT_BYTES, CHECKPOINT_EVERY, FILE_CHUNK, FetchError};
use crate::domain::operation::Transfer;
use crate::domain::source::{Sha256, Source};
use crate::files::budget::{Budget, Interrupted};

/// What the writer thread made of the bytes.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) digest: Sha256,
    pub(super) done: u64,
}

/// The writing thread: appends, hashes, and syncs at each checkpoint.
pub(super) struct Writer {
    pub(super) file: std::fs::File,
    pub(super) hasher: Hasher,
    pub(super) done: u64,
    pub(super) limit: u64,
    pub(super) expected: Source,
    pub(super) synced: watch::Sender<u64>,
    pub(super) budget: Budget,
}

impl Writer {
    pub(super) fn run(
        mut self,
        mut chunks: mpsc::Receiver<bytes::Bytes>,
    ) -> Result<Written, FetchError> {
        // The partial holds what earlier attempts saved; a transfer from
        // an earlier point (the start) cuts it back first.
        if self.file.stream_position().map_err(disk)? != self.done {
            self.file.set_len(self.done).map_err(disk)?;
            self.file
                .seek(io::SeekFrom::Start(self.done))
                .map_err(disk)?;
        }
        let mut last_sync = (Instant::now(), self.done);
        while let Some(chunk) = chunks.blocking_recv() {
            if self.budget.check().is_err() {
                break;
            }
            let len = chunk.len() as u64;
            if self.done + len > self.limit {
                return Err(too_large(self.done + len, self.limit, &self.expected));
            }
            self.file.write_all(&chunk).map_err(disk)?;
            self.hasher.update(&chunk);
            self.done += len;
            if self.done - last_sync.1 >= CHECKPOINT_BYTES
                || last_sync.0.elapsed() >= CHECKPOINT_EVERY
            {
                self.sync()?;
                last_sync = (Instant::now(), self.done);
            }
        }
        // The channel closed: the source ended (or the fetch was stopped,
        // and what is synced here is only vouched for by a checkpoint).
        self.sync()?;
        Ok(Written {
            digest: Sha256(self.hasher.finalize().into()),
            done: self.done,
        })
    }

    fn sync(&mut self) -> Result<(), FetchError> {
        self.file.flush().map_err(disk)?;
        self.file.sync_data().map_err(disk)?;
        self.synced.send_replace(self.done);
        Ok(())
    }
}

/// Why a partial could not be opened.
pub(super) enum PartialError {
    Io(io::Error),
    Interrupted(Interrupted),
}

/// Opens the partial file, cut back to what the last checkpoint saved (a
/// longer file holds bytes no checkpoint vouched for), and hashes that
/// prefix again, checking the budget between chunks.
pub(super) fn open_partial(
    path: &Path,
    saved: &Transfer,
    budget: &Budget,
) -> Result<(std::fs::File, Hasher, u64), PartialError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = PartialError::Io;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let on_disk = file.metadata().map_err(io)?.len();
    let keep = saved.bytes_done.unwrap_or(0).min(on_disk);
    file.set_len(keep).map_err(io)?;
    let mut hasher = Hasher::new();
    file.seek(io::SeekFrom::Start(0)).map_err(io)?;
    let mut buf = vec![0u8; FILE_CHUNK];
    let mut left = keep;
    while left > 0 {
        budget.check().map_err(PartialError::Interrupted)?;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..want]).map_err(io)?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    Ok((file, hasher, keep))
}

/// A write to the partial file failed: a full disk or an I/O error, which a
/// retry does not mend.
pub(super) fn disk(e: io::Error) -> FetchError {
    FetchError::Fatal(format!("cannot write the download: {e}"))
}

pub(super) fn too_large(len: u64, limit: u64, source: &Source) -> FetchError {
    FetchError::Fatal(match source.size() {
        Some(size) if len > size => {
            format!("size mismatch: the source says {size} bytes, the server sends more")
        }
        _ => format!("the artifact is over --max-download-bytes ({limit} bytes)"),
    })
}
