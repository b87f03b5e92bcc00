//! Opening the database file: refusing what is not a packd database (a
//! wrong `--db`, a newer schema, an empty or damaged file) before anything
//! is written, verifying every page, and an in-memory store for tests and
//! the OpenAPI description.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase};

use super::error::other;
use super::schema::{Schema, check_schema, read_schema};
use super::{OpenError, Store, StoreOptions, panic_message};

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

#[cfg(test)]
mod tests {
    use super::*;

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
