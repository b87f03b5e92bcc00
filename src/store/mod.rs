//! Storage: the only module that knows redb and the byte encoding.
//!
//! One redb file holds everything. Reads open a read transaction on the
//! calling task (MVCC: they never wait for the writer); writes go to the
//! single writer thread (`writer.rs`), which batches them into transactions.
//! The `meta` table carries the schema version, checked before anything is
//! written, so a file from a newer packd is refused untouched.

mod audit;
mod backup;
mod check;
mod codec;
pub mod events;
mod handle;
mod identity;
mod keys;
mod operations;
mod packages;
mod removals;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase};

pub use self::audit::AuditEntry;
pub use self::check::{CheckError, CheckReport, check_file};
pub use self::handle::Damage;
pub use self::keys::{AuthFailure, Bootstrap, KeyPatch, NewKey, Principal};
pub use self::operations::{AndThen, Claim, Continue, Idempotency, ListOperations};
pub use self::packages::{ListPackages, NewPackage};
use self::writer::Writer;

/// The layout version this binary writes and understands.
pub const SCHEMA_VERSION: u64 = 5;

/// Default size of redb's page cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// One page of a listing, in id (creation) order.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The id to continue after, when more items exist.
    pub next_after: Option<uuid::Uuid>,
}

/// Cuts a list read with `limit + 1` items down to a page, remembering where
/// the next page starts.
pub(crate) fn paginate<T>(
    mut items: Vec<T>,
    limit: usize,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Page<T> {
    let next_after = if items.len() > limit {
        items.truncate(limit);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next_after }
}

/// The first id after a cursor (`None` when the cursor was the largest id).
pub(crate) fn start_after(after: Option<uuid::Uuid>) -> Option<u128> {
    match after {
        None => Some(0),
        Some(id) => id.as_u128().checked_add(1),
    }
}

/// One page of a table of records keyed by id, in id order, after `after`.
pub(crate) fn page_of<T>(
    table: &impl redb::ReadableTable<u128, &'static [u8]>,
    after: Option<uuid::Uuid>,
    limit: usize,
    decode: impl Fn(u128, &[u8]) -> Result<T, StoreError>,
    id: impl Fn(&T) -> uuid::Uuid,
) -> Result<Page<T>, StoreError> {
    let mut items = Vec::with_capacity(limit + 1);
    if let Some(start) = start_after(after) {
        for row in table.range(start..)? {
            let (k, v) = row?;
            items.push(decode(k.value(), v.value())?);
            if items.len() > limit {
                break;
            }
        }
    }
    Ok(paginate(items, limit, id))
}

/// A request's precondition on the revision it last saw (`If-Match`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    /// `If-Match: *`: the resource must exist.
    Exists,
    /// `If-Match: "3", "4"`: the current revision must be one of these.
    RevisionIn(Vec<u64>),
}

impl Precondition {
    fn check(&self, current: u64) -> Result<(), StoreError> {
        match self {
            Precondition::RevisionIn(revs) if !revs.contains(&current) => {
                Err(StoreError::Refused(Refusal::PreconditionFailed { current }))
            }
            _ => Ok(()),
        }
    }
}

/// Why a store call did not do what was asked: a rule of the data refused
/// it (the caller's request is at fault, and repeating it will not help), or
/// the storage failed (nothing about the request; some failures pass).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// A rule of the data that refused a change.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("not found")]
    NotFound,
    #[error("a package named {name:?} with version {version:?} already exists ({existing})")]
    Duplicate {
        name: String,
        version: String,
        existing: uuid::Uuid,
    },
    #[error("the current revision is {current}")]
    PreconditionFailed { current: u64 },
    #[error("this is the last active admin key that never expires; create another admin key first")]
    LastAdmin,
    #[error("{0}")]
    Conflict(String),
    #[error("the Idempotency-Key was already used for a different call")]
    IdempotencyMismatch,
    #[error("{kind} needs a package with status {needed}; this one is {actual}")]
    InvalidTransition {
        kind: crate::domain::package::OperationKind,
        needed: crate::domain::package::Status,
        actual: crate::domain::package::Status,
    },
    #[error(
        "the package is active (in use); deactivate it first, or activate another version of its name"
    )]
    Active,
    /// Link changes of one name run one at a time: `active/<name>` has one
    /// writer.
    #[error("operation {operation_id} is activating or deactivating another version of this name")]
    NameBusy { operation_id: uuid::Uuid },
    #[error("the operation has already finished ({0})")]
    AlreadyFinished(crate::domain::operation::OperationState),
    #[error("operation {operation_id} is in flight for this package")]
    OperationInProgress { operation_id: uuid::Uuid },
}

/// A failure of the storage itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The storage could not take a write (disk full, I/O error): retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Damage was met in the file earlier: writes are refused for good.
    #[error("the database file is damaged ({0}); writes are refused")]
    Damaged(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("internal store error: {0}")]
    Internal(String),
}

/// A file operation of the store's own (a backup's copy, a rename) that
/// failed: the storage, not the request.
impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Failed(Failure::Internal(e.to_string()))
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(io) => StoreError::Failed(Failure::Unavailable(io.to_string())),
            redb::Error::PreviousIo => StoreError::Failed(Failure::Unavailable(
                "an earlier write failed; retrying".into(),
            )),
            redb::Error::Corrupted(m) => StoreError::Failed(Failure::Corrupt(m)),
            redb::Error::DatabaseClosed => StoreError::Failed(Failure::Closed),
            other => StoreError::Failed(Failure::Internal(other.to_string())),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                redb::Error::from(e).into()
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

/// Why the file could not be opened. Each message is meant for an operator.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the database file {0} is in use by another process (is another packd running on it?)")]
    InUse(PathBuf),
    #[error(
        "the database file {path} has schema version {found}, newer than this packd supports \
         ({supported}); upgrade packd. The file was not changed."
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error(
        "{path} is not a packd database ({reason}); refusing to touch it. \
         Point --db at a packd file or at a path that does not exist yet."
    )]
    Foreign { path: PathBuf, reason: String },
    #[error("cannot open the database file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database file {path} is damaged ({reason}); packd left it as it is. \
         Restore the last backup (README: Backup and restore), or move the file \
         away to start empty."
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the database file {0} is empty (0 bytes), so it is not a packd database: a restore \
         or copy may have been cut short. packd left it as it is. Restore the backup again, \
         or remove the file to start with an empty database."
    )]
    Empty(PathBuf),
    #[error("cannot open the database file {path}: {reason}")]
    Other { path: PathBuf, reason: String },
}

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
    /// Bumped whenever an operation finishes.
    finished: tokio::sync::watch::Sender<u64>,
    /// Every committed change of an operation or a package, for `/v1/events`.
    changes: events::Changes,
    /// Woken when a change journals files to remove.
    removals_added: tokio::sync::Notify,
    /// Bumped when a cancel is asked of a running operation, so its worker
    /// can stop file work that saves no progress (an unpack).
    cancels: tokio::sync::watch::Sender<u64>,
}

impl Store {
    /// Opens the file at `path`, creating it (with every table and the schema
    /// version) when it does not exist or is empty.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, OpenError> {
        // redb panics on some damaged pages rather than returning an error.
        // Opening reads the pages packd needs first (schema, keys), so a
        // damaged file is caught here and reported, not left to crash the
        // process; the panic's own report is silenced meanwhile.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let db = open_database(path, options, Integrity::Check)?;
            let (again, with) = (path.to_path_buf(), options.clone());
            // A reopen (after a failed write) trusts the pages checked at
            // start: checking them again would stall reads for as long.
            let opener = Box::new(move || {
                open_database(&again, &with, Integrity::Trust).map_err(|e| e.to_string())
            });
            let store = Self::from_database(db, path.to_path_buf(), Some(opener))?;
            make_private(path);
            Ok(store)
        }));
        std::panic::set_hook(hook);
        opened.unwrap_or_else(|panic| {
            Err(OpenError::Corrupt {
                path: path.to_path_buf(),
                reason: panic_message(&*panic),
            })
        })
    }

    /// A store that lives in memory only, for building the OpenAPI description
    /// and for tests.
    pub fn in_memory() -> Result<Store, OpenError> {
        let path = PathBuf::from(":memory:");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| OpenError::Other {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Self::from_database(db, path, None)
    }

    fn from_database(
        db: Database,
        path: PathBuf,
        opener: Option<Box<dyn Fn() -> Result<Database, String> + Send + Sync>>,
    ) -> Result<Store, OpenError> {
        init_or_check_schema(&db, &path)?;
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
                finished: tokio::sync::watch::Sender::new(0),
                changes: events::Changes::default(),
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

    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }

    /// Names of the tables in the file, for checks that nothing is forgotten.
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        use redb::TableHandle;
        self.read(|rtx| Ok(rtx.list_tables()?.map(|t| t.name().to_string()).collect()))
    }
}

/// The message a panic carried, for an operator.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "an unreadable page".into())
}

/// Whether an open verifies every page of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Integrity {
    Check,
    Trust,
}

fn open_database(
    path: &Path,
    options: &StoreOptions,
    integrity: Integrity,
) -> Result<Database, OpenError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        return Err(OpenError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the directory {} does not exist", parent.display()),
            ),
        });
    }
    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_bytes);

    // Opening for writing marks the file in its header, so a file this binary
    // must refuse is first looked at read-only, which changes nothing. A file
    // left by a crash cannot be opened read-only until repaired; it is then
    // checked right after the writable open, before any packd write.
    let exists = match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => return Err(OpenError::Empty(path.to_path_buf())),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(OpenError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !exists {
        crate::durable::create_private_file(path).map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    } else {
        match builder.open_read_only(path) {
            Ok(ro) => {
                let rtx = ro.begin_read().map_err(|e| other(path, &e))?;
                check_schema(read_schema(&rtx, path)?, path)?;
                // Only a file known to be packd's has its mode changed: a
                // wrong --db must be left exactly as it was.
                make_private(path);
            }
            Err(redb::DatabaseError::RepairAborted) => {}
            Err(e) => return Err(classify_open_error(e, path)),
        }
    }
    // Every page's checksum is verified at each open (about a second for a
    // million packages; README: a damaged file): damage in the file is
    // refused at start with a clear message rather than met by a request.
    builder.set_check_integrity_on_open(integrity == Integrity::Check);
    builder.create(path).map_err(|e| match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => OpenError::Corrupt {
            path: path.to_path_buf(),
            reason,
        },
        other => classify_open_error(other, path),
    })
}

/// Takes group and other permissions off a database file that has them
/// (files made before packd created them owner-only). Best effort: a file
/// the process does not own keeps its mode, and a warning says so.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700)) {
                Ok(()) => {
                    tracing::info!(db = %path.display(), "the database file is now owner-only (was {mode:o})")
                }
                Err(e) => {
                    tracing::warn!(db = %path.display(), error = %e, "the database file can be read by others (mode {mode:o}) and cannot be changed")
                }
            }
        }
    }
}

/// Checks, without changing it, that `path` is a complete packd database this
/// binary can open (a downloaded backup, say); returns its schema version.
pub fn verify_file(path: &Path) -> Result<u64, OpenError> {
    let db = Database::builder()
        .open_read_only(path)
        .map_err(|e| classify_open_error(e, path))?;
    let rtx = db.begin_read().map_err(|e| other(path, &e))?;
    match check_schema(read_schema(&rtx, path)?, path)? {
        Schema::Version(v) => Ok(v),
        _ => Err(OpenError::Foreign {
            path: path.to_path_buf(),
            reason: "an empty database".into(),
        }),
    }
}

fn other(path: &Path, e: &dyn std::fmt::Display) -> OpenError {
    OpenError::Other {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn classify_open_error(e: redb::DatabaseError, path: &Path) -> OpenError {
    let path = path.to_path_buf();
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse(path),
        redb::DatabaseError::Storage(redb::StorageError::Io(source))
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            OpenError::Foreign {
                path,
                reason: source.to_string(),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(source)) => {
            OpenError::Io { path, source }
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => OpenError::Foreign {
            path,
            reason: format!("not a readable redb file: {reason}"),
        },
        other => OpenError::Other {
            path,
            reason: other.to_string(),
        },
    }
}

/// What the `meta` table says about a file.
enum Schema {
    /// No tables at all: a new file.
    Empty,
    Version(u64),
    /// Tables, but not packd's.
    Foreign(Vec<String>),
}

fn read_schema(rtx: &ReadTransaction, path: &Path) -> Result<Schema, OpenError> {
    use redb::TableHandle;
    let names: Vec<String> = rtx
        .list_tables()
        .map_err(|e| other(path, &e))?
        .map(|t| t.name().to_string())
        .collect();
    if names.is_empty() {
        return Ok(Schema::Empty);
    }
    if !names.iter().any(|n| n == "meta") {
        return Ok(Schema::Foreign(names));
    }
    let meta = rtx.open_table(tables::META).map_err(|e| other(path, &e))?;
    let version = meta
        .get(tables::SCHEMA_VERSION_KEY)
        .map_err(|e| other(path, &e))?
        .map(|v| v.value());
    Ok(version.map_or(Schema::Foreign(names), Schema::Version))
}

fn check_schema(schema: Schema, path: &Path) -> Result<Schema, OpenError> {
    match schema {
        Schema::Version(v) if v > SCHEMA_VERSION => Err(OpenError::NewerSchema {
            path: path.to_path_buf(),
            found: v,
            supported: SCHEMA_VERSION,
        }),
        Schema::Foreign(names) => Err(OpenError::Foreign {
            path: path.to_path_buf(),
            reason: format!(
                "a redb file without packd's schema version (tables: {})",
                names.join(", ")
            ),
        }),
        ok => Ok(ok),
    }
}

/// A new file gets its tables and version in one transaction; an existing one
/// must carry a version this binary understands.
fn init_or_check_schema(db: &Database, path: &Path) -> Result<(), OpenError> {
    let rtx = db.begin_read().map_err(|e| other(path, &e))?;
    let schema = check_schema(read_schema(&rtx, path)?, path)?;
    drop(rtx);

    let mut wtx = db.begin_write().map_err(|e| other(path, &e))?;
    wtx.set_quick_repair(true);
    // Creating every table (a no-op for those that exist) keeps readers free
    // of "no such table" whatever version wrote the file.
    tables::create_all(&wtx).map_err(|e| other(path, &e))?;
    let migrate_from = match schema {
        Schema::Version(v) if v < SCHEMA_VERSION => Some(v),
        _ => None,
    };
    // Every database has an identity (made here for a new file and for one
    // older than schema 5).
    identity::ensure(&wtx).map_err(|e| other(path, &e))?;
    if let Some(from) = migrate_from {
        migrate(&wtx, from).map_err(|e| other(path, &e))?;
        tracing::info!(from, to = SCHEMA_VERSION, db = %path.display(), "migrated the database");
    }
    if matches!(schema, Schema::Empty) || migrate_from.is_some() {
        wtx.open_table(tables::META)
            .map_err(|e| other(path, &e))?
            .insert(tables::SCHEMA_VERSION_KEY, SCHEMA_VERSION)
            .map_err(|e| other(path, &e))?;
    }
    // The migration and the new version commit together, or neither does.
    wtx.commit().map_err(|e| other(path, &e))?;
    Ok(())
}

/// Rewrites every record of a table keyed by id with `rewrite` (old bytes to
/// new), in slices so a large table is never held in memory at once.
pub(crate) fn rewrite_records(
    wtx: &redb::WriteTransaction,
    table: redb::TableDefinition<u128, &[u8]>,
    mut rewrite: impl FnMut(u128, &[u8]) -> Result<Vec<u8>, StoreError>,
) -> Result<usize, StoreError> {
    use redb::ReadableTable;
    const SLICE: usize = 10_000;
    let mut table = wtx.open_table(table)?;
    let mut rewritten = 0;
    let mut start = Some(0u128);
    while let Some(from) = start {
        let rows: Vec<(u128, Vec<u8>)> = table
            .range(from..)?
            .take(SLICE)
            .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        start = match rows.last() {
            Some((id, _)) if rows.len() == SLICE => id.checked_add(1),
            _ => None,
        };
        for (id, bytes) in &rows {
            table.insert(*id, rewrite(*id, bytes)?.as_slice())?;
        }
        rewritten += rows.len();
    }
    Ok(rewritten)
}

/// Brings a file from schema `from` to `SCHEMA_VERSION`, one step at a time.
fn migrate(wtx: &redb::WriteTransaction, from: u64) -> Result<(), StoreError> {
    if from < 2 {
        // 1 -> 2: keys gained a rate limit of their own.
        keys::migrate_keys_to_v2(wtx)?;
    }
    if from < 3 {
        // 2 -> 3: packages gained a source, operations a transfer checkpoint.
        packages::migrate_packages_to_v2(wtx)?;
        operations::migrate_operations_to_v2(wtx)?;
    }
    if from < 4 {
        // 3 -> 4: one version of a name is active (records unchanged).
        let demoted =
            packages::migrate_to_one_active_per_name(wtx, crate::domain::Timestamp::now())?;
        if demoted > 0 {
            tracing::warn!(
                packages = demoted,
                "several versions of a name were active; the one changed last stays active, the others are now downloaded"
            );
        }
    }
    // 4 -> 5: the removal journal and the identity (tables made by
    // `create_all`, the identity by `identity::ensure`); no record changes.
    Ok(())
}

/// For migration tests: files as an older packd left them.
#[cfg(test)]
pub(crate) mod old_files {
    use std::path::Path;

    use redb::ReadableDatabase;

    use super::tables;

    /// Writes a file of schema `version` with every table and what `fill`
    /// puts in it.
    pub(crate) fn write(path: &Path, version: u64, fill: impl FnOnce(&redb::WriteTransaction)) {
        let db = redb::Database::create(path).unwrap();
        let wtx = db.begin_write().unwrap();
        tables::create_all(&wtx).unwrap();
        wtx.open_table(tables::META)
            .unwrap()
            .insert(tables::SCHEMA_VERSION_KEY, version)
            .unwrap();
        fill(&wtx);
        wtx.commit().unwrap();
    }

    /// The schema version and one raw record of `table`, read without packd.
    pub(crate) fn read(
        path: &Path,
        table: redb::TableDefinition<u128, &[u8]>,
        id: u128,
    ) -> (u64, Vec<u8>) {
        let db = redb::Database::builder().open_read_only(path).unwrap();
        let rtx = db.begin_read().unwrap();
        let version = rtx
            .open_table(tables::META)
            .unwrap()
            .get(tables::SCHEMA_VERSION_KEY)
            .unwrap()
            .unwrap()
            .value();
        let row = rtx.open_table(table).unwrap();
        let bytes = row.get(id).unwrap().unwrap().value().to_vec();
        (version, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_file_gets_every_table_and_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.redb"), &StoreOptions::default()).unwrap();
        let mut names = store.table_names().unwrap();
        names.sort();
        let mut expected: Vec<String> = tables::all_names().iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(names, expected);
        store.close();
    }

    #[test]
    fn a_schema_4_file_gets_the_journal_and_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        old_files::write(&path, 4, |wtx| {
            // Schema 4 had neither table.
            assert!(wtx.delete_table(tables::REMOVALS).unwrap());
            assert!(wtx.delete_table(tables::IDENTITY).unwrap());
        });
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let identity = store.identity().unwrap();
        assert_eq!(identity.data_dir, None);
        assert!(store.pending_removals(1).unwrap().is_empty());
        store.close();
        drop(store);
        let db = Database::builder().open_read_only(&path).unwrap();
        let rtx = db.begin_read().unwrap();
        let version = rtx
            .open_table(tables::META)
            .unwrap()
            .get(tables::SCHEMA_VERSION_KEY)
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(version, 5);
        drop(rtx);
        drop(db);
        // The identity is made once: a second open keeps it.
        let again = Store::open(&path, &StoreOptions::default()).unwrap();
        assert_eq!(again.identity().unwrap(), identity);
        again.close();
    }

    #[test]
    fn newer_schema_is_refused_and_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        {
            let db = Database::create(&path).unwrap();
            let wtx = db.begin_write().unwrap();
            wtx.open_table(tables::META)
                .unwrap()
                .insert(tables::SCHEMA_VERSION_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            wtx.commit().unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path, &StoreOptions::default())
            .err()
            .expect("must refuse");
        assert!(
            matches!(err, OpenError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade packd"));
        assert!(std::fs::read(&path).unwrap() == before, "file changed");
    }

    #[test]
    fn foreign_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            b"these are not the bytes you are looking for\n".repeat(200),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::read(&text).unwrap();
        let err = Store::open(&text, &StoreOptions::default())
            .err()
            .expect("must refuse");
        assert!(matches!(err, OpenError::Foreign { .. }), "{err}");
        assert!(std::fs::read(&text).unwrap() == before, "file changed");
        let mode = std::fs::metadata(&text).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o644,
            "the mode of a file that is not packd's changed"
        );

        let other_redb = dir.path().join("other.redb");
        {
            let db = Database::create(&other_redb).unwrap();
            let wtx = db.begin_write().unwrap();
            wtx.open_table(redb::TableDefinition::<u64, u64>::new("theirs"))
                .unwrap()
                .insert(1, 2)
                .unwrap();
            wtx.commit().unwrap();
        }
        let err = Store::open(&other_redb, &StoreOptions::default())
            .err()
            .expect("must refuse");
        assert!(matches!(err, OpenError::Foreign { .. }), "{err}");
    }

    #[test]
    fn second_open_reports_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let err = Store::open(&path, &StoreOptions::default())
            .err()
            .expect("must refuse");
        assert!(matches!(err, OpenError::InUse(_)), "{err}");
        assert!(err.to_string().contains("in use"));
        store.close();
    }
}
