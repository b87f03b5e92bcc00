//! The single writer: one OS thread that owns every redb write transaction.
//!
//! redb allows one writer at a time and each durable commit costs an fsync.
//! Requests send their write as a job on a channel; the thread takes every job
//! that is waiting, runs them all in one transaction and commits once (group
//! commit), then answers each job. Under load the fsync is shared by the whole
//! batch; a lone request pays one fsync, as it would anyway.
//!
//! A job that returns `Err` has written nothing that commits: when any job of
//! a batch fails, the transaction is thrown away and the other jobs run
//! again in a new one (jobs are `FnMut` for that), so a job that wrote and
//! then failed cannot leave half its work in the file. A batch with a failure
//! costs a second run of its jobs, never a second fsync.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, Durability, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::Failure;
use super::StoreError;
use super::handle::{Damage, Handle};
use crate::metrics;

/// One write waiting for the writer thread.
trait Job: Send {
    /// Runs the write in `wtx` (perhaps again, in a new transaction, if
    /// another job of its batch failed); false when it failed.
    fn run(&mut self, wtx: &WriteTransaction) -> bool;
    /// Answers the caller once the batch's commit is known.
    fn answer(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Write<T, F> {
    f: F,
    out: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send,
    F: FnMut(&WriteTransaction) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, wtx: &WriteTransaction) -> bool {
        let out = (self.f)(wtx);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn answer(self: Box<Self>, commit: Result<(), StoreError>) {
        let result = match (self.out, commit) {
            // A failed job's own error says more than the batch's.
            (Some(Err(e)), _) | (_, Err(e)) => Err(e),
            (Some(Ok(out)), Ok(())) => Ok(out),
            (None, Ok(())) => Err(StoreError::Failed(Failure::Internal(
                "the job was not run".into(),
            ))),
        };
        // The receiver may be gone (client hung up); the write still happened.
        let _ = self.reply.send(result);
    }
}

type BoxedJob = Box<dyn Job>;

/// Most jobs one transaction takes. Bounds the latency of the first job of a
/// batch and the size of a transaction.
const MAX_BATCH: usize = 1024;
/// Jobs queued before senders wait: back-pressure instead of unbounded memory.
const QUEUE_DEPTH: usize = 4096;

pub(crate) struct Writer {
    tx: std::sync::Mutex<Option<mpsc::Sender<BoxedJob>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(crate) fn start(db: Arc<Handle>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<BoxedJob>(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("packd-writer".into())
            .spawn(move || run(&db, rx))?;
        Ok(Self {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `f` inside a write transaction and resolves once that transaction
    /// is durable on disk (or has failed). `f` may run more than once (see
    /// the module's doc); only the run that commits counts.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, reply_rx) = oneshot::channel();
        let job: BoxedJob = Box::new(Write {
            f,
            out: None,
            reply,
        });
        let sender = self
            .tx
            .lock()
            .expect("writer sender lock")
            .clone()
            .ok_or(StoreError::Failed(Failure::Closed))?;
        sender
            .send(job)
            .await
            .map_err(|_| StoreError::Failed(Failure::Closed))?;
        reply_rx
            .await
            .map_err(|_| StoreError::Failed(Failure::Closed))?
    }

    /// Stops taking jobs, lets the thread finish the ones already queued, and
    /// waits for it. Later writes get `StoreError::Failed(Failure::Closed)`.
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

/// Answers every job of `batch` with `e`.
fn refuse_all(batch: &mut Vec<BoxedJob>, e: &StoreError) {
    for job in batch.drain(..) {
        job.answer(Err(e.clone()));
    }
}

fn run(db: &Handle, mut rx: mpsc::Receiver<BoxedJob>) {
    let mut batch: Vec<BoxedJob> = Vec::with_capacity(64);
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
            refuse_all(
                &mut batch,
                &StoreError::Failed(Failure::Damaged(reason.to_string())),
            );
            continue;
        }
        if let Some(at) = failed_at {
            let recovered = at.elapsed() >= RETRY_AFTER_FAILURE && db.reopen().is_ok();
            if !recovered {
                if at.elapsed() >= RETRY_AFTER_FAILURE {
                    failed_at = Some(Instant::now());
                }
                let e = StoreError::Failed(Failure::Unavailable(
                    "the last write failed (is the disk full?); retrying shortly".into(),
                ));
                refuse_all(&mut batch, &e);
                continue;
            }
            failed_at = None;
        }
        let outcome = match db.get() {
            Ok(handle) => commit_batch(&handle, &mut batch, &db.damage),
            Err(e) => {
                refuse_all(&mut batch, &e);
                Err(e)
            }
        };
        if matches!(outcome, Err(StoreError::Failed(Failure::Unavailable(_)))) {
            failed_at = Some(Instant::now());
        }
    }
}

/// Runs `batch` in one transaction and commits it; answers every job.
fn commit_batch(
    db: &Database,
    batch: &mut Vec<BoxedJob>,
    damage: &Damage,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let jobs = batch.len();
    let mut failed: Vec<BoxedJob> = Vec::new();
    let outcome = loop {
        let wtx = match begin(db) {
            Ok(wtx) => wtx,
            Err(e) => {
                tracing::error!(error = %e, "cannot begin a write transaction");
                break Err(e);
            }
        };
        let mut ran: Vec<BoxedJob> = Vec::with_capacity(batch.len());
        let mut any_failed = false;
        let mut panicked = None;
        let mut pending = std::mem::take(batch).into_iter();
        while let Some(mut job) = pending.next() {
            match catch_unwind(AssertUnwindSafe(|| job.run(&wtx))) {
                Ok(true) => ran.push(job),
                Ok(false) => {
                    any_failed = true;
                    failed.push(job);
                }
                Err(panic) => {
                    // The job's own reply is dropped with it (its caller
                    // sees Closed); the others are answered below.
                    panicked = Some(super::panic_message(&*panic));
                    ran.extend(pending);
                    break;
                }
            }
        }
        *batch = ran;
        if let Some(message) = panicked {
            // The storage library panics on damaged pages (or a job has a
            // bug): nothing of this batch may commit, and writing on after
            // an unexplained failure inside a write could add to damage,
            // so writes stop until an operator looks.
            tracing::error!("a store job panicked; the whole batch is rolled back");
            let _ = wtx.abort();
            let reason = format!("a write failed inside the storage library: {message}");
            damage.mark(&reason);
            break Err(StoreError::Failed(Failure::Damaged(reason)));
        }
        if !any_failed {
            break wtx.commit().map_err(StoreError::from);
        }
        // A job that failed may have written before it failed: its writes
        // must not commit with the others. Throw the transaction away and
        // run the others again in a new one.
        let _ = wtx.abort();
        if batch.is_empty() {
            break Ok(());
        }
    };
    metrics::global().commit(jobs, started.elapsed(), outcome.is_ok());
    if let Err(e) = &outcome {
        tracing::error!(error = %e, jobs, "write transaction failed");
        if let StoreError::Failed(Failure::Corrupt(reason)) = e {
            damage.mark(reason);
        }
    }
    for job in batch.drain(..) {
        job.answer(outcome.clone());
    }
    for job in failed {
        job.answer(Ok(()));
    }
    outcome
}

fn begin(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut wtx = db.begin_write()?;
    wtx.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Failed(Failure::Internal(e.to_string())))?;
    // Quick repair writes the allocator state with each commit, so that opening
    // the file after a crash does not walk every page.
    wtx.set_quick_repair(true);
    Ok(wtx)
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, TableDefinition};

    use super::super::Refusal;
    use super::*;

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn job<T: Send + 'static>(
        f: impl FnMut(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> (BoxedJob, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (
            Box::new(Write {
                f,
                out: None,
                reply,
            }),
            rx,
        )
    }

    #[test]
    fn a_job_that_fails_after_writing_leaves_nothing_and_the_others_commit() {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let (before, before_rx) = job(|wtx| {
            wtx.open_table(T)?.insert("before", 1)?;
            Ok("first")
        });
        let (half, half_rx) = job(|wtx| {
            wtx.open_table(T)?.insert("half", 2)?;
            Err::<(), _>(StoreError::Refused(Refusal::Conflict(
                "failed after writing".into(),
            )))
        });
        let (after, after_rx) = job(|wtx| {
            wtx.open_table(T)?.insert("after", 3)?;
            Ok(3)
        });
        let mut batch = vec![before, half, after];
        commit_batch(&db, &mut batch, &Damage::default()).unwrap();

        assert_eq!(before_rx.blocking_recv().unwrap().unwrap(), "first");
        assert!(matches!(
            half_rx.blocking_recv().unwrap(),
            Err(StoreError::Refused(Refusal::Conflict(_)))
        ));
        assert_eq!(after_rx.blocking_recv().unwrap().unwrap(), 3);
        let rtx = db.begin_read().unwrap();
        let t = rtx.open_table(T).unwrap();
        assert!(t.get("half").unwrap().is_none(), "half a job committed");
        assert_eq!(t.get("before").unwrap().unwrap().value(), 1);
        assert_eq!(t.get("after").unwrap().unwrap().value(), 3);
    }

    #[test]
    fn a_batch_of_failures_commits_nothing_and_answers_each() {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let (a, a_rx) = job(|wtx| {
            wtx.open_table(T)?.insert("a", 1)?;
            Err::<(), _>(StoreError::Refused(Refusal::NotFound))
        });
        let mut batch = vec![a];
        commit_batch(&db, &mut batch, &Damage::default()).unwrap();
        assert!(matches!(
            a_rx.blocking_recv().unwrap(),
            Err(StoreError::Refused(Refusal::NotFound))
        ));
        let rtx = db.begin_read().unwrap();
        assert!(rtx.open_table(T).is_err(), "the table was never committed");
    }
}
