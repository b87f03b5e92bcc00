//! The database handle, replaceable while the process runs.
//!
//! After a write fails (a full disk, an I/O error) redb refuses every later
//! write on the same handle (`PreviousIo`) until the file is opened again;
//! reads keep working meanwhile. The writer therefore reopens the file when
//! writes come in after a failure (at most once a second), so the service
//! recovers by itself once the disk has room, with nothing lost: the failed
//! transaction was never acknowledged, and the file holds the last commit.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use super::Failure;
use super::StoreError;

type Opener = Box<dyn Fn() -> Result<Database, String> + Send + Sync>;

pub(crate) struct Handle {
    db: RwLock<Option<Arc<Database>>>,
    /// How to open the file again; `None` for an in-memory store.
    opener: Option<Opener>,
    pub(crate) damage: Damage,
}

/// Damage met in the file (a page the storage library could not read, a
/// record that does not decode). Set once and never cleared while the
/// process runs: from then on every write is refused, so nothing is added
/// on top of the damage, and readiness says why.
#[derive(Debug, Clone, Default)]
pub struct Damage(Arc<OnceLock<String>>);

impl Damage {
    /// What was found, once anything was.
    pub fn found(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    pub(crate) fn mark(&self, reason: &str) {
        if self.0.set(reason.to_string()).is_ok() {
            crate::metrics::global().database_damaged.set(1);
            tracing::error!(
                reason,
                "the database file is damaged: writes are refused from now on. \
                 Stop packd, run `packd check --db FILE`, and restore the last backup"
            );
        }
    }
}

/// How long a reopen waits for reads in flight on the old handle.
const DRAIN: Duration = Duration::from_secs(1);

impl Handle {
    pub(crate) fn new(db: Database, opener: Option<Opener>) -> Self {
        Self {
            db: RwLock::new(Some(Arc::new(db))),
            opener,
            damage: Damage::default(),
        }
    }

    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Failed(Failure::Unavailable(
                    "the database is being reopened".into(),
                ))
            })
    }

    /// Closes the handle and opens the file again. Reads arriving meanwhile
    /// get `Unavailable` for the few milliseconds this takes.
    pub(crate) fn reopen(&self) -> Result<(), StoreError> {
        let Some(open) = &self.opener else {
            return Err(StoreError::Failed(Failure::Unavailable(
                "an in-memory store cannot be reopened".into(),
            )));
        };
        let old = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut old) = old {
            // The file lock goes with the last clone: wait for reads in flight.
            let deadline = Instant::now() + DRAIN;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still_shared) => {
                        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(still_shared);
                        return Err(StoreError::Failed(Failure::Unavailable(
                            "reads held the database; reopening later".into(),
                        )));
                    }
                }
            }
        }
        let db = open().map_err(|e| StoreError::Failed(Failure::Unavailable(e)))?;
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        tracing::info!("database reopened after a failed write");
        Ok(())
    }
}
