//! This database's identity and the data directory it belongs to
//! (`domain::ownership` decides what a start may do with them).

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::tables::{IDENTITY, IDENTITY_KEY};
use super::{Store, StoreError};
use crate::domain::Timestamp;
use crate::domain::ownership::{Binding, DatabaseIdentity};

/// The stored identity. V1 came with schema 5.
#[derive(Debug, Serialize, Deserialize)]
enum IdentityRecord {
    V1(IdentityV1),
}

#[derive(Debug, Serialize, Deserialize)]
struct IdentityV1 {
    database_id: u128,
    data_dir: Option<BindingV1>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BindingV1 {
    data_dir_id: u128,
    path: String,
    bound_at: i64,
}

fn from_record(bytes: &[u8]) -> Result<DatabaseIdentity, StoreError> {
    let IdentityRecord::V1(r) = decode::<IdentityRecord>("identity", bytes)?;
    Ok(DatabaseIdentity {
        database_id: Uuid::from_u128(r.database_id),
        data_dir: r.data_dir.map(|b| Binding {
            data_dir_id: Uuid::from_u128(b.data_dir_id),
            path: b.path,
        }),
    })
}

fn to_record(identity: &DatabaseIdentity, now: Timestamp) -> IdentityRecord {
    IdentityRecord::V1(IdentityV1 {
        database_id: identity.database_id.as_u128(),
        data_dir: identity.data_dir.as_ref().map(|b| BindingV1 {
            data_dir_id: b.data_dir_id.as_u128(),
            path: b.path.clone(),
            bound_at: now.as_micros(),
        }),
    })
}

/// Gives a database without an identity (new, or older than schema 5) one.
pub(super) fn ensure(wtx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut table = wtx.open_table(IDENTITY)?;
    if table.get(IDENTITY_KEY)?.is_none() {
        let fresh = DatabaseIdentity {
            database_id: Uuid::now_v7(),
            data_dir: None,
        };
        table.insert(
            IDENTITY_KEY,
            encode(&to_record(&fresh, Timestamp::now()))?.as_slice(),
        )?;
    }
    Ok(())
}

impl Store {
    pub fn identity(&self) -> Result<DatabaseIdentity, StoreError> {
        self.read(|rtx| {
            let table = rtx.open_table(IDENTITY)?;
            let row = table.get(IDENTITY_KEY)?.ok_or_else(|| {
                StoreError::Failed(super::Failure::Corrupt(
                    "the identity record is missing".into(),
                ))
            })?;
            from_record(row.value())
        })
    }

    /// Records the data directory this database belongs to.
    pub async fn bind_data_dir(&self, binding: Binding) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.write(move |wtx| {
            let mut table = wtx.open_table(IDENTITY)?;
            let current = match table.get(IDENTITY_KEY)? {
                Some(row) => from_record(row.value())?,
                None => {
                    return Err(StoreError::Failed(super::Failure::Corrupt(
                        "the identity record is missing".into(),
                    )));
                }
            };
            let bound = DatabaseIdentity {
                data_dir: Some(binding.clone()),
                ..current
            };
            table.insert(IDENTITY_KEY, encode(&to_record(&bound, now))?.as_slice())?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[tokio::test]
    async fn an_identity_is_made_once_bound_and_kept_by_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let store = Store::open(&path, &StoreOptions::default()).unwrap();
        let first = store.identity().unwrap();
        assert_eq!(first.data_dir, None);
        let binding = Binding {
            data_dir_id: Uuid::now_v7(),
            path: "/srv/packd/data".into(),
        };
        store.bind_data_dir(binding.clone()).await.unwrap();
        let copy = dir.path().join("backup.redb");
        store.backup_to(&copy).unwrap();
        store.close();
        drop(store);
        let again = Store::open(&path, &StoreOptions::default()).unwrap();
        assert_eq!(again.identity().unwrap().database_id, first.database_id);
        assert_eq!(again.identity().unwrap().data_dir, Some(binding.clone()));
        again.close();
        let restored = Store::open(&copy, &StoreOptions::default()).unwrap();
        assert_eq!(
            restored.identity().unwrap(),
            DatabaseIdentity {
                database_id: first.database_id,
                data_dir: Some(binding)
            }
        );
        restored.close();
    }
}
