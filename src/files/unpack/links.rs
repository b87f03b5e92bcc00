//! Links of an archive: hard links name a file the archive made;
//! symbolic links are recorded as they come and made last, each only if
//! it resolves inside the package through every other link (a chain
//! cannot lead out).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{MAX_LINK_HOPS, MAX_PATH_BYTES, UnpackError, Writer};

impl Writer<'_> {
    /// Records a link, made at the end once every entry is known.
    pub(super) fn symlink(
        &mut self,
        rel: &Path,
        raw: &str,
        target: &OsStr,
    ) -> Result<(), UnpackError> {
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
    pub(super) fn hard_link(
        &mut self,
        rel: &Path,
        raw: &str,
        target: &[u8],
    ) -> Result<(), UnpackError> {
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
    pub(super) fn make_links(&mut self) -> Result<(), UnpackError> {
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
