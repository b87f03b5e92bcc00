//! Start-up reconciliation: before the workers start, the data directory is
//! made to follow the database, repairing what a crash between a file step
//! and its commit left behind, and nothing else:
//!
//! - hooks a killed packd left running are ended (`hook::sweep`);
//! - every `active/<name>` link points at the version the database has
//!   active (made or repointed); a link of packd's form (to
//!   `../packages/…`) for a name with no active version is removed;
//! - packd's own temporary names (`.…staging-<uuid>`, `.…removing-<uuid>`,
//!   `.…link-<uuid>`) are removed: no worker runs yet, so none is in use;
//! - a download in `partial/` of an operation the database knows has
//!   finished is removed.
//!
//! Everything else that the database does not account for (a directory
//! an operator made in `packages/`, an artifact no package names, a file
//! in `partial/` of no known operation, a link of another form) is
//! reported, never deleted: the removal journal, not a guess at start,
//! is how packd removes what it made. Every step is best effort: a failure
//! is logged and the next start tries again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::domain::operation::Operation;
use crate::domain::operation::OperationKind;
use crate::domain::package::{Package, Status};
use crate::metrics::family::Label;
use crate::metrics::{self, ReconcileAction as Action};

use super::Layout;
use super::activate::{self, target};
use super::budget::Budget;
use super::hook;
use super::layout::{LINK, REMOVING, STAGING, is_temporary};
use super::remove::remove_tree;

/// What reconciliation changed, by action.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub counts: HashMap<Action, u64>,
    /// Entries the database does not account for: left alone.
    pub foreign: Vec<PathBuf>,
    /// What it could not mend (logged as warnings).
    pub problems: Vec<String>,
}

impl Report {
    fn count(&mut self, action: Action, path: &Path) {
        tracing::debug!(action = action.as_str(), path = %path.display(), "reconciled");
        *self.counts.entry(action).or_default() += 1;
    }

    fn problem(&mut self, message: String) {
        tracing::warn!("{message}");
        self.problems.push(message);
    }

    fn foreign(&mut self, path: PathBuf) {
        self.foreign.push(path);
    }

    pub fn get(&self, action: Action) -> u64 {
        self.counts.get(&action).copied().unwrap_or(0)
    }

    pub fn changed(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// What the database says, for reconciliation.
pub struct Known<'a> {
    /// The packages with a source (those that own files).
    pub packages: &'a [Package],
    /// The queued and running operations.
    pub unfinished: &'a [Operation],
    /// Whether the database has an operation of this id (finished or not).
    pub operation: &'a dyn Fn(Uuid) -> bool,
}

/// Makes the data directory follow the database.
pub fn reconcile(layout: &Layout, known: &Known<'_>) -> Report {
    let mut report = Report::default();
    let ended = hook::sweep(&layout.hooks());
    if ended > 0 {
        *report.counts.entry(Action::HookProcessEnded).or_default() += ended as u64;
    }
    links(layout, known.packages, &mut report);
    partials(layout, known, &mut report);
    package_dirs(layout, known, &mut report);
    artifacts(layout, known.packages, &mut report);
    for (action, n) in &report.counts {
        metrics::global().reconciled.add(*action, *n);
    }
    metrics::global()
        .foreign_entries
        .set(report.foreign.len() as u64);
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
        if is_temporary(&file_name, LINK) && is_link(&path) {
            remove(&path, Action::LinkRemoved, report);
            continue;
        }
        let current = match activate::read(&path) {
            Ok(Some(current)) => current,
            Ok(None) => continue,
            Err(e) => {
                // Not a link: the operator's, reported.
                tracing::debug!(error = %e, "not a link");
                expected.remove(&file_name);
                report.foreign(path);
                continue;
            }
        };
        match expected.remove(&file_name) {
            Some(p) if current == target(&p.name, &p.version) => {}
            Some(p) => point(layout, p, Action::LinkRepointed, report),
            None if is_packd_link(&file_name, &current) => {
                remove(&path, Action::LinkRemoved, report);
            }
            None => report.foreign(path),
        }
    }
    for p in expected.into_values() {
        point(layout, p, Action::LinkMade, report);
    }
}

/// Whether `target` is what packd makes for the link `file_name`:
/// `../packages/<file_name>/<one segment>`.
fn is_packd_link(file_name: &str, target: &Path) -> bool {
    let parts: Vec<_> = target.iter().collect();
    parts.len() == 4
        && parts[0] == ".."
        && parts[1] == "packages"
        && parts[2] == file_name
        && !parts[3].to_string_lossy().starts_with('.')
}

fn point(layout: &Layout, p: &Package, action: Action, report: &mut Report) {
    let dir = layout.package(&p.name, &p.version);
    let link = layout.active(&p.name);
    if !dir.is_dir() {
        report.problem(format!(
            "{}@{} is active but its files are missing from {}; no link made (download it again)",
            p.name,
            p.version,
            dir.display()
        ));
        if let Ok(Some(current)) = activate::read(&link)
            && is_packd_link(&p.name.segment(), &current)
        {
            remove(&link, Action::LinkRemoved, report);
        }
        return;
    }
    match activate::set(&link, Some(&target(&p.name, &p.version))) {
        Ok(()) => report.count(action, &link),
        Err(e) => report.problem(e.to_string()),
    }
}

fn partials(layout: &Layout, known: &Known<'_>, report: &mut Report) {
    let in_flight: HashSet<Uuid> = known.unfinished.iter().map(|o| o.id).collect();
    for (file_name, path) in entries(&layout.root().join("partial"), report) {
        match Uuid::try_parse(&file_name) {
            Ok(id) if in_flight.contains(&id) => {}
            // An operation packd ran and finished: its partial is packd's.
            Ok(id) if is_file(&path) && (known.operation)(id) => {
                remove(&path, Action::PartialRemoved, report);
            }
            _ => report.foreign(path),
        }
    }
}

fn package_dirs(layout: &Layout, known: &Known<'_>, report: &mut Report) {
    let downloading: HashSet<Uuid> = known
        .unfinished
        .iter()
        .filter(|o| o.kind == OperationKind::Download)
        .map(|o| o.package_id)
        .collect();
    let keep: HashSet<(String, String)> = known
        .packages
        .iter()
        .filter(|p| p.status != Status::Created || downloading.contains(&p.id))
        .map(|p| (p.name.segment(), p.version.segment()))
        .collect();
    for (name, name_dir) in entries(&layout.root().join("packages"), report) {
        if !is_real_dir(&name_dir) {
            report.foreign(name_dir);
            continue;
        }
        for (version, dir) in entries(&name_dir, report) {
            if is_temporary(&version, STAGING) {
                remove(&dir, Action::StagingRemoved, report);
            } else if is_temporary(&version, REMOVING) {
                remove(&dir, Action::RemovalFinished, report);
            } else if !keep.contains(&(name.clone(), version)) {
                report.foreign(dir);
            }
        }
    }
}

fn artifacts(layout: &Layout, packages: &[Package], report: &mut Report) {
    let named: HashSet<String> = packages
        .iter()
        .filter_map(|p| p.source.as_ref().map(|s| s.sha256().to_string()))
        .collect();
    for (file_name, path) in entries(&layout.root().join("artifacts/sha256"), report) {
        if !named.contains(&file_name) {
            report.foreign(path);
        }
    }
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn is_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Removes one of packd's own entries: a file, a link (never what it
/// points at) or a directory tree.
fn remove(path: &Path, action: Action, report: &mut Report) {
    match remove_tree(path, &Budget::unbounded()) {
        Ok(_) => report.count(action, path),
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
    use crate::files::layout::temporary;

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
            channel_id: None,
            pinned: false,
            last_active_at: None,
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

    fn tree(dir: &Path) -> Layout {
        let owned = crate::files::owner::take(dir, crate::files::Modes::PUBLIC).unwrap();
        owned.prepare(crate::files::Modes::PUBLIC).unwrap();
        owned.layout().clone()
    }

    #[test]
    fn the_directory_follows_the_database_and_keeps_what_it_refers_to() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tree(tmp.path());
        let active = package("../odd", "2.0", Status::Active, 1);
        let old = package("../odd", "1.0", Status::Downloaded, 2);
        let fetching = package("jq", "1.7", Status::Created, 3);
        let repointed = package("curl", "8.1", Status::Active, 4);
        let curl_old = package("curl", "8.0", Status::Downloaded, 5);
        for p in [&active, &old, &fetching, &repointed, &curl_old] {
            files_of(&layout, p);
        }
        let download = download_of(&fetching);
        let finished = Uuid::now_v7();
        std::fs::write(layout.partial(download.id), "half").unwrap();
        std::fs::write(layout.partial(finished), "old").unwrap();
        let staging = layout.staging(&old.name, &old.version, Uuid::now_v7());
        std::fs::create_dir_all(&staging).unwrap();
        let removing = layout.trash(&old.name, &old.version);
        std::fs::create_dir_all(removing.join("deep")).unwrap();
        // curl's link points at the old version; a name no longer active has
        // packd's link; a temporary link was left.
        activate::set(
            &layout.active(&repointed.name),
            Some(&target(&curl_old.name, &curl_old.version)),
        )
        .unwrap();
        activate::set(
            &layout.root().join("active/dead"),
            Some(Path::new("../packages/dead/1.0")),
        )
        .unwrap();
        activate::set(
            &layout
                .root()
                .join("active")
                .join(temporary("dead", LINK, Uuid::now_v7())),
            Some(Path::new("x")),
        )
        .unwrap();

        let known_ops = [download.id, finished];
        let report = reconcile(
            &layout,
            &Known {
                packages: &[
                    active.clone(),
                    old.clone(),
                    fetching.clone(),
                    repointed.clone(),
                    curl_old.clone(),
                ],
                unfinished: std::slice::from_ref(&download),
                operation: &|id| known_ops.contains(&id),
            },
        );
        assert_eq!(
            activate::read(&layout.active(&active.name)).unwrap(),
            Some(target(&active.name, &active.version))
        );
        assert_eq!(
            activate::read(&layout.active(&repointed.name)).unwrap(),
            Some(target(&repointed.name, &repointed.version))
        );
        assert!(!layout.root().join("active/dead").exists());
        assert_eq!(report.get(Action::LinkMade), 1);
        assert_eq!(report.get(Action::LinkRepointed), 1);
        assert_eq!(report.get(Action::LinkRemoved), 2);
        assert!(layout.partial(download.id).exists(), "in flight: kept");
        assert!(!layout.partial(finished).exists());
        assert!(!staging.exists() && !removing.exists());
        assert_eq!(report.get(Action::PartialRemoved), 1);
        assert_eq!(report.get(Action::StagingRemoved), 1);
        assert_eq!(report.get(Action::RemovalFinished), 1);
        for kept in [&active, &old, &fetching, &repointed, &curl_old] {
            assert!(
                layout
                    .package(&kept.name, &kept.version)
                    .join("bin")
                    .is_file()
            );
        }
        assert!(report.foreign.is_empty(), "{:?}", report.foreign);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn what_packd_did_not_make_is_reported_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tree(tmp.path());
        let root = layout.root().to_path_buf();
        let gone = package("gone", "1", Status::Created, 6);
        let created = package("jq", "1.7", Status::Created, 7);
        // Files the database does not account for: a deleted package's (no
        // journal: an older packd's, or a copy), and an operator's.
        files_of(&layout, &gone);
        files_of(&layout, &created);
        std::fs::write(root.join("packages/README"), "mine").unwrap();
        std::fs::create_dir_all(root.join("packages/tools/bin")).unwrap();
        std::fs::write(root.join("artifacts/sha256/notes.txt"), "mine").unwrap();
        std::fs::write(root.join("partial/keep-me"), "mine").unwrap();
        let unknown_op = root.join("partial").join(Uuid::now_v7().to_string());
        std::fs::write(&unknown_op, "of no known operation").unwrap();
        std::os::unix::fs::symlink("/srv/elsewhere", root.join("active/by-hand")).unwrap();
        std::fs::create_dir(root.join("active/dir-by-hand")).unwrap();
        std::fs::write(root.join("packages/jq/.hidden-by-hand"), "mine").unwrap();

        let report = reconcile(
            &layout,
            &Known {
                packages: std::slice::from_ref(&created),
                unfinished: &[],
                operation: &|_| false,
            },
        );
        assert_eq!(report.changed(), 0, "{report:?}");
        for left in [
            layout.package(&gone.name, &gone.version).join("bin"),
            layout.package(&created.name, &created.version).join("bin"),
            layout.artifact(&gone.source.as_ref().unwrap().sha256()),
            root.join("packages/README"),
            root.join("packages/tools/bin"),
            root.join("artifacts/sha256/notes.txt"),
            root.join("partial/keep-me"),
            unknown_op.clone(),
            root.join("active/dir-by-hand"),
            root.join("packages/jq/.hidden-by-hand"),
        ] {
            assert!(left.exists(), "{} was removed", left.display());
        }
        assert!(
            activate::read(&root.join("active/by-hand"))
                .unwrap()
                .is_some()
        );
        assert_eq!(report.foreign.len(), 11, "{:#?}", report.foreign);
    }
}
