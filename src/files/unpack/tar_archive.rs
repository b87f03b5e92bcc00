//! Tar archives, read entry by entry from the raw headers: GNU long
//! names and links and PAX records are bounded (`MAX_PATH_BYTES`,
//! `MAX_PAX_BYTES`) before they are buffered, a PAX size must agree with
//! the header's, and the archive must end with its end-of-archive block.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;

use super::{MAX_PATH_BYTES, MAX_PAX_BYTES, UnpackError, Writer, broken};

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
    pub(super) fn tar(&mut self, reader: impl Read) -> Result<(), UnpackError> {
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
