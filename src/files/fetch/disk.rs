//! The disk side of a fetch: the partial file opened and cut back to its
//! last checkpoint (that prefix hashed again), and the writing thread that
//! appends and hands each block to a hashing thread and, at checkpoints, a
//! syncing thread, so that receiving, writing, hashing and the disk's
//! writeback all overlap.
//!
//! The bytes travel in a fixed set of buffers ([`Buffers`]): filled by the
//! reader, written, hashed, then handed back to be filled again. One owner
//! at a time, no copy between the stages, and a transfer's memory is
//! `POOL` blocks whatever the speeds (buffers freed on other threads than
//! the one that made them were kept by the allocator: tens of MiB).
//!
//! A checkpoint reports a length only once a sync that began after those
//! bytes were written has returned: the order resume depends on.

use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::sync::mpsc as threads;
use std::time::Instant;

use sha2::{Digest, Sha256 as Hasher};
use tokio::sync::{mpsc, watch};

use super::{CHECKPOINT_BYTES, CHECKPOINT_EVERY, FILE_CHUNK, FetchError};
use crate::domain::operation::Transfer;
use crate::domain::source::{Sha256, Source};
use crate::files::budget::{Budget, Interrupted};
use crate::trust::{Stream, Vouched};

/// The buffers one transfer's bytes travel in, and the size of each.
const POOL: usize = 16;
pub(super) const BLOCK: usize = 256 * 1024;

/// The ways a transfer's buffers go round.
pub(super) struct Lanes {
    /// The reader takes empty buffers here,
    pub(super) buffers: Buffers,
    /// sends them full to the writer by `feed` (it never holds more than
    /// there are buffers), who gets them from `blocks`;
    pub(super) feed: mpsc::Sender<Vec<u8>>,
    pub(super) blocks: mpsc::Receiver<Vec<u8>>,
    /// the hasher hands them back by `back`.
    pub(super) back: mpsc::Sender<Vec<u8>>,
}

impl Lanes {
    pub(super) fn new() -> Self {
        let (back, free) = mpsc::channel(POOL);
        let (feed, blocks) = mpsc::channel(POOL);
        Self {
            buffers: Buffers { free, made: 0 },
            back,
            feed,
            blocks,
        }
    }
}

/// The reader's side of the buffers: a new one while fewer than `POOL`
/// were made, else one handed back.
pub(super) struct Buffers {
    free: mpsc::Receiver<Vec<u8>>,
    made: usize,
}

impl Buffers {
    /// An empty buffer; `None` once the writer's side has ended.
    pub(super) async fn next(&mut self) -> Option<Vec<u8>> {
        if self.made < POOL {
            self.made += 1;
            return Some(Vec::with_capacity(BLOCK));
        }
        self.free.recv().await
    }

    pub(super) fn next_blocking(&mut self) -> Option<Vec<u8>> {
        if self.made < POOL {
            self.made += 1;
            return Some(Vec::with_capacity(BLOCK));
        }
        self.free.blocking_recv()
    }
}

/// What the writer thread made of the bytes.
#[derive(Debug)]
pub(super) struct Written {
    pub(super) digest: Sha256,
    pub(super) done: u64,
    /// The signature's check over every byte, when one was asked for.
    pub(super) signed: Option<Result<(), String>>,
}

/// The writing thread: appends, and has the bytes hashed and synced
/// beside it.
pub(super) struct Writer {
    pub(super) file: std::fs::File,
    pub(super) hasher: Hasher,
    pub(super) done: u64,
    pub(super) limit: u64,
    pub(super) expected: Source,
    pub(super) synced: watch::Sender<u64>,
    pub(super) budget: Budget,
    pub(super) vouched: Option<Vouched>,
}

impl Writer {
    pub(super) fn run(
        self,
        chunks: mpsc::Receiver<Vec<u8>>,
        back: mpsc::Sender<Vec<u8>>,
    ) -> Result<Written, FetchError> {
        let Writer {
            mut file,
            hasher,
            done,
            limit,
            expected,
            synced,
            budget,
            vouched,
        } = self;
        // The partial holds what earlier attempts saved; a transfer from
        // an earlier point (the start) cuts it back first.
        if file.stream_position().map_err(disk)? != done {
            file.set_len(done).map_err(disk)?;
            file.seek(io::SeekFrom::Start(done)).map_err(disk)?;
        }
        let sync_file = file.try_clone().map_err(disk)?;
        // The signature's check needs what earlier attempts saved too: read
        // once more here, positioned, so the writer's offset stays.
        let prefix_file = match (&vouched, done) {
            (Some(_), 1..) => Some(file.try_clone().map_err(disk)?),
            _ => None,
        };
        // Scoped: neither helper outlives the writer, whatever happens.
        std::thread::scope(|scope| {
            // As deep as there are buffers: the writer never waits on it.
            let (to_hash, blocks) = threads::sync_channel::<Vec<u8>>(POOL);
            // With a signature to check, its hash (BLAKE2b) is a stage of
            // its own after SHA-256: the two overlap on different blocks.
            let vouched = vouched.as_ref();
            let (onward, checking) = match vouched {
                Some(_) => {
                    let (tx, rx) = threads::sync_channel::<Vec<u8>>(POOL);
                    (Some(tx), Some(rx))
                }
                None => (None, None),
            };
            // The last stage alone hands buffers back: when it ends, the
            // reader waiting for one is told, whatever ended it.
            let (hash_back, check_back) = match vouched {
                Some(_) => (None, Some(back)),
                None => (Some(back), None),
            };
            let hashing = scope.spawn(move || {
                let mut hasher = hasher;
                for mut block in blocks {
                    hasher.update(&block);
                    match &onward {
                        Some(next) => {
                            let _ = next.send(block);
                        }
                        None => {
                            block.clear();
                            // Refused once the reader has ended: then it goes.
                            if let Some(back) = &hash_back {
                                let _ = back.try_send(block);
                            }
                        }
                    }
                }
                hasher
            });
            let checking = checking.zip(check_back).map(|(blocks, back)| {
                scope.spawn(move || -> io::Result<Option<Stream<'_>>> {
                    let mut signed = vouched.map(Vouched::stream);
                    if let (Some(stream), Some(file)) = (&mut signed, prefix_file) {
                        feed_prefix(&file, done, stream)?;
                    }
                    for mut block in blocks {
                        if let Some(stream) = &mut signed {
                            stream.update(&block);
                        }
                        block.clear();
                        let _ = back.try_send(block);
                    }
                    Ok(signed)
                })
            });
            // One checkpoint waits behind the sync under way, at most: a
            // slow disk makes checkpoints rarer, never the writer wait.
            let (to_sync, lengths) = threads::sync_channel::<u64>(1);
            let syncing = scope.spawn(move || -> io::Result<watch::Sender<u64>> {
                for len in lengths {
                    sync_file.sync_data()?;
                    synced.send_replace(len);
                }
                Ok(synced)
            });
            let mut appending = Appending {
                file: &mut file,
                done,
                limit,
                expected: &expected,
            };
            let appended = appending.run(chunks, &budget, &to_hash, &to_sync);
            let done = appending.done;
            drop((to_hash, to_sync));
            let hasher = hashing
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            let signed = match checking {
                Some(checking) => checking
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
                    .map_err(|e| {
                        FetchError::Fatal(format!("cannot read the partial download: {e}"))
                    })?,
                None => None,
            };
            let synced = syncing
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .map_err(disk)?;
            appended?;
            // The channel closed: the source ended (or the fetch was
            // stopped, and what is synced here is only vouched for by a
            // checkpoint).
            file.sync_data().map_err(disk)?;
            synced.send_replace(done);
            Ok(Written {
                digest: Sha256(hasher.finalize().into()),
                done,
                signed: signed.map(crate::trust::Stream::finish),
            })
        })
    }
}

/// The writer's loop over the blocks it is sent.
struct Appending<'a> {
    file: &'a mut std::fs::File,
    done: u64,
    limit: u64,
    expected: &'a Source,
}

impl Appending<'_> {
    fn run(
        &mut self,
        mut chunks: mpsc::Receiver<Vec<u8>>,
        budget: &Budget,
        to_hash: &threads::SyncSender<Vec<u8>>,
        to_sync: &threads::SyncSender<u64>,
    ) -> Result<(), FetchError> {
        let mut offered = (Instant::now(), self.done);
        let mut kicked = self.done;
        while let Some(chunk) = chunks.blocking_recv() {
            if budget.check().is_err() {
                break;
            }
            let len = chunk.len() as u64;
            if self.done + len > self.limit {
                return Err(too_large(self.done + len, self.limit, self.expected));
            }
            self.file.write_all(&chunk).map_err(disk)?;
            self.done += len;
            if to_hash.send(chunk).is_err() {
                break; // the hasher is gone: its join says why
            }
            if self.done - kicked >= WRITEBACK_BYTES {
                start_writeback(self.file, kicked, self.done - kicked);
                kicked = self.done;
            }
            let due = self.done - offered.1 >= CHECKPOINT_BYTES
                || offered.0.elapsed() >= CHECKPOINT_EVERY;
            if due && to_sync.try_send(self.done).is_ok() {
                offered = (Instant::now(), self.done);
            }
        }
        Ok(())
    }
}

/// Writeback is started every this many bytes, without waiting for it:
/// the disk works while the bytes arrive, and a checkpoint's sync finds
/// little left to write.
const WRITEBACK_BYTES: u64 = 8 * 1024 * 1024;

/// Asks the kernel to start writing a range out (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`): a hint, so a failure is only logged.
fn start_writeback(file: &std::fs::File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(from), Ok(len)) = (i64::try_from(from), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads the descriptor, which `file` keeps
    // open; the range is plain numbers.
    let r =
        unsafe { libc::sync_file_range(file.as_raw_fd(), from, len, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "no early writeback");
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
    let hasher = hash_prefix(&mut file, keep, budget, |_| {}).map_err(|e| match e {
        HashError::Io(e) => PartialError::Io(e),
        HashError::Interrupted(i) => PartialError::Interrupted(i),
    })?;
    Ok((file, hasher, keep))
}

/// Feeds the first `len` bytes of the partial to the signature's check,
/// read at their offsets (the writer's position is shared).
fn feed_prefix(file: &std::fs::File, len: u64, stream: &mut Stream<'_>) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; FILE_CHUNK];
    let mut at = 0;
    while at < len {
        let want = buf
            .len()
            .min(usize::try_from(len - at).unwrap_or(usize::MAX));
        file.read_exact_at(&mut buf[..want], at)?;
        stream.update(&buf[..want]);
        at += want as u64;
    }
    Ok(())
}

/// Why a file could not be hashed.
#[derive(Debug)]
pub enum HashError {
    Io(io::Error),
    Interrupted(Interrupted),
}

/// Hashes the first `len` bytes of `file` from its start, checking the
/// budget between chunks; leaves the file's position at `len`.
pub fn hash_prefix(
    file: &mut std::fs::File,
    len: u64,
    budget: &Budget,
    mut also: impl FnMut(&[u8]),
) -> Result<Hasher, HashError> {
    let mut hasher = Hasher::new();
    file.seek(io::SeekFrom::Start(0)).map_err(HashError::Io)?;
    let mut buf = vec![0u8; FILE_CHUNK];
    let mut left = len;
    while left > 0 {
        budget.check().map_err(HashError::Interrupted)?;
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..want]).map_err(HashError::Io)?;
        hasher.update(&buf[..want]);
        also(&buf[..want]);
        left -= want as u64;
    }
    Ok(hasher)
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
