//! `active/<name>`: the symbolic link that says which version of a name is
//! in use. It is written beside its place and renamed over it, then the
//! directory is synced, so a process reading through it sees the old
//! version or the new one, never a missing or half-made link. Every change
//! returns what the link was, so a failed hook can put it back exactly.
//!
//! The link's target is relative (`../packages/<name>/<version>`): it stays
//! right when the data directory is moved, restored from a backup or
//! mounted elsewhere in a container.

use std::io;
use std::path::{Path, PathBuf};

use crate::domain::package::{PackageName, PackageVersion};
use crate::durable::sync_directory;

use super::Layout;

/// What `active/<name>` was before a change: its target, or no link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous(pub Option<PathBuf>);

/// Why a link could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Something other than a link stands at `active/<name>` (made by
    /// hand): packd does not remove what it did not make.
    #[error("{0} is not a symbolic link; remove it and try again")]
    NotALink(PathBuf),
    /// An activation of a version whose directory is not there.
    #[error(
        "the package's files are missing from {}; download it again (deactivate it, edit or \
         re-create it, then download)",
        .0.display()
    )]
    Missing(PathBuf),
    #[error("cannot change {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The target `active/<name>` has when `version` is active.
pub fn target(name: &PackageName, version: &PackageVersion) -> PathBuf {
    Path::new("..")
        .join("packages")
        .join(name.segment())
        .join(version.segment())
}

/// Reads `active/<name>`: its target, or `None` when there is no link.
pub fn read(link: &Path) -> Result<Option<PathBuf>, LinkError> {
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => std::fs::read_link(link)
            .map(Some)
            .map_err(|source| io_error(link, source)),
        Ok(_) => Err(LinkError::NotALink(link.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error(link, source)),
    }
}

/// Points `active/<name>` at `version`; returns what it was.
pub fn point(
    layout: &Layout,
    name: &PackageName,
    version: &PackageVersion,
) -> Result<Previous, LinkError> {
    let link = layout.active(name);
    let previous = Previous(read(&link)?);
    set(&link, Some(&target(name, version)))?;
    Ok(previous)
}

/// Removes `active/<name>` if it points at `version` (a link to another
/// version, or none, is left alone); returns what it was.
pub fn remove(
    layout: &Layout,
    name: &PackageName,
    version: &PackageVersion,
) -> Result<Previous, LinkError> {
    let link = layout.active(name);
    let previous = Previous(read(&link)?);
    if previous.0.as_deref() == Some(target(name, version).as_path()) {
        set(&link, None)?;
    }
    Ok(previous)
}

/// Puts `active/<name>` back as `previous` says it was.
pub fn restore(layout: &Layout, name: &PackageName, previous: &Previous) -> Result<(), LinkError> {
    let link = layout.active(name);
    if read(&link)? == previous.0 {
        return Ok(());
    }
    set(&link, previous.0.as_deref())
}

/// Makes `link` point at `target` (or removes it), atomically, and syncs
/// its directory so the change outlives a power cut.
pub(crate) fn set(link: &Path, target: Option<&Path>) -> Result<(), LinkError> {
    match target {
        Some(target) => {
            let file_name = link.file_name().unwrap_or_default().to_string_lossy();
            // Hidden by the leading dot, which no encoded name has; unique,
            // so two writers (there is one per name) could never share it.
            let temp = link.with_file_name(super::layout::temporary(
                &file_name,
                super::layout::LINK,
                uuid::Uuid::now_v7(),
            ));
            std::os::unix::fs::symlink(target, &temp).map_err(|e| io_error(&temp, e))?;
            if let Err(e) = std::fs::rename(&temp, link) {
                let _ = std::fs::remove_file(&temp);
                return Err(io_error(link, e));
            }
        }
        None => match std::fs::remove_file(link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(link, e)),
        },
    }
    sync_directory(link);
    Ok(())
}

fn io_error(path: &Path, source: io::Error) -> LinkError {
    LinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Layout, PackageName) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir(layout.root().join("active")).unwrap();
        (dir, layout, PackageName::parse("../odd/é").unwrap())
    }

    fn v(s: &str) -> PackageVersion {
        PackageVersion::parse(s).unwrap()
    }

    #[test]
    fn a_link_switches_and_goes_back() {
        let (_dir, layout, name) = setup();
        for version in ["1.0", "2.0"] {
            std::fs::create_dir_all(layout.package(&name, &v(version))).unwrap();
            std::fs::write(layout.package(&name, &v(version)).join("VERSION"), version).unwrap();
        }
        let link = layout.active(&name);
        assert_eq!(link.parent().unwrap(), layout.root().join("active"));

        assert_eq!(point(&layout, &name, &v("1.0")).unwrap(), Previous(None));
        assert_eq!(
            std::fs::read_to_string(link.join("VERSION")).unwrap(),
            "1.0"
        );
        let before = point(&layout, &name, &v("2.0")).unwrap();
        assert_eq!(before.0, Some(target(&name, &v("1.0"))));
        assert_eq!(
            std::fs::read_to_string(link.join("VERSION")).unwrap(),
            "2.0"
        );

        restore(&layout, &name, &before).unwrap();
        assert_eq!(
            std::fs::read_to_string(link.join("VERSION")).unwrap(),
            "1.0"
        );
        // No temporary link is left beside it.
        let entries: Vec<_> = std::fs::read_dir(layout.root().join("active"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }

    #[test]
    fn remove_only_takes_its_own_version() {
        let (_dir, layout, name) = setup();
        point(&layout, &name, &v("1.0")).unwrap();
        let kept = remove(&layout, &name, &v("2.0")).unwrap();
        assert_eq!(kept.0, Some(target(&name, &v("1.0"))));
        assert!(read(&layout.active(&name)).unwrap().is_some());
        let removed = remove(&layout, &name, &v("1.0")).unwrap();
        assert_eq!(read(&layout.active(&name)).unwrap(), None);
        restore(&layout, &name, &removed).unwrap();
        assert_eq!(
            read(&layout.active(&name)).unwrap(),
            Some(target(&name, &v("1.0")))
        );
        assert!(remove(&layout, &name, &v("1.0")).unwrap().0.is_some());
        assert_eq!(remove(&layout, &name, &v("1.0")).unwrap(), Previous(None));
    }

    #[test]
    fn what_packd_did_not_make_is_left_alone() {
        let (_dir, layout, name) = setup();
        std::fs::create_dir(layout.active(&name)).unwrap();
        std::fs::write(layout.active(&name).join("mine"), "operator's").unwrap();
        assert!(matches!(
            point(&layout, &name, &v("1.0")),
            Err(LinkError::NotALink(_))
        ));
        assert!(layout.active(&name).join("mine").is_file());
    }

    #[test]
    fn the_target_never_leaves_the_data_directory() {
        let name = PackageName::parse("../../etc").unwrap();
        let t = target(&name, &v("../x"));
        assert_eq!(t, Path::new("../packages/%2E.%2F..%2Fetc/%2E.%2Fx"));
    }
}
