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

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::budget::{Budget, Interrupted};

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
    let mut out = Writer {
        dest,
        limits,
        modes,
        budget,
        done: Unpacked::default(),
        dirs: HashSet::new(),
        files: HashSet::new(),
        links: HashMap::new(),
        buf: vec![0u8; CHUNK],
    };
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

/// What the extension headers before an entry said about it.
#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

impl Extensions {
    fn is_empty(&self) -> bool {
        self.long_name.is_none()
            && self.long_link.is_none()
            && self.pax_path.is_none()
            && self.pax_link.is_none()
            && self.pax_size.is_none()
    }
}

/// Counts the bytes read through it, to tell a tar that ended with its
/// end-of-archive block from one cut at an entry's end.
struct Counting<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

impl Writer<'_> {
    /// Walks the archive's raw entries: tar's own handling of extension
    /// headers reads each one whole into memory, whatever its size.
    fn tar(&mut self, reader: impl Read) -> Result<(), UnpackError> {
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut archive = tar::Archive::new(Counting {
            inner: reader,
            read: read.clone(),
        });
        let mut ext = Extensions::default();
        let mut end_of_last = 0u64;
        for entry in archive.entries().map_err(broken)?.raw(true) {
            self.budget.check()?;
            let mut entry = entry.map_err(broken)?;
            let size = entry.size();
            end_of_last = entry.raw_file_position() + size.div_ceil(512) * 512;
            self.count_entry()?;
            let kind = entry.header().entry_type();
            match kind {
                tar::EntryType::GNULongName => {
                    ext.long_name =
                        Some(self.extension(&mut entry, "long name", MAX_PATH_BYTES)?);
                    continue;
                }
                tar::EntryType::GNULongLink => {
                    ext.long_link =
                        Some(self.extension(&mut entry, "long link", MAX_PATH_BYTES)?);
                    continue;
                }
                tar::EntryType::XHeader => {
                    let records = self.extension(&mut entry, "PAX header", MAX_PAX_BYTES)?;
                    self.pax(&records, &mut ext)?;
                    continue;
                }
                tar::EntryType::XGlobalHeader => {
                    // Defaults for later entries (times, owners): nothing
                    // packd keeps. Read, bounded, and set aside.
                    self.extension(&mut entry, "PAX global header", MAX_PAX_BYTES)?;
                    continue;
                }
                _ => {}
            }
            let ext = std::mem::take(&mut ext);
            if let Some(pax_size) = ext.pax_size
                && pax_size != size
            {
                // Readers that honour one size or the other would see two
                // different archives.
                return Err(UnpackError::Broken(format!(
                    "a PAX size of {pax_size} bytes for an entry whose header says {size}"
                )));
            }
            let raw_path = ext
                .pax_path
                .or(ext.long_name.map(trim_nul))
                .unwrap_or_else(|| entry.header().path_bytes().into_owned());
            let raw = String::from_utf8_lossy(&raw_path).into_owned();
            let rel = self.relative(&raw_path)?;
            if rel.as_os_str().is_empty() {
                continue; // "./": the root itself
            }
            let target = match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => Some(
                    ext.pax_link
                        .or(ext.long_link.map(trim_nul))
                        .or_else(|| {
                            entry
                                .header()
                                .link_name_bytes()
                                .map(std::borrow::Cow::into_owned)
                        })
                        .filter(|l| !l.is_empty())
                        .ok_or_else(|| {
                            UnpackError::Broken(format!("{raw:?}: a link without a target"))
                        })?,
                ),
                _ => None,
            };
            match (kind, target) {
                (tar::EntryType::Regular | tar::EntryType::Continuous, _) => {
                    let mode = entry.header().mode().unwrap_or(0o644);
                    self.file(&rel, &raw, &mut entry, mode)?;
                }
                (tar::EntryType::Directory, _) => self.dir(&rel, &raw)?,
                (tar::EntryType::Symlink, Some(target)) => {
                    self.symlink(&rel, &raw, OsStr::from_bytes(&target))?;
                }
                (tar::EntryType::Link, Some(target)) => {
                    self.hard_link(&rel, &raw, &target)?;
                }
                (other, _) => {
                    return Err(UnpackError::Unsupported {
                        entry: raw,
                        kind: match other {
                            tar::EntryType::Char => "character device",
                            tar::EntryType::Block => "block device",
                            tar::EntryType::Fifo => "FIFO",
                            tar::EntryType::GNUSparse => "sparse file",
                            _ => "special entry",
                        },
                    });
                }
            }
        }
        if !ext.is_empty() {
            return Err(UnpackError::Broken(
                "extension headers at the end describe no entry".into(),
            ));
        }
        // What follows the end block is read too (bounded by the cap), so
        // a compressed stream's own checks (each gzip member's CRC and
        // length) cover all of it: a cut or damaged tail is not ignored.
        let mut rest = archive.into_inner();
        let mut buf = std::mem::take(&mut self.buf);
        let mut drained = 0u64;
        loop {
            self.budget.check()?;
            match rest.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    drained += n as u64;
                    if self.done.bytes.saturating_add(drained) > self.limits.max_bytes {
                        return Err(UnpackError::TooLarge(self.limits.max_bytes));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(broken(e)),
            }
        }
        // A tar ends with a block of zeros. Without one it was cut at an
        // entry's end (a truncated download, or a gzip member missing):
        // what it holds is not the whole package.
        if read.get() <= end_of_last {
            return Err(UnpackError::Broken(
                "the archive ends without its end-of-archive block (truncated?)".into(),
            ));
        }
        Ok(())
    }

    /// Reads an extension header's data, refusing one larger than `limit`
    /// before a byte of it is buffered. Its bytes count against the cap.
    fn extension<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        what: &'static str,
        limit: u64,
    ) -> Result<Vec<u8>, UnpackError> {
        let size = entry.size();
        if size > limit {
            return Err(UnpackError::HeaderTooLarge { what, size, limit });
        }
        self.count_bytes(size)?;
        let mut data = Vec::with_capacity(size as usize);
        entry.take(limit).read_to_end(&mut data).map_err(broken)?;
        Ok(data)
    }

    /// The PAX records packd honours: the path, the link target and the
    /// size (checked against the header's); tar's own record parser.
    fn pax(&self, records: &[u8], ext: &mut Extensions) -> Result<(), UnpackError> {
        for record in tar::PaxExtensions::new(records) {
            let record = record.map_err(|e| UnpackError::Broken(format!("a PAX record: {e}")))?;
            match record.key_bytes() {
                b"path" => ext.pax_path = Some(bounded_path(record.value_bytes())?),
                b"linkpath" => ext.pax_link = Some(bounded_path(record.value_bytes())?),
                b"size" => {
                    let size = record
                        .value()
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| {
                            UnpackError::Broken("a PAX size that is not a number".into())
                        })?;
                    ext.pax_size = Some(size);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Walks the central directory one entry at a time (never all of it in
    /// memory), after checking its entry count against the cap.
    fn zip(&mut self, file: File) -> Result<(), UnpackError> {
        // Two handles on one open file: one walks the central directory,
        // the other reads contents; each seeks before it reads.
        let mut body = file.try_clone()?;
        let mut archive =
            zip::unstable::read::ZipIterable::try_new(file, zip::read::Config::default())
                .map_err(broken)?
                // Local headers that disagree with the central directory
                // (zip "cloaking") are refused.
                .enforce_header_consistency(true);
        let entries = archive.files().map_err(broken)?;
        if entries.len() as u64 > self.limits.max_entries {
            return Err(UnpackError::TooManyEntries(self.limits.max_entries));
        }
        for entry in entries {
            self.budget.check()?;
            self.count_entry()?;
            let entry = entry.map_err(broken)?;
            let raw_bytes = entry.name_raw().to_vec();
            let raw = String::from_utf8_lossy(&raw_bytes).into_owned();
            let rel = self.relative(&raw_bytes)?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            let (is_dir, is_symlink) = (entry.is_dir(), entry.is_symlink());
            let mode = entry.unix_mode().unwrap_or(0o644);
            let mut content = entry
                .with_reader(&mut body, zip::ZipReadOptions::new())
                .map_err(broken)?;
            if is_dir {
                self.dir(&rel, &raw)?;
            } else if is_symlink {
                // A zip link's target is its content, kept small.
                let mut target = Vec::new();
                (&mut content)
                    .take(MAX_PATH_BYTES + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| UnpackError::Broken(format!("{raw:?}: {e}")))?;
                if target.len() as u64 > MAX_PATH_BYTES || target.is_empty() {
                    return Err(UnpackError::Broken(format!(
                        "{raw:?}: a link target of {} bytes",
                        target.len()
                    )));
                }
                self.symlink(&rel, &raw, OsStr::from_bytes(&target))?;
            } else {
                self.file(&rel, &raw, &mut content, mode)?;
            }
        }
        Ok(())
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

    /// Records a link, made at the end once every entry is known.
    fn symlink(&mut self, rel: &Path, raw: &str, target: &OsStr) -> Result<(), UnpackError> {
        self.parents(rel, raw)?;
        if target.len() as u64 > MAX_PATH_BYTES {
            return Err(UnpackError::HeaderTooLarge {
                what: "link target",
                size: target.len() as u64,
                limit: MAX_PATH_BYTES,
            });
        }
        self.links.insert(rel.to_path_buf(), PathBuf::from(target));
        Ok(())
    }

    /// A tar hard link names another entry of the archive: it must be a
    /// regular file this unpacking made.
    fn hard_link(&mut self, rel: &Path, raw: &str, target: &[u8]) -> Result<(), UnpackError> {
        let target_rel = self
            .relative(target)
            .map_err(|_| UnpackError::Escapes(raw.to_string()))?;
        if !self.files.contains(&target_rel) {
            return Err(UnpackError::Broken(format!(
                "{raw:?} links to {:?}, which is not a file of the archive",
                String::from_utf8_lossy(target)
            )));
        }
        let path = self.parents(rel, raw)?;
        std::fs::hard_link(self.dest.join(&target_rel), &path)?;
        self.files.insert(rel.to_path_buf());
        Ok(())
    }

    /// Makes the links, each only if it resolves inside through every
    /// other link of the archive.
    fn make_links(&mut self) -> Result<(), UnpackError> {
        let mut links: Vec<(&PathBuf, &PathBuf)> = self.links.iter().collect();
        links.sort();
        for (rel, target) in links {
            self.budget.check()?;
            let shown = || rel.to_string_lossy().into_owned();
            if self.dirs.contains(rel) || self.files.contains(rel) {
                return Err(UnpackError::Broken(format!("{:?} is given twice", shown())));
            }
            resolve(&self.links, rel, target).map_err(|_| UnpackError::Escapes(shown()))?;
            std::os::unix::fs::symlink(target, self.dest.join(rel))?;
        }
        Ok(())
    }
}

/// Where following the link at `rel` (to `target`) ends, through every
/// link of `links`, read as paths inside the root (every directory on the
/// way is a real one this unpacking made). `Err` when the way leaves the
/// root, or takes more than `MAX_LINK_HOPS` links.
fn resolve(links: &HashMap<PathBuf, PathBuf>, rel: &Path, target: &Path) -> Result<PathBuf, ()> {
    let mut at: Vec<OsString> = rel
        .parent()
        .map(|p| p.iter().map(OsStr::to_os_string).collect())
        .unwrap_or_default();
    let mut ahead: std::collections::VecDeque<OsString> = std::collections::VecDeque::new();
    push_front(&mut ahead, target)?;
    let mut hops = 0;
    while let Some(part) = ahead.pop_front() {
        match part.as_bytes() {
            b"" | b"." => {}
            b".." => {
                at.pop().ok_or(())?;
            }
            _ => {
                at.push(part);
                let here: PathBuf = at.iter().collect();
                if let Some(next) = links.get(&here) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(());
                    }
                    at.pop();
                    push_front(&mut ahead, next)?;
                }
            }
        }
    }
    Ok(at.iter().collect())
}

/// Puts a link target's components in front of what is left to walk; an
/// absolute target leaves the root at once.
fn push_front(ahead: &mut std::collections::VecDeque<OsString>, target: &Path) -> Result<(), ()> {
    if target.has_root() {
        return Err(());
    }
    for part in target.components().rev() {
        match part {
            Component::Normal(p) => ahead.push_front(p.to_os_string()),
            Component::ParentDir => ahead.push_front("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(()),
        }
    }
    Ok(())
}

/// A GNU long name's data ends with a NUL (and may have more).
fn trim_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

fn bounded_path(value: &[u8]) -> Result<Vec<u8>, UnpackError> {
    if value.len() as u64 > MAX_PATH_BYTES {
        return Err(UnpackError::HeaderTooLarge {
            what: "PAX path",
            size: value.len() as u64,
            limit: MAX_PATH_BYTES,
        });
    }
    Ok(value.to_vec())
}

/// Creates a directory with exactly `mode`, whatever the umask.
fn make_dir(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::create_dir(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn broken(e: impl std::fmt::Display) -> UnpackError {
    UnpackError::Broken(e.to_string())
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
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const ROOMY: Limits = Limits {
        max_bytes: 1 << 30,
        max_entries: 10_000,
    };

    /// A tar entry with the name written as raw bytes: tar's own builder
    /// refuses the hostile names these tests need.
    fn entry(kind: tar::EntryType, name: &[u8], link: &[u8], data: &[u8], mode: u32) -> Vec<u8> {
        let mut out = header(kind, name, link, data.len() as u64, mode);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    /// A header alone, claiming `size` bytes of data.
    fn header(kind: tar::EntryType, name: &[u8], link: &[u8], size: u64, mode: u32) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        entry(tar::EntryType::Regular, name.as_bytes(), b"", data, 0o644)
    }

    fn dir(name: &str) -> Vec<u8> {
        entry(tar::EntryType::Directory, name.as_bytes(), b"", b"", 0o755)
    }

    /// A link; a target past the header's 100 bytes goes in a PAX record.
    fn symlink(name: &str, target: &str) -> Vec<u8> {
        if target.len() <= 100 {
            return entry(
                tar::EntryType::Symlink,
                name.as_bytes(),
                target.as_bytes(),
                b"",
                0o777,
            );
        }
        let mut out = pax(&[("linkpath", target.as_bytes())]);
        out.extend(entry(
            tar::EntryType::Symlink,
            name.as_bytes(),
            b"x",
            b"",
            0o777,
        ));
        out
    }

    /// PAX records, each `<len> <key>=<value>\n`.
    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = 1 + key.len() + 1 + value.len() + 1;
            let mut len = body + body.to_string().len();
            if len.to_string().len() != body.to_string().len() {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        entry(
            tar::EntryType::XHeader,
            b"././@PaxHeader",
            b"",
            &data,
            0o644,
        )
    }

    fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    struct Case {
        dir: tempfile::TempDir,
    }

    impl Case {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn dest(&self) -> PathBuf {
            self.dir.path().join("pkg/staging")
        }
        fn run(
            &self,
            bytes: &[u8],
            format: Format,
            limits: Limits,
        ) -> Result<Unpacked, UnpackError> {
            self.run_with(bytes, format, limits, Modes::PUBLIC, &Budget::unbounded())
        }
        fn run_with(
            &self,
            bytes: &[u8],
            format: Format,
            limits: Limits,
            modes: Modes,
            budget: &Budget,
        ) -> Result<Unpacked, UnpackError> {
            std::fs::create_dir_all(self.dir.path().join("pkg")).unwrap();
            let artifact = self.dir.path().join("artifact");
            std::fs::write(&artifact, bytes).unwrap();
            unpack(
                File::open(&artifact).unwrap(),
                &format,
                &self.dest(),
                limits,
                modes,
                budget,
            )
        }
        fn mode(&self, rel: &str) -> u32 {
            std::fs::symlink_metadata(self.dest().join(rel))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        }
        /// Nothing was written beside the destination.
        fn nothing_outside(&self) {
            let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names, ["artifact", "pkg"]);
            let inside: Vec<_> = std::fs::read_dir(self.dir.path().join("pkg"))
                .unwrap()
                .collect();
            assert_eq!(inside.len(), 1, "only the staging directory");
        }
    }

    /// Unpacks a tar of `entries`, which must be refused.
    fn refused(entries: &[Vec<u8>]) -> UnpackError {
        let case = Case::new();
        let err = case.run(&tar_of(entries), Format::Tar, ROOMY).unwrap_err();
        case.nothing_outside();
        err
    }

    #[test]
    fn a_tar_unpacks_with_directories_links_and_packd_modes() {
        let case = Case::new();
        let tar = tar_of(&[
            entry(tar::EntryType::Directory, b"./bin/", b"", b"", 0o777),
            entry(
                tar::EntryType::Regular,
                b"bin/tool",
                b"",
                b"#!/bin/sh\n",
                0o4777,
            ),
            symlink("bin/tool-latest", "tool"),
            symlink("share/up", "../bin"),
            entry(
                tar::EntryType::Link,
                b"bin/tool-hard",
                b"bin/tool",
                b"",
                0o644,
            ),
            entry(tar::EntryType::Regular, b"README", b"", b"hello", 0o666),
        ]);
        let done = case.run(&tar, Format::Tar, ROOMY).unwrap();
        let dest = case.dest();
        assert_eq!(
            std::fs::read(dest.join("bin/tool-latest")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert_eq!(
            std::fs::read(dest.join("share/up/tool")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert_eq!(
            std::fs::read(dest.join("bin/tool-hard")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert_eq!(std::fs::read(dest.join("README")).unwrap(), b"hello");
        // The archive's modes ask for setuid and writes by all: packd's win.
        assert_eq!(case.mode("bin/tool"), 0o755);
        assert_eq!(case.mode("README"), 0o644);
        assert_eq!(case.mode("bin"), 0o755);
        assert_eq!(case.mode("share"), 0o755, "made on the way");
        assert_eq!(case.mode(""), 0o755);
        assert_eq!(done.bytes, 15);
        case.nothing_outside();
    }

    #[test]
    fn private_files_are_not_for_others() {
        let case = Case::new();
        let tar = tar_of(&[
            entry(tar::EntryType::Regular, b"d/run", b"", b"x", 0o777),
            file("d/data", b"y"),
        ]);
        case.run_with(
            &tar,
            Format::Tar,
            ROOMY,
            Modes::PRIVATE,
            &Budget::unbounded(),
        )
        .unwrap();
        assert_eq!(case.mode(""), 0o750);
        assert_eq!(case.mode("d"), 0o750);
        assert_eq!(case.mode("d/run"), 0o750);
        assert_eq!(case.mode("d/data"), 0o640);
    }

    #[test]
    fn a_tar_gz_and_a_zip_unpack() {
        let case = Case::new();
        case.run(
            &gz(&tar_of(&[file("a/b.txt", b"tgz")])),
            Format::TarGz,
            ROOMY,
        )
        .unwrap();
        assert_eq!(std::fs::read(case.dest().join("a/b.txt")).unwrap(), b"tgz");

        let case = Case::new();
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o777);
        zip.add_directory("d/", options).unwrap();
        zip.start_file("d/run.sh", options).unwrap();
        zip.write_all(b"zip").unwrap();
        zip.add_symlink("d/latest", "run.sh", options).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        case.run(&bytes, Format::Zip, ROOMY).unwrap();
        assert_eq!(std::fs::read(case.dest().join("d/run.sh")).unwrap(), b"zip");
        assert_eq!(std::fs::read(case.dest().join("d/latest")).unwrap(), b"zip");
        assert_eq!(case.mode("d/run.sh"), 0o755);
    }

    #[test]
    fn every_gzip_member_is_read() {
        // What bgzip or `pigz --independent` make: one tar stream cut into
        // several gzip members. Only the first used to be read, and the
        // package installed in part.
        let tar = tar_of(&[file("first", &[1u8; 700]), file("second", b"2")]);
        let (a, b) = tar.split_at(700);
        let mut two = gz(a);
        two.extend_from_slice(&gz(b));
        let case = Case::new();
        case.run(&two, Format::TarGz, ROOMY).unwrap();
        assert_eq!(std::fs::read(case.dest().join("second")).unwrap(), b"2");

        // A member cut short is a broken archive, not a smaller package.
        let case = Case::new();
        let cut = &two[..two.len() - 10];
        let err = case.run(cut, Format::TarGz, ROOMY);
        assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
    }

    #[test]
    fn a_tar_cut_at_an_entry_boundary_is_broken() {
        let whole = tar_of(&[file("a", b"1"), file("b", b"2")]);
        let case = Case::new();
        let err = case.run(&whole[..1024], Format::Tar, ROOMY);
        assert!(
            matches!(&err, Err(UnpackError::Broken(m)) if m.contains("end-of-archive")),
            "{err:?}"
        );
        // With its end block, the same first entry alone is a whole archive.
        let case = Case::new();
        case.run(&tar_of(&[file("a", b"1")]), Format::Tar, ROOMY)
            .unwrap();
    }

    #[test]
    fn long_names_and_pax_records_are_honoured_within_their_bounds() {
        let long = format!(
            "{}/{}/{}/file",
            "d".repeat(100),
            "e".repeat(100),
            "f".repeat(100)
        );
        let case = Case::new();
        let mut name = long.clone().into_bytes();
        name.push(0);
        let tar = tar_of(&[
            entry(
                tar::EntryType::GNULongName,
                b"././@LongLink",
                b"",
                &name,
                0o644,
            ),
            file("ignored-short-name", b"long"),
            pax(&[("path", b"pax/named"), ("mtime", b"1700000000.5")]),
            file("also-ignored", b"pax"),
            pax(&[("linkpath", b"../pax/named")]),
            symlink("links/to-pax", "ignored"),
        ]);
        case.run(&tar, Format::Tar, ROOMY).unwrap();
        assert_eq!(std::fs::read(case.dest().join(&long)).unwrap(), b"long");
        assert_eq!(
            std::fs::read(case.dest().join("pax/named")).unwrap(),
            b"pax"
        );
        assert_eq!(
            std::fs::read(case.dest().join("links/to-pax")).unwrap(),
            b"pax"
        );
        assert!(!case.dest().join("ignored-short-name").exists());
    }

    #[test]
    fn oversized_headers_are_refused_before_they_are_read() {
        // Each claims far more than packd reads; the data is not even
        // there: the size alone refuses it, nothing is buffered.
        for (kind, what) in [
            (tar::EntryType::GNULongName, "long name"),
            (tar::EntryType::GNULongLink, "long link"),
            (tar::EntryType::XHeader, "PAX header"),
            (tar::EntryType::XGlobalHeader, "PAX global header"),
        ] {
            let mut tar = header(kind, b"././@LongLink", b"", 1 << 30, 0o644);
            tar.extend_from_slice(&[0u8; 1024]);
            let case = Case::new();
            let err = case.run(&tar, Format::Tar, ROOMY).unwrap_err();
            assert!(
                matches!(err, UnpackError::HeaderTooLarge { what: w, size, .. } if w == what && size == 1 << 30),
                "{kind:?}: {err:?}"
            );
        }
        // A PAX path past a path's length, and header bytes over the cap.
        let too_long = vec![b'a'; 5000];
        let err = refused(&[pax(&[("path", &too_long)]), file("x", b"")]);
        assert!(matches!(err, UnpackError::HeaderTooLarge { .. }), "{err:?}");
        let case = Case::new();
        let records = pax(&[("comment", &[b'c'; 60_000])]);
        let err = case.run(
            &tar_of(&[records, file("x", b"")]),
            Format::Tar,
            Limits {
                max_bytes: 10_000,
                max_entries: 100,
            },
        );
        assert!(matches!(err, Err(UnpackError::TooLarge(_))), "{err:?}");
    }

    #[test]
    fn a_pax_size_that_disagrees_with_the_header_is_refused() {
        let err = refused(&[pax(&[("size", b"5000")]), file("x", b"abc")]);
        assert!(
            matches!(&err, UnpackError::Broken(m) if m.contains("PAX size")),
            "{err:?}"
        );
    }

    #[test]
    fn entries_that_climb_out_are_absolute_or_too_deep_are_refused() {
        for name in [
            &b"../evil"[..],
            b"a/../../evil",
            b"/tmp/packd-evil-absolute",
        ] {
            let case = Case::new();
            let err = case.run(
                &tar_of(&[
                    file("ok", b"1"),
                    entry(tar::EntryType::Regular, name, b"", b"x", 0o644),
                ]),
                Format::Tar,
                ROOMY,
            );
            assert!(
                matches!(err, Err(UnpackError::Escapes(_))),
                "{name:?}: {err:?}"
            );
            case.nothing_outside();
        }
        assert!(!Path::new("/tmp/packd-evil-absolute").exists());

        let case = Case::new();
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        zip.start_file("../evil", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"x").unwrap();
        let err = case.run(&zip.finish().unwrap().into_inner(), Format::Zip, ROOMY);
        assert!(matches!(err, Err(UnpackError::Escapes(_))), "{err:?}");
        case.nothing_outside();

        // 1,000 levels of one-letter directories: refused at once, before
        // a directory is made (it used to take minutes).
        let deep = format!("{}f", "d/".repeat(1000));
        let mut long = deep.into_bytes();
        long.push(0);
        let err = refused(&[
            entry(
                tar::EntryType::GNULongName,
                b"././@LongLink",
                b"",
                &long,
                0o644,
            ),
            file("x", b""),
        ]);
        assert!(matches!(err, UnpackError::TooDeep(_)), "{err:?}");
    }

    #[test]
    fn links_pointing_out_and_writes_through_links_are_refused() {
        for (link, target) in [("out", "../../.."), ("abs", "/etc"), ("d/up", "../..")] {
            let err = refused(&[symlink(link, target)]);
            assert!(
                matches!(err, UnpackError::Escapes(_)),
                "{link:?} -> {target:?}: {err:?}"
            );
        }
        // A link that stays inside, then a file written through it: refused.
        let through = refused(&[dir("real/"), symlink("via", "real"), file("via/file", b"x")]);
        assert!(matches!(through, UnpackError::Escapes(_)), "{through:?}");
        // A second entry of the same name cannot replace a link with a file.
        let twice = refused(&[symlink("x", "y"), file("x", b"1")]);
        assert!(matches!(twice, UnpackError::Broken(_)), "{twice:?}");
        // A hard link to something that is not one of the archive's files.
        let hard = refused(&[entry(
            tar::EntryType::Link,
            b"h",
            b"../../etc/passwd",
            b"",
            0o644,
        )]);
        assert!(matches!(hard, UnpackError::Escapes(_)), "{hard:?}");
    }

    #[test]
    fn a_chain_of_links_cannot_lead_out() {
        // d0/…/d19/l -> 20 × "..": the root, inside. Then
        // etc -> d0/…/d19/l/ + 21 × ".." + /etc: read as text the ".."s
        // pop back to the root; followed through l they climb out to /etc.
        let deep: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        let deep = deep.join("/");
        let err = refused(&[
            dir(&format!("{deep}/")),
            symlink(&format!("{deep}/l"), &"../".repeat(20)),
            symlink("etc", &format!("{deep}/l/{}etc", "../".repeat(21))),
        ]);
        assert!(matches!(err, UnpackError::Escapes(_)), "{err:?}");

        // The same with zip's words: l -> ".", up -> "l/..".
        let case = Case::new();
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.add_symlink("l", ".", options).unwrap();
        zip.add_symlink("up", "l/..", options).unwrap();
        let err = case.run(&zip.finish().unwrap().into_inner(), Format::Zip, ROOMY);
        assert!(matches!(err, Err(UnpackError::Escapes(_))), "{err:?}");
        case.nothing_outside();

        // A link made before the link it goes through: a -> d/x/../../etc
        // reads as the root's etc, but d/x (made later) points up.
        let err = refused(&[
            dir("d/"),
            symlink("a", "d/x/../../etc"),
            symlink("d/x", ".."),
        ]);
        assert!(matches!(err, UnpackError::Escapes(_)), "{err:?}");

        // Links that loop are refused, not followed for ever.
        let err = refused(&[symlink("p", "q/x"), symlink("q", "p/y")]);
        assert!(matches!(err, UnpackError::Escapes(_)), "{err:?}");

        // Chains that stay inside are fine.
        let case = Case::new();
        case.run(
            &tar_of(&[
                file("d/real", b"ok"),
                symlink("l", "."),
                symlink("m", "l/d"),
                symlink("n", "m/real"),
            ]),
            Format::Tar,
            ROOMY,
        )
        .unwrap();
        assert_eq!(std::fs::read(case.dest().join("n")).unwrap(), b"ok");
    }

    #[test]
    fn special_entries_are_refused() {
        let err = refused(&[entry(tar::EntryType::Char, b"dev", b"", b"", 0o644)]);
        assert!(
            matches!(
                err,
                UnpackError::Unsupported {
                    kind: "character device",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn bombs_stop_at_the_caps() {
        // 64 MiB of zeros in a few KiB of gzip, against a 1 MiB cap.
        let case = Case::new();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&header(
            tar::EntryType::Regular,
            b"zeros",
            b"",
            64 << 20,
            0o644,
        ))
        .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&chunk).unwrap();
        }
        gz.write_all(&[0u8; 1024]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let capped = Limits {
            max_bytes: 1 << 20,
            max_entries: 100,
        };
        let err = case.run(&bomb, Format::TarGz, capped);
        assert!(matches!(err, Err(UnpackError::TooLarge(_))), "{err:?}");
        let written = std::fs::metadata(case.dest().join("zeros"))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(written <= 1 << 20, "{written}");

        let many: Vec<Vec<u8>> = (0..20).map(|i| file(&format!("f{i}"), b"")).collect();
        let case = Case::new();
        let err = case.run(
            &tar_of(&many),
            Format::Tar,
            Limits {
                max_bytes: 1 << 20,
                max_entries: 10,
            },
        );
        assert!(
            matches!(err, Err(UnpackError::TooManyEntries(10))),
            "{err:?}"
        );
    }

    /// A zip whose central directory names `copies` entries that all point
    /// at the one local file of the archive: the zip crate's writer cannot
    /// make it, so the records are copied by hand.
    fn zip_of_many_pointing_at_one(copies: usize, content: &[u8]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("a", options).unwrap();
        zip.write_all(content).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let eocd = bytes.len() - 22;
        assert_eq!(&bytes[eocd..eocd + 4], b"PK\x05\x06");
        let cd_size = u32::from_le_bytes(bytes[eocd + 12..eocd + 16].try_into().unwrap()) as usize;
        let cd_start = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
        let record = &bytes[cd_start..cd_start + cd_size];
        let mut out = bytes[..cd_start].to_vec();
        for i in 0..copies {
            let mut r = record.to_vec();
            // Names of one byte, like "a": the name length stays 1.
            r[46] = b"abcdefghijklmnopqrstuvwxyz"[i % 26];
            out.extend_from_slice(&r);
        }
        let mut end = bytes[eocd..].to_vec();
        let n = u16::try_from(copies).unwrap().to_le_bytes();
        end[8..10].copy_from_slice(&n);
        end[10..12].copy_from_slice(&n);
        end[12..16].copy_from_slice(&u32::try_from(cd_size * copies).unwrap().to_le_bytes());
        out.extend_from_slice(&end);
        out
    }

    #[test]
    fn a_zip_is_counted_from_its_central_directory_and_never_cloaked() {
        // More entries than the cap: refused before anything is written.
        let case = Case::new();
        let bytes = zip_of_many_pointing_at_one(26, b"x");
        let err = case.run(
            &bytes,
            Format::Zip,
            Limits {
                max_bytes: 1 << 20,
                max_entries: 20,
            },
        );
        assert!(
            matches!(err, Err(UnpackError::TooManyEntries(20))),
            "{err:?}"
        );
        assert!(std::fs::read_dir(case.dest()).unwrap().next().is_none());
        // Within the cap, entries whose names are not their local header's
        // are refused: 26 names could not be made out of one local file.
        let case = Case::new();
        let err = case.run(
            &zip_of_many_pointing_at_one(3, &[0u8; 65536]),
            Format::Zip,
            ROOMY,
        );
        assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
        assert!(!case.dest().join("b").exists());
    }

    #[test]
    fn a_cancel_or_the_deadline_stops_an_unpack() {
        let tar = tar_of(&[file("a", b"1")]);
        let case = Case::new();
        let cancelled = Budget::unbounded();
        cancelled.cancel();
        let err = case.run_with(&tar, Format::Tar, ROOMY, Modes::PUBLIC, &cancelled);
        assert!(
            matches!(err, Err(UnpackError::Interrupted(Interrupted::Cancelled))),
            "{err:?}"
        );
        let case = Case::new();
        let late = Budget::within(std::time::Duration::ZERO);
        let err = case.run_with(&tar, Format::Tar, ROOMY, Modes::PUBLIC, &late);
        assert!(
            matches!(err, Err(UnpackError::Interrupted(Interrupted::TimedOut(_)))),
            "{err:?}"
        );
    }

    #[test]
    fn a_broken_archive_is_said_to_be_broken() {
        let case = Case::new();
        let err = case.run(b"this is not gzip at all", Format::TarGz, ROOMY);
        assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
        let case = Case::new();
        let err = case.run(b"PK\x03\x04 but not really", Format::Zip, ROOMY);
        assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
        // A tar cut in the middle of an entry.
        let case = Case::new();
        let whole = tar_of(&[file("big", &[7u8; 4096])]);
        let err = case.run(&whole[..1500], Format::Tar, ROOMY);
        assert!(matches!(err, Err(UnpackError::Broken(_))), "{err:?}");
    }

    #[test]
    fn anything_else_is_one_file_named_after_the_url() {
        assert_eq!(Format::of_url("https://e.org/jq-1.7.tar.gz"), Format::TarGz);
        assert_eq!(Format::of_url("https://e.org/x.TGZ?sig=1"), Format::TarGz);
        assert_eq!(Format::of_url("https://e.org/x.tar"), Format::Tar);
        assert_eq!(Format::of_url("https://e.org/x.zip"), Format::Zip);
        assert_eq!(
            Format::of_url("https://e.org/bin/jq-linux64"),
            Format::Single("jq-linux64".into())
        );
        assert_eq!(
            Format::of_url("https://e.org/"),
            Format::Single("artifact".into())
        );
        assert_eq!(
            Format::of_url("https://e.org/a/../.."),
            Format::Single("artifact".into())
        );

        let case = Case::new();
        case.run(b"\x7fELF", Format::Single("jq-linux64".into()), ROOMY)
            .unwrap();
        assert_eq!(
            std::fs::read(case.dest().join("jq-linux64")).unwrap(),
            b"\x7fELF"
        );
        assert_eq!(case.mode("jq-linux64"), 0o644);
    }
}
