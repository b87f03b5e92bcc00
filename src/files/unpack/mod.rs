//! From an artifact to a package's files: a `.tar`, `.tar.gz`/`.tgz` or
//! `.zip` is unpacked, anything else is one file named after the URL's last
//! path segment. Everything is written into a directory that does not exist
//! yet (the staging directory beside the package's), never outside it:
//!
//! - an entry whose path is absolute, climbs out (`..`) or is deeper than
//!   `MAX_DEPTH` is refused;
//! - symbolic links are made last, once every entry is known, and only if
//!   each resolves inside through every link of the archive (a chain of
//!   links cannot lead out); no entry is written through a link;
//! - devices, FIFOs and other special entries are refused;
//! - what is read is bounded before it is buffered: a tar extension header
//!   (GNU long name, PAX records) holds at most `MAX_PATH_BYTES` /
//!   `MAX_PAX_BYTES`, and counts against the caps; a zip's entries are
//!   counted from its central directory before any is read, which is walked
//!   without holding it in memory;
//! - the bytes written, the entries made and the time taken are capped, and
//!   a cancel stops the work between entries or chunks;
//! - modes are packd's, not the archive's or the umask's: directories and
//!   executables 0755, other files 0644 (0750/0640 with `--private-files`),
//!   never setuid, setgid or sticky, never writable by others.
//!
//! Every error but an I/O one or an interruption means the artifact itself
//! is at fault: a retry cannot mend it.
//!
//! This file has the bounds, entry paths, directories and files;
//! `tar_archive.rs` and `zip_archive.rs` read the two formats, `links.rs`
//! makes the links.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::budget::{Budget, Interrupted};

mod links;
mod tar_archive;
mod zip_archive;

/// The longest path (or link target) an archive entry may have, in bytes:
/// Linux's `PATH_MAX`. A GNU long-name entry past it is refused unread.
pub const MAX_PATH_BYTES: u64 = 4096;
/// The most bytes of PAX records one entry may carry (paths, times,
/// attributes: a few hundred bytes in practice).
pub const MAX_PAX_BYTES: u64 = 64 * 1024;
/// The deepest an entry's path may go, in components.
pub const MAX_DEPTH: usize = 128;
/// Links followed at most while resolving one link's target (the kernel's
/// own limit is 40).
const MAX_LINK_HOPS: usize = 40;
/// Bytes copied between two checks of the budget.
const CHUNK: usize = 256 * 1024;

/// How an artifact is turned into files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    Zip,
    /// Not an archive: one file of this name.
    Single(String),
}

impl Format {
    /// Told by the last segment of the URL's path, as the API documents.
    pub fn of_url(url: &str) -> Format {
        let path = url::Url::parse(url)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        let last = path.rsplit('/').next().unwrap_or("").to_string();
        let lower = last.to_ascii_lowercase();
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Format::TarGz
        } else if lower.ends_with(".tar") {
            Format::Tar
        } else if lower.ends_with(".zip") {
            Format::Zip
        } else if last.is_empty() || last == "." || last == ".." {
            Format::Single("artifact".into())
        } else {
            Format::Single(last)
        }
    }
}

/// Bounds on what one artifact may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes written in all, extension headers included.
    pub max_bytes: u64,
    /// Entries read (extension headers included) and directories made.
    pub max_entries: u64,
}

/// The modes installed files get, whatever the archive and the umask say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub dir: u32,
    pub file: u32,
    pub exec: u32,
}

impl Modes {
    /// Readable by every user (services run as others), written by packd only.
    pub const PUBLIC: Modes = Modes {
        dir: 0o755,
        file: 0o644,
        exec: 0o755,
    };
    /// `--private-files`: the group reads, others nothing.
    pub const PRIVATE: Modes = Modes {
        dir: 0o750,
        file: 0o640,
        exec: 0o750,
    };

    pub fn new(private: bool) -> Self {
        if private { Self::PRIVATE } else { Self::PUBLIC }
    }

    /// A file's mode: executable if the archive gave it any execute bit.
    fn of_file(self, archive_mode: u32) -> u32 {
        if archive_mode & 0o111 != 0 {
            self.exec
        } else {
            self.file
        }
    }
}

/// Why an artifact could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the archive is broken: {0}")]
    Broken(String),
    #[error("the archive entry {0:?} would land outside the package's directory")]
    Escapes(String),
    #[error("the archive entry {entry:?} is a {kind}, which packd does not unpack")]
    Unsupported { entry: String, kind: &'static str },
    #[error("the archive unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("the archive has more than {0} entries")]
    TooManyEntries(u64),
    #[error("the archive entry {0:?} is deeper than {MAX_DEPTH} directories")]
    TooDeep(String),
    #[error("the archive has a {what} of {size} bytes, more than the {limit} packd reads")]
    HeaderTooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("unpacking {0}")]
    Interrupted(#[from] Interrupted),
    #[error("cannot write the package's files: {0}")]
    Io(#[from] io::Error),
}

/// What was unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: u64,
    pub bytes: u64,
}

/// Unpacks `artifact` into `dest`, which must not exist yet. On an error,
/// `dest` may hold part of the files: the caller removes it. The files are
/// durable when it returns (one `syncfs` of their file system, rather than
/// a sync per file).
pub fn unpack(
    artifact: File,
    format: &Format,
    dest: &Path,
    limits: Limits,
    modes: Modes,
    budget: &Budget,
) -> Result<Unpacked, UnpackError> {
    make_dir(dest, modes.dir)?;
    let mut out = Writer::new(dest, limits, modes, budget);
    match format {
        Format::Tar => out.tar(artifact)?,
        Format::TarGz => out.tar(flate2::read::MultiGzDecoder::new(io::BufReader::new(
            artifact,
        )))?,
        Format::Zip => out.zip(artifact)?,
        Format::Single(name) => {
            let rel = out.relative(name.as_bytes())?;
            let mut artifact = artifact;
            out.file(&rel, name, &mut artifact, 0o644)?;
        }
    }
    out.make_links()?;
    sync_file_system(dest)?;
    Ok(out.done)
}

/// Places a single-file artifact as `dest/name` (`dest` must not exist
/// yet): a hard link to the stored artifact `stored`, so not one byte is
/// copied again, and a copy from `artifact` where the link cannot be made
/// (a file system without them, too many links, the artifact removed
/// meanwhile). The linked file's mode is the artifact's too, which the
/// private `artifacts/` directory keeps from everyone else.
pub fn place(
    artifact: File,
    stored: &Path,
    name: &str,
    dest: &Path,
    limits: Limits,
    modes: Modes,
    budget: &Budget,
) -> Result<Unpacked, UnpackError> {
    make_dir(dest, modes.dir)?;
    let mut out = Writer::new(dest, limits, modes, budget);
    let rel = out.relative(name.as_bytes())?;
    let path = out.parents(&rel, name)?;
    budget.check()?;
    match std::fs::hard_link(stored, &path) {
        Ok(()) => {
            let linked = File::open(&path)?;
            // The very file stored, or nothing: a link to another (the
            // artifact replaced meanwhile) would place unverified bytes.
            let (a, b) = (artifact.metadata()?, linked.metadata()?);
            if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                std::fs::remove_file(&path)?;
                return Err(UnpackError::Io(io::Error::other(
                    "the stored artifact changed while it was placed",
                )));
            }
            out.count_bytes(b.len())?;
            linked.set_permissions(std::fs::Permissions::from_mode(modes.of_file(0o644)))?;
            // The bytes were synced when the artifact was stored: only the
            // new name and the mode are to make durable.
            linked.sync_all()?;
            sync_dir(dest)?;
        }
        Err(e) => {
            tracing::debug!(error = %e, "no hard link to the artifact; copying it");
            let mut artifact = artifact;
            out.file(&rel, name, &mut artifact, 0o644)?;
            sync_file_system(dest)?;
        }
    }
    Ok(out.done)
}

struct Writer<'a> {
    dest: &'a Path,
    limits: Limits,
    modes: Modes,
    budget: &'a Budget,
    done: Unpacked,
    /// Directories made (relative): real ones, never links.
    dirs: HashSet<PathBuf>,
    /// Regular files made (relative): what a hard link may name.
    files: HashSet<PathBuf>,
    /// Symbolic links to make at the end (relative path -> target).
    links: HashMap<PathBuf, PathBuf>,
    /// The copy buffer, made once (an archive may hold a million files).
    buf: Vec<u8>,
}

impl<'a> Writer<'a> {
    fn new(dest: &'a Path, limits: Limits, modes: Modes, budget: &'a Budget) -> Self {
        Writer {
            dest,
            limits,
            modes,
            budget,
            done: Unpacked::default(),
            dirs: HashSet::new(),
            files: HashSet::new(),
            links: HashMap::new(),
            buf: vec![0u8; CHUNK],
        }
    }

    fn count_entry(&mut self) -> Result<(), UnpackError> {
        self.done.entries += 1;
        if self.done.entries > self.limits.max_entries {
            return Err(UnpackError::TooManyEntries(self.limits.max_entries));
        }
        Ok(())
    }

    fn count_bytes(&mut self, n: u64) -> Result<(), UnpackError> {
        self.done.bytes = self.done.bytes.saturating_add(n);
        if self.done.bytes > self.limits.max_bytes {
            return Err(UnpackError::TooLarge(self.limits.max_bytes));
        }
        Ok(())
    }

    /// The components of an entry's path: `Escapes` for an absolute path
    /// or one that climbs (`..`), `TooDeep` past `MAX_DEPTH`. Empty for
    /// the archive's root (`./`).
    fn relative(&self, raw: &[u8]) -> Result<PathBuf, UnpackError> {
        let shown = || String::from_utf8_lossy(raw).into_owned();
        if raw.len() as u64 > MAX_PATH_BYTES {
            return Err(UnpackError::HeaderTooLarge {
                what: "path",
                size: raw.len() as u64,
                limit: MAX_PATH_BYTES,
            });
        }
        let mut out = PathBuf::new();
        let mut depth = 0;
        for part in Path::new(OsStr::from_bytes(raw)).components() {
            match part {
                Component::Normal(p) => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(UnpackError::TooDeep(shown()));
                    }
                    out.push(p);
                }
                Component::CurDir => {}
                _ => return Err(UnpackError::Escapes(shown())),
            }
        }
        Ok(out)
    }

    /// Makes every directory on the way to `rel` (what this unpacking made
    /// is remembered, so a deep tree costs no lookup per level), refusing
    /// a way through a link or a file.
    fn parents(&mut self, rel: &Path, raw: &str) -> Result<PathBuf, UnpackError> {
        if let Some(parent) = rel.parent() {
            let mut at = PathBuf::new();
            for part in parent.components() {
                at.push(part);
                if self.dirs.contains(&at) {
                    continue;
                }
                if self.links.contains_key(&at) {
                    return Err(UnpackError::Escapes(raw.to_string()));
                }
                if self.files.contains(&at) {
                    return Err(UnpackError::Broken(format!(
                        "{raw:?}: a file stands where a directory should be"
                    )));
                }
                self.count_entry()?;
                make_dir(&self.dest.join(&at), self.modes.dir)?;
                self.dirs.insert(at.clone());
            }
        }
        if self.dirs.contains(rel) || self.files.contains(rel) || self.links.contains_key(rel) {
            return Err(UnpackError::Broken(format!("{raw:?} is given twice")));
        }
        Ok(self.dest.join(rel))
    }

    fn dir(&mut self, rel: &Path, raw: &str) -> Result<(), UnpackError> {
        if self.dirs.contains(rel) {
            return Ok(()); // made on the way to an earlier entry
        }
        let path = self.parents(rel, raw)?;
        make_dir(&path, self.modes.dir)?;
        self.dirs.insert(rel.to_path_buf());
        Ok(())
    }

    fn file(
        &mut self,
        rel: &Path,
        raw: &str,
        content: &mut impl Read,
        mode: u32,
    ) -> Result<(), UnpackError> {
        let path = self.parents(rel, raw)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        self.files.insert(rel.to_path_buf());
        let mut buf = std::mem::take(&mut self.buf);
        let copied = self.copy(content, &mut file, &mut buf, raw);
        self.buf = buf;
        copied?;
        // Set, not asked of the umask: 000 would make it writable by all,
        // 077 unreadable by the services that use it.
        file.set_permissions(std::fs::Permissions::from_mode(self.modes.of_file(mode)))?;
        Ok(())
    }

    fn copy(
        &mut self,
        content: &mut impl Read,
        file: &mut File,
        buf: &mut [u8],
        raw: &str,
    ) -> Result<(), UnpackError> {
        loop {
            self.budget.check()?;
            let n = match content.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Broken(format!("{raw:?}: {e}"))),
            };
            self.count_bytes(n as u64)?;
            file.write_all(&buf[..n])?;
        }
        Ok(())
    }
}

/// Creates a directory with exactly `mode`, whatever the umask.
fn make_dir(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::create_dir(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn broken(e: impl std::fmt::Display) -> UnpackError {
    UnpackError::Broken(e.to_string())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes everything written under `dir` durable with one call: a sync of
/// each of 100,000 files would take most of a minute.
fn sync_file_system(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir)?;
    // SAFETY: syncfs(2) only reads the descriptor, which `d` keeps open.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
