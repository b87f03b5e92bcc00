//! Start-up reconciliation: before the workers start, the data directory is
//! made to follow the database, repairing what a crash between a file step
//! and its commit (or a hand in the directory) left behind:
//!
//! - every `active/<name>` link points at the version the database has
//!   active (made, repointed or removed); something other than a link there
//!   is reported and left alone;
//! - downloads in `partial/` whose operation is finished are removed, and
//!   every staging directory (the workers have not started: none is in use);
//! - artifacts no package refers to, and package directories of versions
//!   that are neither downloaded, active nor being downloaded, are removed.
//!
//! It never removes what the database refers to, and every step is best
//! effort: a failure is logged and the next start tries again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::domain::operation::Operation;
use crate::domain::package::{OperationKind, Package, Status};
use crate::metrics;

use super::Layout;
use super::activate::{self, target};

/// What reconciliation changed, by `metrics::RECONCILE_ACTIONS` label.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub counts: HashMap<&'static str, u64>,
    /// What it could not mend (logged as warnings).
    pub problems: Vec<String>,
}

impl Report {
    fn count(&mut self, action: &'static str, path: &Path) {
        tracing::debug!(action, path = %path.display(), "reconciled");
        *self.counts.entry(action).or_default() += 1;
    }

    fn problem(&mut self, message: String) {
        tracing::warn!("{message}");
        self.problems.push(message);
    }

    pub fn get(&self, action: &str) -> u64 {
        self.counts.get(action).copied().unwrap_or(0)
    }

    pub fn changed(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// Makes the data directory follow the database. `packages` are the
/// packages with a source (those that own files); `unfinished` the queued
/// and running operations.
pub fn reconcile(layout: &Layout, packages: &[Package], unfinished: &[Operation]) -> Report {
    let mut report = Report::default();
    links(layout, packages, &mut report);
    partials(layout, unfinished, &mut report);
    package_dirs(layout, packages, unfinished, &mut report);
    artifacts(layout, packages, &mut report);
    for (action, n) in &report.counts {
        metrics::global().reconciled(action, *n);
    }
    report
}

/// The entries of a directory, as (file name, path); a directory that
/// cannot be read is a problem reported once.
fn entries(dir: &Path, report: &mut Report) -> Vec<(String, PathBuf)> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect(),
        Err(e) => {
            report.problem(format!("cannot read {}: {e}", dir.display()));
            Vec::new()
        }
    }
}

fn links(layout: &Layout, packages: &[Package], report: &mut Report) {
    let mut expected: HashMap<String, &Package> = packages
        .iter()
        .filter(|p| p.status == Status::Active)
        .map(|p| (p.name.segment(), p))
        .collect();
    for (file_name, path) in entries(&layout.root().join("active"), report) {
        // A leading dot is a temporary link a crash left before its rename.
        if file_name.starts_with('.') {
            remove(&path, "link_removed", report);
            continue;
        }
        let current = match activate::read(&path) {
            Ok(Some(current)) => current,
            Ok(None) => continue,
            Err(e) => {
                report.problem(format!("left as it is: {e}"));
                expected.remove(&file_name);
                continue;
            }
        };
        match expected.remove(&file_name) {
            Some(p) if current == target(&p.name, &p.version) => {}
            Some(p) => point(layout, p, "link_repointed", report),
            None => remove(&path, "link_removed", report),
        }
    }
    for p in expected.into_values() {
        point(layout, p, "link_made", report);
    }
}

fn point(layout: &Layout, p: &Package, action: &'static str, report: &mut Report) {
    let dir = layout.package(&p.name, &p.version);
    let link = layout.active(&p.name);
    if !dir.is_dir() {
        report.problem(format!(
            "{}@{} is active but its files are missing from {}; no link made (download it again)",
            p.name,
            p.version,
            dir.display()
        ));
        if activate::read(&link).is_ok_and(|l| l.is_some()) {
            remove(&link, "link_removed", report);
        }
        return;
    }
    match activate::set(&link, Some(&target(&p.name, &p.version))) {
        Ok(()) => report.count(action, &link),
        Err(e) => report.problem(e.to_string()),
    }
}

fn partials(layout: &Layout, unfinished: &[Operation], report: &mut Report) {
    let in_flight: HashSet<String> = unfinished.iter().map(|o| o.id.to_string()).collect();
    for (file_name, path) in entries(&layout.root().join("partial"), report) {
        if !in_flight.contains(&file_name) {
            remove(&path, "partial_removed", report);
        }
    }
}

fn package_dirs(
    layout: &Layout,
    packages: &[Package],
    unfinished: &[Operation],
    report: &mut Report,
) {
    let downloading: HashSet<Uuid> = unfinished
        .iter()
        .filter(|o| o.kind == OperationKind::Download)
        .map(|o| o.package_id)
        .collect();
    let keep: HashSet<(String, String)> = packages
        .iter()
        .filter(|p| p.status != Status::Created || downloading.contains(&p.id))
        .map(|p| (p.name.segment(), p.version.segment()))
        .collect();
    for (name, name_dir) in entries(&layout.root().join("packages"), report) {
        if !is_real_dir(&name_dir) {
            remove(&name_dir, "package_dir_removed", report);
            continue;
        }
        for (version, dir) in entries(&name_dir, report) {
            if version.starts_with('.') {
                remove(&dir, "staging_removed", report);
            } else if !keep.contains(&(name.clone(), version)) {
                remove(&dir, "package_dir_removed", report);
            }
        }
        // The name's directory goes with its last version.
        let _ = std::fs::remove_dir(&name_dir);
    }
}

fn artifacts(layout: &Layout, packages: &[Package], report: &mut Report) {
    let referred: HashSet<String> = packages
        .iter()
        .filter_map(|p| p.source.as_ref().map(|s| s.sha256().to_string()))
        .collect();
    for (file_name, path) in entries(&layout.root().join("artifacts/sha256"), report) {
        if !referred.contains(&file_name) {
            remove(&path, "artifact_removed", report);
        }
    }
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Removes a file, a link (never what it points at) or a directory tree.
fn remove(path: &Path, action: &'static str, report: &mut Report) {
    let removed = if is_real_dir(path) {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Ok(()) => report.count(action, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => report.problem(format!("cannot remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::domain::operation::{OperationState, Transfer};
    use crate::domain::package::{PackageName, PackageVersion};
    use crate::domain::source::{Schemes, Source};

    fn package(name: &str, version: &str, status: Status, digest: u8) -> Package {
        Package {
            id: Uuid::now_v7(),
            name: PackageName::parse(name).unwrap(),
            version: PackageVersion::parse(version).unwrap(),
            status,
            source: Some(
                Source::parse(
                    "https://example.org/a.tar",
                    &format!("{digest:02x}").repeat(32),
                    None,
                    Schemes::Web,
                )
                .unwrap(),
            ),
            operation_id: None,
            revision: 1,
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(1),
        }
    }

    fn download_of(p: &Package) -> Operation {
        Operation {
            id: Uuid::now_v7(),
            package_id: p.id,
            kind: OperationKind::Download,
            state: OperationState::Running,
            progress: 10,
            attempts: 1,
            error: None,
            created_at: Timestamp::from_micros(1),
            started_at: None,
            finished_at: None,
            cancel_requested: false,
            transfer: Transfer::default(),
        }
    }

    fn files_of(layout: &Layout, p: &Package) -> PathBuf {
        let dir = layout.package(&p.name, &p.version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bin"), "x").unwrap();
        std::fs::write(
            layout.artifact(&p.source.as_ref().unwrap().sha256()),
            "artifact",
        )
        .unwrap();
        dir
    }

    #[test]
    fn the_directory_follows_the_database_and_keeps_what_it_refers_to() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        layout.create().unwrap();
        let active = package("../odd", "2.0", Status::Active, 1);
        let old = package("../odd", "1.0", Status::Downloaded, 2);
        let fetching = package("jq", "1.7", Status::Created, 3);
        let repointed = package("curl", "8.1", Status::Active, 4);
        let curl_old = package("curl", "8.0", Status::Downloaded, 5);
        let gone = package("gone", "1", Status::Created, 6);
        for p in [&active, &old, &fetching, &repointed, &curl_old, &gone] {
            files_of(&layout, p);
        }
        let download = download_of(&fetching);
        std::fs::write(layout.partial(download.id), "half").unwrap();
        let stray_partial = layout.partial(Uuid::now_v7());
        std::fs::write(&stray_partial, "old").unwrap();
        let staging = layout.staging(&old.name, &old.version, Uuid::now_v7());
        std::fs::create_dir_all(&staging).unwrap();
        // curl's link points at the old version, a dead name has a link, a
        // temporary link was left, an operator's directory stands in active/.
        activate::set(
            &layout.active(&repointed.name),
            Some(&target(&curl_old.name, &curl_old.version)),
        )
        .unwrap();
        activate::set(&layout.root().join("active/dead"), Some(Path::new("../x"))).unwrap();
        activate::set(
            &layout.root().join("active/.dead.link-1"),
            Some(Path::new("x")),
        )
        .unwrap();
        std::fs::create_dir(layout.root().join("active/by-hand")).unwrap();
        let orphan = layout.root().join("artifacts/sha256").join("ff".repeat(32));
        std::fs::write(&orphan, "orphan").unwrap();

        // `gone` is no longer in the database.
        let known = [
            active.clone(),
            old.clone(),
            fetching.clone(),
            repointed.clone(),
            curl_old.clone(),
        ];
        let report = reconcile(&layout, &known, std::slice::from_ref(&download));

        assert_eq!(
            activate::read(&layout.active(&active.name)).unwrap(),
            Some(target(&active.name, &active.version))
        );
        assert_eq!(
            activate::read(&layout.active(&repointed.name)).unwrap(),
            Some(target(&repointed.name, &repointed.version))
        );
        assert!(!layout.root().join("active/dead").exists());
        assert!(layout.root().join("active/by-hand").is_dir());
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(report.get("link_made"), 1);
        assert_eq!(report.get("link_repointed"), 1);
        assert_eq!(report.get("link_removed"), 2);

        assert!(layout.partial(download.id).exists(), "in flight: kept");
        assert!(!stray_partial.exists());
        assert!(!staging.exists());
        for kept in [&active, &old, &fetching, &repointed, &curl_old] {
            assert!(
                layout
                    .package(&kept.name, &kept.version)
                    .join("bin")
                    .is_file()
            );
            assert!(
                layout
                    .artifact(&kept.source.as_ref().unwrap().sha256())
                    .is_file()
            );
        }
        assert!(!layout.package_versions(&gone.name).exists());
        assert!(
            !layout
                .artifact(&gone.source.as_ref().unwrap().sha256())
                .exists()
        );
        assert!(!orphan.exists());
        assert_eq!(report.get("partial_removed"), 1);
        assert_eq!(report.get("staging_removed"), 1);
        assert_eq!(report.get("package_dir_removed"), 1);
        assert_eq!(report.get("artifact_removed"), 2);

        // A second pass finds nothing to do.
        let again = reconcile(&layout, &known, &[download]);
        assert_eq!(again.changed(), 0, "{again:?}");
    }

    #[test]
    fn a_created_package_without_a_download_has_no_files() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        layout.create().unwrap();
        let p = package("jq", "1.7", Status::Created, 7);
        let dir = files_of(&layout, &p);
        let report = reconcile(&layout, std::slice::from_ref(&p), &[]);
        assert!(!dir.exists());
        assert!(
            layout
                .artifact(&p.source.as_ref().unwrap().sha256())
                .exists(),
            "its source still names the artifact"
        );
        assert_eq!(report.get("package_dir_removed"), 1);
    }
}
