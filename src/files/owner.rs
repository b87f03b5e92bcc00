//! Owning a data directory: an exclusive lock on `<data-dir>/.lock`, held
//! for the process's whole life and taken before anything in the directory
//! is read or changed; the owner record (`.owner`) that names the database
//! the directory belongs to (`domain::ownership` judges the pair); and the
//! tree packd keeps under it, made with packd's modes, or checked: a link
//! standing for one of its directories is refused (packd would otherwise
//! follow it and remove files wherever it leads), and an existing
//! directory's mode is never loosened.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Layout;
use super::layout::{DIRS, Reach};
use super::unpack::Modes;
use crate::domain::ownership::DirOwner;

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "the data directory {dir} is in use by another packd{} (its lock, {dir}/.lock, is held); \
         give each packd its own --data-dir",
        .holder.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse {
        dir: PathBuf,
        holder: Option<String>,
    },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error(
        "{0} is a symbolic link; packd does not follow links for its own directories (it would \
         remove files wherever the link leads). Point --data-dir at the real directory instead"
    )]
    Link(PathBuf),
    #[error(
        "the owner record {0} cannot be read ({1}); move it away, or start with \
         --adopt-data-dir to write a new one"
    )]
    BadRecord(PathBuf, String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> OwnerError + '_ {
    move |source| OwnerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A data directory this process owns: its lock is held for as long as
/// this value lives.
#[derive(Debug)]
pub struct Owned {
    layout: Layout,
    _lock: File,
    /// What the owner record said when the lock was taken.
    pub owner: Option<DirOwner>,
}

/// The owner record's stored form. Versioned like every record packd keeps.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum OwnerRecord {
    #[serde(rename = "1")]
    V1 {
        data_dir_id: Uuid,
        database_id: Uuid,
        database_path: String,
    },
}

/// Takes the data directory at `root`: made if missing (with `modes`),
/// locked, its owner record read. Nothing else in it is touched.
pub fn take(root: &Path, modes: Modes) -> Result<Owned, OwnerError> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(OwnerError::NotADirectory(root.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Only the directory itself: a missing parent is a typo more
            // often than a wish.
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty())
                && !parent.is_dir()
            {
                return Err(io_at(root)(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the directory {} does not exist", parent.display()),
                )));
            }
            std::fs::create_dir(root).map_err(io_at(root))?;
            // Made here: its mode is packd's to give.
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(modes.dir))
                .map_err(io_at(root))?;
        }
        Err(e) => return Err(io_at(root)(e)),
    }
    // Absolute, so the paths packd shows and hands to hooks are.
    let root = std::fs::canonicalize(root).map_err(io_at(root))?;
    let layout = Layout::new(&root);
    let lock_path = layout.lock();
    let mut lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path)
        .map_err(io_at(&lock_path))?;
    // SAFETY: flock(2) on a descriptor `lock` keeps open; the lock goes
    // with the descriptor, at exit or kill -9 alike.
    let locked = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if locked != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(OwnerError::InUse {
                dir: root,
                holder: (!holder.is_empty() && holder.len() < 32).then(|| holder.to_string()),
            });
        }
        return Err(io_at(&lock_path)(err));
    }
    // Who holds it, for the message another packd prints.
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| write!(lock, "{}", std::process::id()))
        .map_err(io_at(&lock_path))?;
    let owner = read_owner(&layout.owner())?;
    Ok(Owned {
        layout,
        _lock: lock,
        owner,
    })
}

fn read_owner(path: &Path) -> Result<Option<DirOwner>, OwnerError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    let record: OwnerRecord = serde_json::from_slice(&bytes)
        .map_err(|e| OwnerError::BadRecord(path.to_path_buf(), e.to_string()))?;
    let OwnerRecord::V1 {
        data_dir_id,
        database_id,
        database_path,
    } = record;
    Ok(Some(DirOwner {
        data_dir_id,
        database_id,
        database_path,
    }))
}

impl Owned {
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Writes the owner record (beside, synced, renamed over).
    pub fn record(&mut self, owner: &DirOwner) -> Result<(), OwnerError> {
        let path = self.layout.owner();
        let record = OwnerRecord::V1 {
            data_dir_id: owner.data_dir_id,
            database_id: owner.database_id,
            database_path: owner.database_path.clone(),
        };
        let text =
            serde_json::to_vec_pretty(&record).map_err(|e| io_at(&path)(io::Error::other(e)))?;
        crate::durable::replace_file(&path, |tmp| -> io::Result<()> {
            let mut f = crate::durable::create_private_file(tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .map_err(io_at(&path))?;
        self.owner = Some(owner.clone());
        Ok(())
    }

    /// Makes packd's directories under the root, or checks those that are
    /// there: a link is refused, a mode is only ever tightened (group and
    /// other write taken off; packd's private directories closed to
    /// others). Returns warnings for the operator (a package directory
    /// that services cannot read, say).
    pub fn prepare(&self, modes: Modes) -> Result<Vec<String>, OwnerError> {
        let mut warnings = Vec::new();
        for (dir, reach) in DIRS {
            let path = self.layout.root().join(dir);
            let wanted = match reach {
                Reach::Owner => 0o700,
                Reach::Services => modes.dir,
            };
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => return Err(OwnerError::Link(path)),
                Ok(m) if !m.is_dir() => return Err(OwnerError::NotADirectory(path)),
                Ok(m) => {
                    let mode = m.permissions().mode() & 0o7777;
                    let tightened = mode & wanted & 0o777 & !0o022;
                    if tightened != mode & 0o777 || mode & 0o7000 != 0 {
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(tightened))
                            .map_err(io_at(&path))?;
                        tracing::info!(dir = %path.display(), from = format!("{mode:o}"), to = format!("{tightened:o}"), "tightened the mode of a data directory");
                    }
                    if reach == Reach::Services
                        && tightened & 0o005 != 0o005
                        && modes == Modes::PUBLIC
                    {
                        warnings.push(format!(
                            "{} has mode {tightened:o}: other users (the services that use packages) \
                             cannot read it; packd does not loosen a mode it did not set \
                             (chmod 755 it if they should)",
                            path.display()
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir(&path).map_err(io_at(&path))?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))
                        .map_err(io_at(&path))?;
                }
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn one_owner_at_a_time_and_the_record_survives() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let mut first = take(&root, Modes::PUBLIC).unwrap();
        assert_eq!(mode(&root), 0o755, "made here: packd's mode");
        assert_eq!(first.owner, None);
        let err = take(&root, Modes::PUBLIC).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, OwnerError::InUse { .. }), "{message}");
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        let owner = DirOwner {
            data_dir_id: Uuid::now_v7(),
            database_id: Uuid::now_v7(),
            database_path: "/var/lib/packd/packd.redb".into(),
        };
        first.record(&owner).unwrap();
        assert_eq!(mode(&root.join(".owner")), 0o600);
        drop(first);
        let again = take(&root, Modes::PUBLIC).unwrap();
        assert_eq!(again.owner, Some(owner));
    }

    #[test]
    fn an_existing_root_keeps_its_mode_and_a_bad_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        for kept in [0o700, 0o1777] {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(kept)).unwrap();
            let owned = take(&root, Modes::PUBLIC).unwrap();
            owned.prepare(Modes::PUBLIC).unwrap();
            assert_eq!(mode(&root), kept, "the root's mode is the operator's");
        }
        std::fs::write(root.join(".owner"), "not json").unwrap();
        let err = take(&root, Modes::PUBLIC).unwrap_err();
        assert!(matches!(err, OwnerError::BadRecord(..)), "{err}");
    }

    #[test]
    fn the_tree_is_made_checked_and_never_loosened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let owned = take(&root, Modes::PUBLIC).unwrap();
        owned.prepare(Modes::PUBLIC).unwrap();
        for (sub, want) in [
            ("artifacts", 0o700),
            ("artifacts/sha256", 0o700),
            ("partial", 0o700),
            ("packages", 0o755),
            ("active", 0o755),
            (".hooks", 0o700),
        ] {
            assert_eq!(mode(&root.join(sub)), want, "{sub}");
        }
        // A tree someone opened up is tightened; a closed one stays closed
        // (with a warning), and nothing is loosened.
        std::fs::set_permissions(root.join("partial"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        std::fs::set_permissions(root.join("active"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::set_permissions(
            root.join("packages"),
            std::fs::Permissions::from_mode(0o2777),
        )
        .unwrap();
        let warnings = owned.prepare(Modes::PUBLIC).unwrap();
        assert_eq!(mode(&root.join("partial")), 0o700);
        assert_eq!(mode(&root.join("active")), 0o700);
        assert_eq!(mode(&root.join("packages")), 0o755);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("active"), "{warnings:?}");
        // A link standing for one of packd's directories is refused.
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("precious"), "x").unwrap();
        std::fs::remove_dir(root.join("packages")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("packages")).unwrap();
        let err = owned.prepare(Modes::PUBLIC).unwrap_err();
        assert!(matches!(err, OwnerError::Link(_)), "{err}");
        assert!(elsewhere.join("precious").exists());
    }
}
