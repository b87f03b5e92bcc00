//! Retention: which downloaded versions of a name lose their files after
//! an activation, so the data directory does not fill with every version
//! ever fetched, and what must never go.

use uuid::Uuid;

use super::package::{Package, Status};

/// The versions of `active`'s name whose files go, keeping at most `keep`
/// versions with files, the active one counting (`keep` 0: all kept).
/// The candidates are the `downloaded` versions created before the active
/// one (a newer one is waiting to be used); they are ranked by when they
/// were last active (never active: last), then newest first. Never
/// chosen, and counted as kept: the version active just before (the one
/// most recently active), pinned versions, and versions with an operation
/// in flight.
pub fn to_remove(active: &Package, versions: &[Package], keep: usize) -> Vec<Uuid> {
    if keep == 0 {
        return Vec::new();
    }
    let mut candidates: Vec<&Package> = versions
        .iter()
        .filter(|p| {
            p.id != active.id
                && p.name == active.name
                && p.status == Status::Downloaded
                && (p.created_at, p.id) < (active.created_at, active.id)
        })
        .collect();
    // Most recently active first; never active after them; then newest.
    candidates.sort_by(|a, b| {
        b.last_active_at
            .cmp(&a.last_active_at)
            .then((b.created_at, b.id).cmp(&(a.created_at, a.id)))
    });
    let previous = versions
        .iter()
        .filter(|p| p.id != active.id && p.last_active_at.is_some())
        .max_by_key(|p| p.last_active_at)
        .map(|p| p.id);
    let mut kept = 1;
    let mut out = Vec::new();
    for p in candidates {
        let protected = Some(p.id) == previous || p.pinned || p.operation_id.is_some();
        if protected || kept < keep {
            kept += 1;
        } else {
            out.push(p.id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::domain::package::{PackageName, PackageVersion};

    fn version(n: i64, status: Status, last_active: Option<i64>) -> Package {
        let mut p = Package::new(
            Uuid::from_u128(n as u128),
            PackageName::parse("app").unwrap(),
            PackageVersion::parse(format!("1.{n}")).unwrap(),
            None,
            Timestamp::from_micros(n),
        );
        p.status = status;
        p.last_active_at = last_active.map(Timestamp::from_micros);
        p
    }

    #[test]
    fn six_versions_keep_the_active_the_previous_and_the_most_recently_used() {
        // 1..=6 downloaded in turn, each activated in turn; 6 active now.
        let mut all: Vec<Package> = (1..=5)
            .map(|n| version(n, Status::Downloaded, Some(100 + n)))
            .collect();
        let active = version(6, Status::Active, None);
        all.push(active.clone());
        let gone = to_remove(&active, &all, 3);
        assert_eq!(gone, [3, 2, 1].map(Uuid::from_u128).to_vec());
        assert!(to_remove(&active, &all, 0).is_empty());
        // keep 1: the previous version stays all the same.
        let gone = to_remove(&active, &all, 1);
        assert_eq!(gone, [4, 3, 2, 1].map(Uuid::from_u128).to_vec());
    }

    #[test]
    fn pinned_in_flight_and_newer_versions_are_never_chosen() {
        let mut old_pinned = version(1, Status::Downloaded, Some(101));
        old_pinned.pinned = true;
        let mut busy = version(2, Status::Downloaded, None);
        busy.operation_id = Some(Uuid::from_u128(99));
        let plain = version(3, Status::Downloaded, None);
        let previous = version(4, Status::Downloaded, Some(200));
        let active = version(5, Status::Active, None);
        let newer = version(6, Status::Downloaded, None);
        let created = version(0, Status::Created, None);
        let all = vec![
            old_pinned,
            busy,
            plain.clone(),
            previous,
            active.clone(),
            newer,
            created,
        ];
        assert_eq!(to_remove(&active, &all, 1), vec![plain.id]);
        // The protected ones count against the budget: with 5, nothing goes.
        assert!(to_remove(&active, &all, 5).is_empty());
    }
}
