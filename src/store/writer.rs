//! The single writer: one OS thread that owns every redb write transaction.
//!
//! redb allows one writer at a time and each durable commit costs an fsync.
//! Requests send their write as a job on a channel; the thread takes every job
//! that is waiting, runs them all in one transaction and commits once (group
//! commit), then answers each job. Under load the fsync is shared by the whole
//! batch; a lone request pays one fsync, as it would anyway.
//!
//! Contract for jobs: a job that returns `Err` must not have written anything,
//! because the transaction it ran in still commits the other jobs of its
//! batch. Jobs therefore check everything first, then write.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::handle::{Damage, Handle};
use crate::metrics;

/// What a job hands back after running: the reply to send once the batch's
/// commit is known.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job gets `None` when its transaction could not even begin: it then only
/// builds the reply, which carries that error.
type Job = Box<dyn FnOnce(Option<&WriteTransaction>) -> Reply + Send>;

/// Most jobs one transaction takes. Bounds the latency of the first job of a
/// batch and the size of a transaction.
const MAX_BATCH: usize = 1024;
/// Jobs queued before senders wait: back-pressure instead of unbounded memory.
const QUEUE_DEPTH: usize = 4096;

pub(crate) struct Writer {
    tx: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(crate) fn start(db: Arc<Handle>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("packd-writer".into())
            .spawn(move || run(&db, rx))?;
        Ok(Self {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `f` inside a write transaction and resolves once that transaction
    /// is durable on disk (or has failed).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |wtx| {
            let out = wtx.map(f);
            Box::new(move |commit: Result<(), StoreError>| {
                let result = match (commit, out) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Some(out)) => out,
                    (Ok(()), None) => Err(StoreError::Internal("job was not run".into())),
                };
                // The receiver may be gone (client hung up); the write still happened.
                let _ = reply_tx.send(result);
            })
        });
        let sender = self
            .tx
            .lock()
            .expect("writer sender lock")
            .clone()
            .ok_or(StoreError::Closed)?;
        sender.send(job).await.map_err(|_| StoreError::Closed)?;
        reply_rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking jobs, lets the thread finish the ones already queued, and
    /// waits for it. Later writes get `StoreError::Closed`.
    pub(crate) fn shutdown(&self) {
        drop(self.tx.lock().expect("writer sender lock").take());
        if let Some(thread) = self.thread.lock().expect("writer thread lock").take() {
            let _ = thread.join();
        }
    }
}

/// After a failed write, how long new writes are refused outright before the
/// writer tries the disk again (by reopening the file).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

fn run(db: &Handle, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(64);
    // Set when a write failed: redb then refuses writes until the file is
    // opened again.
    let mut failed_at: Option<Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Some(reason) = db.damage.found() {
            let e = StoreError::Damaged(reason.to_string());
            for job in batch.drain(..) {
                job(None)(Err(e.clone()));
            }
            continue;
        }
        if let Some(at) = failed_at {
            let recovered = at.elapsed() >= RETRY_AFTER_FAILURE && db.reopen().is_ok();
            if !recovered {
                if at.elapsed() >= RETRY_AFTER_FAILURE {
                    failed_at = Some(Instant::now());
                }
                let e = StoreError::Unavailable(
                    "the last write failed (is the disk full?); retrying shortly".into(),
                );
                for job in batch.drain(..) {
                    job(None)(Err(e.clone()));
                }
                continue;
            }
            failed_at = None;
        }
        let outcome = match db.get() {
            Ok(handle) => commit_batch(&handle, &mut batch, &db.damage),
            Err(e) => {
                for job in batch.drain(..) {
                    job(None)(Err(e.clone()));
                }
                Err(e)
            }
        };
        if matches!(outcome, Err(StoreError::Unavailable(_))) {
            failed_at = Some(Instant::now());
        }
    }
}

fn commit_batch(db: &Database, batch: &mut Vec<Job>, damage: &Damage) -> Result<(), StoreError> {
    let started = Instant::now();
    let jobs = batch.len();
    let wtx = match begin(db) {
        Ok(wtx) => wtx,
        Err(e) => {
            tracing::error!(error = %e, "cannot begin a write transaction");
            for job in batch.drain(..) {
                job(None)(Err(e.clone()));
            }
            metrics::global().commit(jobs, started.elapsed(), false);
            return Err(e);
        }
    };
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut panicked = None;
    for job in batch.drain(..) {
        match catch_unwind(AssertUnwindSafe(|| job(Some(&wtx)))) {
            Ok(reply) => replies.push(reply),
            Err(panic) => {
                // The storage library panics on damaged pages (or a job has a
                // bug): its writes may be half done, so nothing of this batch
                // may commit. Its own reply was dropped (the caller sees Closed).
                panicked = Some(super::panic_message(&*panic));
            }
        }
    }
    let outcome = if let Some(message) = panicked {
        tracing::error!("a store job panicked; the whole batch is rolled back");
        let _ = wtx.abort();
        // Writing on after an unexplained failure inside a write could add
        // to damage; the service stops writing until an operator looks.
        let reason = format!("a write failed inside the storage library: {message}");
        damage.mark(&reason);
        Err(StoreError::Damaged(reason))
    } else {
        wtx.commit().map_err(StoreError::from)
    };
    if let Err(StoreError::Corrupt(reason)) = &outcome {
        damage.mark(reason);
    }
    metrics::global().commit(jobs, started.elapsed(), outcome.is_ok());
    if let Err(e) = &outcome {
        tracing::error!(error = %e, jobs = replies.len(), "write transaction failed");
    }
    for reply in replies {
        reply(outcome.clone());
    }
    outcome
}

fn begin(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut wtx = db.begin_write()?;
    wtx.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    // Quick repair writes the allocator state with each commit, so that opening
    // the file after a crash does not walk every page.
    wtx.set_quick_repair(true);
    Ok(wtx)
}
