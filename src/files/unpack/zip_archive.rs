//! Zip archives, walked from the central directory: the entries are
//! counted before any is read, and each local header must agree with
//! its central entry.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use super::{MAX_PATH_BYTES, UnpackError, Writer, broken};

impl Writer<'_> {
    /// Walks the central directory one entry at a time (never all of it in
    /// memory), after checking its entry count against the cap.
    pub(super) fn zip(&mut self, file: File) -> Result<(), UnpackError> {
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
}
