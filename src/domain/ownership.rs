//! One database, one data directory: the rule that pairs them, as a pure
//! decision. The database records the data directory it was first used
//! with, and the data directory (its `.owner` file) records the database;
//! a start where the two disagree is refused, because the database would
//! make the directory follow it and remove files the other one still uses.

use uuid::Uuid;

/// What a database says about itself and its data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseIdentity {
    /// Made when the database was created; kept by backups, so a restored
    /// copy is the same database.
    pub database_id: Uuid,
    pub data_dir: Option<Binding>,
}

/// The data directory a database belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub data_dir_id: Uuid,
    /// Where it was when bound, for messages (a directory may move).
    pub path: String,
}

/// What a data directory's owner record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirOwner {
    pub data_dir_id: Uuid,
    pub database_id: Uuid,
    /// Where the database was when bound, for messages.
    pub database_path: String,
}

/// Whether a database and a data directory may be used together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// They belong together.
    Match,
    /// First use, or a pairing a crash cut short: record it on both sides
    /// (the directory first, then the database) under this directory id.
    Bind(Uuid),
    /// They belong elsewhere; why, for the operator.
    Mismatch(String),
}

/// Judges a start. `fresh` is the id a new directory gets.
pub fn judge(
    db: &DatabaseIdentity,
    dir: Option<&DirOwner>,
    dir_path: &str,
    fresh: Uuid,
) -> Verdict {
    match (&db.data_dir, dir) {
        (None, None) => Verdict::Bind(fresh),
        // The directory was bound to this database and the database's own
        // record did not commit: finish the pairing.
        (None, Some(owner)) if owner.database_id == db.database_id => {
            Verdict::Bind(owner.data_dir_id)
        }
        (None, Some(owner)) => Verdict::Mismatch(format!(
            "the data directory {dir_path} belongs to another database (first used with {})",
            owner.database_path
        )),
        (Some(bound), None) => Verdict::Mismatch(format!(
            "this database belongs to the data directory first used at {}, and {dir_path} is not \
             it (it has no owner record)",
            bound.path
        )),
        (Some(bound), Some(owner))
            if owner.data_dir_id == bound.data_dir_id && owner.database_id == db.database_id =>
        {
            Verdict::Match
        }
        (Some(bound), Some(owner)) if owner.database_id == db.database_id => {
            Verdict::Mismatch(format!(
                "this database belongs to the data directory first used at {}; {dir_path} is \
                 another one that names this database",
                bound.path
            ))
        }
        (Some(bound), Some(owner)) => Verdict::Mismatch(format!(
            "this database belongs to the data directory first used at {}, and {dir_path} \
             belongs to another database (first used with {})",
            bound.path, owner.database_path
        )),
    }
}

/// The directory id after `--adopt-data-dir`: the directory's own if it
/// has one, so other records of it stay true.
pub fn adopted(dir: Option<&DirOwner>, fresh: Uuid) -> Uuid {
    dir.map_or(fresh, |o| o.data_dir_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(bound_to: Option<Uuid>) -> DatabaseIdentity {
        DatabaseIdentity {
            database_id: Uuid::from_u128(1),
            data_dir: bound_to.map(|id| Binding {
                data_dir_id: id,
                path: "/srv/a".into(),
            }),
        }
    }

    fn owner(dir: u128, database: u128) -> DirOwner {
        DirOwner {
            data_dir_id: Uuid::from_u128(dir),
            database_id: Uuid::from_u128(database),
            database_path: "/var/lib/packd/other.redb".into(),
        }
    }

    #[test]
    fn a_database_and_its_directory_pair_once_and_stay_paired() {
        let fresh = Uuid::from_u128(99);
        assert_eq!(judge(&db(None), None, "/d", fresh), Verdict::Bind(fresh));
        let d = Uuid::from_u128(7);
        assert_eq!(
            judge(&db(Some(d)), Some(&owner(7, 1)), "/d", fresh),
            Verdict::Match
        );
        // A crash between writing the directory's record and the database's.
        assert_eq!(
            judge(&db(None), Some(&owner(7, 1)), "/d", fresh),
            Verdict::Bind(d)
        );
    }

    #[test]
    fn any_other_pairing_is_refused_with_where_each_belongs() {
        let fresh = Uuid::from_u128(99);
        let d = Some(Uuid::from_u128(7));
        // A second packd with a new database on a running one's directory.
        let Verdict::Mismatch(m) = judge(&db(None), Some(&owner(7, 2)), "/d", fresh) else {
            panic!()
        };
        assert!(
            m.contains("another database") && m.contains("other.redb"),
            "{m}"
        );
        // This database on a new, empty directory.
        let Verdict::Mismatch(m) = judge(&db(d), None, "/new", fresh) else {
            panic!()
        };
        assert!(m.contains("/srv/a") && m.contains("/new"), "{m}");
        // A directory that names this database but is not the one it knows
        // (a copy), and one of another database entirely.
        assert!(matches!(
            judge(&db(d), Some(&owner(8, 1)), "/d", fresh),
            Verdict::Mismatch(_)
        ));
        assert!(matches!(
            judge(&db(d), Some(&owner(7, 2)), "/d", fresh),
            Verdict::Mismatch(_)
        ));
        assert_eq!(adopted(Some(&owner(7, 2)), fresh), Uuid::from_u128(7));
        assert_eq!(adopted(None, fresh), fresh);
    }
}
