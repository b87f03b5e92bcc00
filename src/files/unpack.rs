//! From an artifact to a package's files: a `.tar`, `.tar.gz`/`.tgz` or
//! `.zip` is unpacked, anything else is one file named after the URL's last
//! path segment. Everything is written into a directory that does not exist
//! yet (the staging directory beside the package's), never outside it:
//!
//! - an entry whose path is absolute or climbs out (`..`) is refused;
//! - a link whose target would resolve outside is refused, and no entry is
//!   written through a link an earlier entry made (a chain of links could
//!   otherwise lead anywhere);
//! - devices, FIFOs and other special entries are refused;
//! - the bytes written and the entries made are capped, so a compression
//!   bomb stops at the cap;
//! - modes keep the owner's and others' read and execute bits only (no
//!   setuid, setgid or sticky bits, no write for others).
//!
//! Every error but an I/O one means the artifact itself is at fault: a
//! retry cannot mend it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

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
    /// Bytes written in all.
    pub max_bytes: u64,
    /// Files, directories and links made.
    pub max_entries: u64,
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
/// `dest` may hold part of the files: the caller removes it.
pub fn unpack(
    artifact: &Path,
    format: &Format,
    dest: &Path,
    limits: Limits,
) -> Result<Unpacked, UnpackError> {
    // Read by the services that use the package; the umask is not asked.
    crate::files::layout::create_dir(dest, crate::files::layout::PUBLIC_DIR)?;
    crate::files::layout::set_mode(dest, crate::files::layout::PUBLIC_DIR)?;
    let mut out = Writer {
        dest,
        limits,
        done: Unpacked::default(),
    };
    match format {
        Format::Tar => out.tar(File::open(artifact)?)?,
        Format::TarGz => out.tar(flate2::read::GzDecoder::new(File::open(artifact)?))?,
        Format::Zip => out.zip(File::open(artifact)?)?,
        Format::Single(name) => {
            let rel = relative(name)?;
            let mut file = File::open(artifact)?;
            out.file(&rel, name, &mut file, 0o644)?;
        }
    }
    sync_dir(dest)?;
    Ok(out.done)
}

struct Writer<'a> {
    dest: &'a Path,
    limits: Limits,
    done: Unpacked,
}

impl Writer<'_> {
    fn tar(&mut self, reader: impl Read) -> Result<(), UnpackError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(broken)?;
        for entry in entries {
            let mut entry = entry.map_err(broken)?;
            let raw = entry.path().map_err(broken)?.to_string_lossy().into_owned();
            let rel = relative(&raw)?;
            let kind = entry.header().entry_type();
            if rel.as_os_str().is_empty() {
                continue; // "./": the root itself
            }
            let mode = entry.header().mode().unwrap_or(0o644);
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.file(&rel, &raw, &mut entry, mode)?;
                }
                tar::EntryType::Directory => self.dir(&rel, &raw)?,
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(broken)?
                        .ok_or_else(|| {
                            UnpackError::Broken(format!("{raw:?}: a link without a target"))
                        })?
                        .into_owned();
                    self.symlink(&rel, &raw, &target)?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(broken)?
                        .ok_or_else(|| {
                            UnpackError::Broken(format!("{raw:?}: a link without a target"))
                        })?
                        .to_string_lossy()
                        .into_owned();
                    self.hard_link(&rel, &raw, &target)?;
                }
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
                other => {
                    return Err(UnpackError::Unsupported {
                        entry: raw,
                        kind: match other {
                            tar::EntryType::Char => "character device",
                            tar::EntryType::Block => "block device",
                            tar::EntryType::Fifo => "FIFO",
                            _ => "special entry",
                        },
                    });
                }
            }
        }
        Ok(())
    }

    fn zip(&mut self, file: File) -> Result<(), UnpackError> {
        let mut archive = zip::ZipArchive::new(file).map_err(broken)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(broken)?;
            let raw = entry.name().map_err(broken)?.into_owned();
            let rel = relative(&raw)?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            if entry.is_dir() {
                self.dir(&rel, &raw)?;
            } else if entry.is_symlink() {
                // A zip link's target is its content, kept small.
                let mut target = String::new();
                (&mut entry)
                    .take(4096)
                    .read_to_string(&mut target)
                    .map_err(|e| UnpackError::Broken(format!("{raw:?}: {e}")))?;
                self.symlink(&rel, &raw, Path::new(&target))?;
            } else {
                let mode = entry.unix_mode().unwrap_or(0o644);
                self.file(&rel, &raw, &mut entry, mode)?;
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

    /// Makes sure every directory on the way to `rel` is a real directory
    /// made by this unpacking (created here if missing), never a link.
    fn parents(&mut self, rel: &Path, raw: &str) -> Result<PathBuf, UnpackError> {
        let mut path = self.dest.to_path_buf();
        if let Some(parent) = rel.parent() {
            for part in parent.components() {
                path.push(part);
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(UnpackError::Escapes(raw.to_string()));
                    }
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(UnpackError::Broken(format!(
                            "{raw:?}: a file stands where a directory should be"
                        )));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.count_entry()?;
                        std::fs::create_dir(&path)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(self.dest.join(rel))
    }

    fn dir(&mut self, rel: &Path, raw: &str) -> Result<(), UnpackError> {
        let path = self.parents(rel, raw)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && !m.file_type().is_symlink() => Ok(()),
            Ok(_) => Err(UnpackError::Broken(format!("{raw:?} is given twice"))),
            Err(_) => {
                self.count_entry()?;
                std::fs::create_dir(&path)?;
                Ok(())
            }
        }
    }

    fn file(
        &mut self,
        rel: &Path,
        raw: &str,
        content: &mut impl Read,
        mode: u32,
    ) -> Result<(), UnpackError> {
        let path = self.parents(rel, raw)?;
        self.count_entry()?;
        let mut options = OpenOptions::new();
        // create_new: never through a link an earlier entry left there.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, safe_mode(mode));
        let mut file = options.open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => UnpackError::Broken(format!("{raw:?} is given twice")),
            _ => e.into(),
        })?;
        let left = self.limits.max_bytes - self.done.bytes;
        let written =
            io::copy(&mut content.take(left.saturating_add(1)), &mut file).map_err(|e| match e
                .kind()
            {
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                    UnpackError::Broken(format!("{raw:?}: {e}"))
                }
                _ => UnpackError::Io(e),
            })?;
        if written > left {
            return Err(UnpackError::TooLarge(self.limits.max_bytes));
        }
        self.done.bytes += written;
        file.flush()?;
        file.sync_all()?;
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, raw: &str, target: &Path) -> Result<(), UnpackError> {
        let path = self.parents(rel, raw)?;
        stays_inside(rel, target).ok_or_else(|| UnpackError::Escapes(raw.to_string()))?;
        self.count_entry()?;
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, &path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => UnpackError::Broken(format!("{raw:?} is given twice")),
            _ => e.into(),
        })?;
        Ok(())
    }

    /// A tar hard link names another entry of the archive: it must be a
    /// file this unpacking made, reached without links.
    fn hard_link(&mut self, rel: &Path, raw: &str, target: &str) -> Result<(), UnpackError> {
        let target_rel = relative(target).map_err(|_| UnpackError::Escapes(raw.to_string()))?;
        let source = self.parents(&target_rel, raw)?;
        match std::fs::symlink_metadata(&source) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(UnpackError::Broken(format!(
                    "{raw:?} links to {target:?}, which is not a file of the archive"
                )));
            }
        }
        let path = self.parents(rel, raw)?;
        self.count_entry()?;
        std::fs::hard_link(&source, &path)?;
        Ok(())
    }
}

/// The components of an entry's path, or `Escapes` for an absolute path or
/// one that climbs (`..`). Empty for the archive's root (`./`).
fn relative(raw: &str) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for part in Path::new(raw).components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(UnpackError::Escapes(raw.to_string())),
        }
    }
    Ok(out)
}

/// Whether a link at `rel` pointing at `target` resolves inside the root,
/// read as paths (the directories on the way are real: `parents` saw to it).
fn stays_inside(rel: &Path, target: &Path) -> Option<()> {
    let mut at: Vec<&std::ffi::OsStr> = rel
        .parent()
        .map(|p| p.components().map(Component::as_os_str).collect())
        .unwrap_or_default();
    for part in target.components() {
        match part {
            Component::Normal(p) => at.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(())
}

/// Read and execute for all as the archive says, write for the owner
/// only; never setuid, setgid or sticky.
fn safe_mode(mode: u32) -> u32 {
    (mode & 0o755) | 0o600
}

fn broken(e: impl std::fmt::Display) -> UnpackError {
    UnpackError::Broken(e.to_string())
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
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
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        entry(tar::EntryType::Regular, name.as_bytes(), b"", data, 0o644)
    }

    fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend_from_slice(&[0u8; 1024]);
        out
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
            std::fs::create_dir_all(self.dir.path().join("pkg")).unwrap();
            let artifact = self.dir.path().join("artifact");
            std::fs::write(&artifact, bytes).unwrap();
            unpack(&artifact, &format, &self.dest(), limits)
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

    #[test]
    fn a_tar_unpacks_with_directories_links_and_safe_modes() {
        let case = Case::new();
        let tar = tar_of(&[
            entry(tar::EntryType::Directory, b"./bin/", b"", b"", 0o755),
            entry(
                tar::EntryType::Regular,
                b"bin/tool",
                b"",
                b"#!/bin/sh\n",
                0o4777,
            ),
            entry(
                tar::EntryType::Symlink,
                b"bin/tool-latest",
                b"tool",
                b"",
                0o777,
            ),
            entry(tar::EntryType::Symlink, b"share/up", b"../bin", b"", 0o777),
            entry(
                tar::EntryType::Link,
                b"bin/tool-hard",
                b"bin/tool",
                b"",
                0o644,
            ),
            file("README", b"hello"),
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
        let mode = std::fs::metadata(dest.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "no setuid, no write for others");
        assert_eq!(done.bytes, 15);
        case.nothing_outside();
    }

    #[test]
    fn a_tar_gz_and_a_zip_unpack() {
        let case = Case::new();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_of(&[file("a/b.txt", b"tgz")])).unwrap();
        case.run(&gz.finish().unwrap(), Format::TarGz, ROOMY)
            .unwrap();
        assert_eq!(std::fs::read(case.dest().join("a/b.txt")).unwrap(), b"tgz");

        let case = Case::new();
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o755);
        zip.add_directory("d/", options).unwrap();
        zip.start_file("d/run.sh", options).unwrap();
        zip.write_all(b"zip").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        case.run(&bytes, Format::Zip, ROOMY).unwrap();
        assert_eq!(std::fs::read(case.dest().join("d/run.sh")).unwrap(), b"zip");
    }

    #[test]
    fn entries_that_climb_out_or_are_absolute_are_refused() {
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
    }

    #[test]
    fn links_pointing_out_and_writes_through_links_are_refused() {
        for (link, target) in [
            (&b"out"[..], &b"../../.."[..]),
            (b"abs", b"/etc"),
            (b"d/up", b"../.."),
        ] {
            let case = Case::new();
            let err = case.run(
                &tar_of(&[entry(tar::EntryType::Symlink, link, target, b"", 0o777)]),
                Format::Tar,
                ROOMY,
            );
            assert!(
                matches!(err, Err(UnpackError::Escapes(_))),
                "{link:?} -> {target:?}: {err:?}"
            );
            case.nothing_outside();
        }
        // A link that stays inside, then a file written through it: refused,
        // since a chain of links could lead anywhere.
        let through = refused(&[
            entry(tar::EntryType::Directory, b"real/", b"", b"", 0o755),
            entry(tar::EntryType::Symlink, b"via", b"real", b"", 0o777),
            file("via/file", b"x"),
        ]);
        assert!(matches!(through, UnpackError::Escapes(_)), "{through:?}");
        // A second entry of the same name cannot replace a link with a file.
        let twice = refused(&[
            entry(tar::EntryType::Symlink, b"x", b"y", b"", 0o777),
            file("x", b"1"),
        ]);
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

    /// Unpacks a tar of `entries`, which must be refused.
    fn refused(entries: &[Vec<u8>]) -> UnpackError {
        let case = Case::new();
        let err = case.run(&tar_of(entries), Format::Tar, ROOMY).unwrap_err();
        case.nothing_outside();
        err
    }

    #[test]
    fn special_entries_are_refused() {
        let case = Case::new();
        let err = case.run(
            &tar_of(&[entry(tar::EntryType::Char, b"dev", b"", b"", 0o644)]),
            Format::Tar,
            ROOMY,
        );
        assert!(
            matches!(
                err,
                Err(UnpackError::Unsupported {
                    kind: "character device",
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn bombs_stop_at_the_caps() {
        // 64 MiB of zeros in a few KiB of gzip, against a 1 MiB cap.
        let case = Case::new();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut zeros = entry(tar::EntryType::Regular, b"zeros", b"", b"", 0o644);
        let mut header = tar::Header::from_byte_slice(&zeros[..512]).clone();
        header.set_size(64 << 20);
        header.set_cksum();
        zeros = header.as_bytes().to_vec();
        gz.write_all(&zeros).unwrap();
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
        assert!(written <= (1 << 20) + 1, "{written}");

        let case = Case::new();
        let many: Vec<Vec<u8>> = (0..20).map(|i| file(&format!("f{i}"), b"")).collect();
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
    }
}
