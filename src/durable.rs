//! Making file changes outlive a power cut: syncing a directory after a
//! rename, replacing a file by writing beside it and renaming, and files
//! made owner-only from their first byte. Shared by the store (its file,
//! backups) and the data directory, so neither imports the other.

use std::path::{Path, PathBuf};

/// Replaces `out` with what `write` puts in a new owner-only file beside
/// it (which `write` must leave synced), then renames it into place and
/// syncs the directory: a crash leaves either the old file or the whole new
/// one, never half of it. On any error the new file is removed.
pub fn replace_file<T, E>(out: &Path, write: impl FnOnce(&Path) -> Result<T, E>) -> Result<T, E>
where
    E: From<std::io::Error>,
{
    let tmp = temporary_path(out);
    // A leftover of an earlier attempt of this same process id.
    let _ = std::fs::remove_file(&tmp);
    let result = write(&tmp).and_then(|value| {
        std::fs::rename(&tmp, out)?;
        sync_directory(out);
        Ok(value)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.NAME.tmp-PID` beside `out`, so the rename stays on one file system.
pub fn temporary_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Makes a rename in `path`'s directory durable. Best effort: some file
/// systems cannot sync a directory, and the data itself is already synced.
pub fn sync_directory(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(dir);
}

/// Syncs the directory `dir` itself (its entries), best effort.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Creates an empty file that only its owner may read or write (the
/// database and its backups hold key hashes and the whole catalogue).
/// Fails if the file exists.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Refuses a destination whose directory is missing, with a message that
/// says what to do, before any work is done for it.
pub fn check_destination(out: &Path) -> Result<(), String> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "the directory {} does not exist; create it first (mkdir -p {})",
            dir.display(),
            dir.display()
        ))
    }
}
