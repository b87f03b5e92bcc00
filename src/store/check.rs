//! `packd check`: a full check of a database file no server holds, with a
//! verdict an operator (or a script, by the exit status) can act on.
//!
//! redb verifies page checksums only in its integrity check, and that check
//! commits (it rebuilds the allocator state), so it runs on a copy made
//! beside the file: the file itself is only read. The copy needs as much
//! free space as the file and is removed afterwards, whatever the verdict.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTableMetadata};

use super::{OpenError, panic_message, tables, verify_file};
use crate::durable::temporary_path;

/// What a check found in a file that passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub schema_version: u64,
    pub packages: u64,
    pub keys: u64,
    pub operations: u64,
    pub audit_entries: u64,
}

/// Why a file did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file is damaged: a page fails its checksum or cannot be read.
    #[error("{0}")]
    Damaged(String),
    /// The file cannot be checked (missing, in use, not a packd database,
    /// no room for the copy): nothing is said about its pages.
    #[error(transparent)]
    Unusable(#[from] OpenError),
}

/// Removes the copy however the check ends.
struct Copy(PathBuf);

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Checks every page of `path` (checksums, the tree structure) and reads
/// the row counts of the main tables.
pub fn check_file(path: &Path) -> Result<CheckReport, CheckError> {
    // The schema first, read-only: a foreign, newer or held file is
    // reported as such, not as damage.
    // redb panics on some damaged pages, even read-only: that is a verdict
    // too, not a crash (the panic's own report is silenced meanwhile).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let verified = std::panic::catch_unwind(|| verify_file(path));
    std::panic::set_hook(hook);
    let schema_version = verified
        .map_err(|panic| CheckError::Damaged(panic_message(&*panic)))?
        .map_err(|e| match e {
            OpenError::Corrupt { reason, .. } => CheckError::Damaged(reason),
            other => CheckError::Unusable(other),
        })?;
    let copy = Copy(temporary_path(path));
    let io = |source| OpenError::Io {
        path: copy.0.clone(),
        source,
    };
    // Copied by hand: `fs::copy` would give the copy the file's own mode.
    let mut to = crate::durable::create_private_file(&copy.0).map_err(io)?;
    let mut from = std::fs::File::open(path).map_err(io)?;
    std::io::copy(&mut from, &mut to).map_err(io)?;
    drop(to);
    let checked = std::panic::catch_unwind(|| -> Result<CheckReport, String> {
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(&copy.0)
            .map_err(|e| e.to_string())?;
        count_rows(&db, schema_version).map_err(|e| e.to_string())
    });
    match checked {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(reason)) => Err(CheckError::Damaged(reason)),
        Err(panic) => Err(CheckError::Damaged(panic_message(&*panic))),
    }
}

fn count_rows(db: &Database, schema_version: u64) -> Result<CheckReport, redb::Error> {
    let rtx = db.begin_read()?;
    Ok(CheckReport {
        schema_version,
        packages: rtx.open_table(tables::PACKAGES)?.len()?,
        keys: rtx.open_table(tables::KEYS)?.len()?,
        operations: rtx.open_table(tables::OPERATIONS)?.len()?,
        audit_entries: rtx.open_table(tables::AUDIT)?.len()?,
    })
}
