//! Storage: the only module that knows redb and the byte encoding.
//!
//! One redb file holds everything. Reads open a read transaction on the
//! calling task (MVCC: they never wait for the writer); writes go to the
//! single writer thread (`writer.rs`), which batches them into transactions.
//! The `meta` table carries the schema version, checked before anything is
//! written, so a file from a newer packd is refused untouched.

mod audit;
mod backup;
mod channels;
mod check;
mod codec;
mod error;
pub mod events;
mod handle;
mod identity;
mod keys;
mod open;
mod operations;
mod packages;
mod page;
mod removals;
mod retention;
mod schema;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase};

pub use self::audit::AuditEntry;
pub use self::channels::{NewChannel, SyncOutcome};
pub use self::check::{CheckError, CheckReport, check_file};
pub(crate) use self::error::panic_message;
pub use self::error::{Failure, OpenError, Refusal, StoreError};
pub use self::handle::Damage;
pub use self::keys::{AuthFailure, Bootstrap, KeyPatch, NewKey, Principal};
pub use self::open::verify_file;
pub use self::operations::{AndThen, Claim, Continue, Idempotency, ListOperations};
pub use self::packages::{ListPackages, NewPackage};
pub use self::page::Page;
pub(crate) use self::page::{page_of, start_after};
pub use self::schema::SCHEMA_VERSION;
use self::writer::Writer;
pub use crate::domain::precondition::Precondition;

/// Default size of redb's page cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Versions of a name that keep their files after an activation, unless
/// `--keep-downloaded` says otherwise.
pub const DEFAULT_KEEP_DOWNLOADED: usize = 3;

/// Settings for opening the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// A handle on the open database. Cheap to clone; all clones share one file.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<handle::Handle>,
    writer: Writer,
    path: PathBuf,
    keys: keys::KeyCache,
    /// Woken when the queue may hold due work.
    queue_changed: tokio::sync::Notify,
    /// A channel was made, changed or removed: the sync scheduler looks again.
    channels_changed: tokio::sync::Notify,
    /// `--keep-downloaded`: versions of a name with files, at most (0: all).
    keep_downloaded: std::sync::atomic::AtomicUsize,
    /// Bumped whenever an operation finishes.
    finished: tokio::sync::watch::Sender<u64>,
    /// Every committed change of an operation or a package, for `/v1/events`.
    changes: events::Feed,
    /// Woken when a change journals files to remove.
    removals_added: tokio::sync::Notify,
    /// Bumped when a cancel is asked of a running operation, so its worker
    /// can stop file work that saves no progress (an unpack).
    cancels: tokio::sync::watch::Sender<u64>,
}

impl Store {
    fn from_database(
        db: Database,
        path: PathBuf,
        opener: Option<Box<dyn Fn() -> Result<Database, String> + Send + Sync>>,
    ) -> Result<Store, OpenError> {
        schema::init_or_check_schema(&db, &path)?;
        let db = Arc::new(handle::Handle::new(db, opener));
        let writer = Writer::start(db.clone()).map_err(|source| OpenError::Io {
            path: path.clone(),
            source,
        })?;
        let store = Store {
            inner: Arc::new(Inner {
                db,
                writer,
                path: path.clone(),
                keys: keys::KeyCache::default(),
                queue_changed: tokio::sync::Notify::new(),
                channels_changed: tokio::sync::Notify::new(),
                keep_downloaded: std::sync::atomic::AtomicUsize::new(DEFAULT_KEEP_DOWNLOADED),
                finished: tokio::sync::watch::Sender::new(0),
                changes: events::Feed::default(),
                removals_added: tokio::sync::Notify::new(),
                cancels: tokio::sync::watch::Sender::new(0),
            }),
        };
        store.load_key_cache().map_err(|e| OpenError::Other {
            path,
            reason: e.to_string(),
        })?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Finishes queued writes and stops the writer. Reads keep working on the
    /// clones still alive; the file lock goes with the last clone.
    pub fn close(&self) {
        self.inner.writer.shutdown();
    }

    /// Runs a read in a read transaction. The storage library panics on
    /// some damaged pages: the panic is caught here, and it or a corrupt
    /// record marks the file damaged (writes stop; readiness says why).
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.get()?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let rtx = db.begin_read()?;
            f(&rtx)
        }));
        let damage = &self.inner.db.damage;
        match outcome {
            Ok(Err(StoreError::Failed(Failure::Corrupt(reason)))) => {
                damage.mark(&reason);
                Err(StoreError::Failed(Failure::Damaged(reason)))
            }
            Ok(result) => result,
            Err(panic) => {
                let reason = format!(
                    "a read failed inside the storage library: {}",
                    panic_message(&*panic)
                );
                damage.mark(&reason);
                Err(StoreError::Failed(Failure::Damaged(reason)))
            }
        }
    }

    /// Damage met in the file so far, if any.
    pub fn damage(&self) -> Damage {
        self.inner.db.damage.clone()
    }

    /// A write of rows nobody subscribes to (keys, audit, journal).
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    /// A write of operations or packages: what the job records in its
    /// `Written` (the row writers do it) is published here, once, after
    /// the commit. A job run again (another job of its batch failed)
    /// starts with an empty record.
    async fn write_changes<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&redb::WriteTransaction, &mut events::Written) -> Result<T, StoreError>
            + Send
            + 'static,
    {
        let (value, written) = self
            .inner
            .writer
            .write(move |wtx| {
                let mut written = events::Written::new();
                let value = f(wtx, &mut written)?;
                Ok((value, written))
            })
            .await?;
        for kind in &written.started {
            crate::metrics::global().operations_started.inc(*kind);
            self.inner.queue_changed.notify_one();
        }
        if written.channel_free {
            self.inner.channels_changed.notify_one();
        }
        self.inner.changes.publish(written);
        Ok(value)
    }

    /// How many versions of a name keep their files after an activation
    /// (`--keep-downloaded`; 0 keeps all). A reload may change it.
    pub fn set_keep_downloaded(&self, keep: usize) {
        self.inner
            .keep_downloaded
            .store(keep, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn keep_downloaded(&self) -> usize {
        self.inner
            .keep_downloaded
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Names of the tables in the file, for checks that nothing is forgotten.
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        use redb::TableHandle;
        self.read(|rtx| Ok(rtx.list_tables()?.map(|t| t.name().to_string()).collect()))
    }
}
