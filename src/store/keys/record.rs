//! Key rows: the versioned record and its codes, reading and writing a
//! key with its hash index, and the schema 1 -> 2 migration of key records.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::super::codec::{decode, encode, stored_codes};
use super::super::{Failure, Refusal, StoreError};
use crate::domain::Timestamp;
use crate::domain::key::{ApiKey, Role, SecretHash};
use crate::store::tables::{KEYS, KEYS_BY_HASH};

/// Versions of a stored key. V1 (schema 1) had no rate limit; the
/// migration to schema 2 rewrites every V1 record as V2, and reading still
/// accepts V1 so the migration itself can decode them.
#[derive(Debug, Serialize, Deserialize)]
enum KeyRecord {
    V1(KeyV1),
    V2(KeyV2),
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyV2 {
    v1: KeyV1,
    /// Requests per second; `None`: the server's limit; `Some(0)`: none.
    rate_limit: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyV1 {
    name: String,
    role: u8,
    prefix: String,
    hash: [u8; 32],
    active: bool,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    use_count: u64,
    previous: Option<([u8; 32], i64)>,
}

stored_codes!("role", Role, role_code, role_from_code {
    Read = 0,
    Write = 1,
    Admin = 2,
});

fn to_record(k: &ApiKey) -> KeyRecord {
    KeyRecord::V2(KeyV2 {
        v1: to_v1(k),
        rate_limit: k.rate_limit,
    })
}

fn to_v1(k: &ApiKey) -> KeyV1 {
    KeyV1 {
        name: k.name.clone(),
        role: role_code(k.role),
        prefix: k.prefix.clone(),
        hash: k.hash.0,
        active: k.active,
        created_at: k.created_at.as_micros(),
        expires_at: k.expires_at.map(Timestamp::as_micros),
        last_used_at: k.last_used_at.map(Timestamp::as_micros),
        use_count: k.use_count,
        previous: k.previous.map(|(h, t)| (h.0, t.as_micros())),
    }
}

pub(super) fn from_record(id: u128, bytes: &[u8]) -> Result<ApiKey, StoreError> {
    let (r, rate_limit) = match decode::<KeyRecord>("keys", bytes)? {
        KeyRecord::V1(r) => (r, None),
        KeyRecord::V2(KeyV2 { v1, rate_limit }) => (v1, rate_limit),
    };
    Ok(ApiKey {
        id: Uuid::from_u128(id),
        name: r.name,
        role: role_from_code(r.role)?,
        prefix: r.prefix,
        hash: SecretHash(r.hash),
        active: r.active,
        created_at: Timestamp::from_micros(r.created_at),
        expires_at: r.expires_at.map(Timestamp::from_micros),
        last_used_at: r.last_used_at.map(Timestamp::from_micros),
        use_count: r.use_count,
        previous: r
            .previous
            .map(|(h, t)| (SecretHash(h), Timestamp::from_micros(t))),
        rate_limit,
    })
}

/// Schema 1 -> 2: every key record is rewritten as V2 (no rate limit of its
/// own), inside the migration's transaction.
pub(in crate::store) fn migrate_keys_to_v2(wtx: &WriteTransaction) -> Result<usize, StoreError> {
    let mut table = wtx.open_table(KEYS)?;
    let rows: Vec<(u128, Vec<u8>)> = table
        .iter()?
        .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
        .collect::<Result<_, _>>()?;
    for (id, bytes) in &rows {
        let key = from_record(*id, bytes)?;
        table.insert(*id, encode(&to_record(&key))?.as_slice())?;
    }
    Ok(rows.len())
}

pub(super) fn load(wtx: &WriteTransaction, id: Uuid) -> Result<ApiKey, StoreError> {
    let table = wtx.open_table(KEYS)?;
    let row = table
        .get(id.as_u128())?
        .ok_or(StoreError::Refused(Refusal::NotFound))?;
    from_record(id.as_u128(), row.value())
}

pub(super) fn save(wtx: &WriteTransaction, k: &ApiKey) -> Result<(), StoreError> {
    wtx.open_table(KEYS)?
        .insert(k.id.as_u128(), encode(&to_record(k))?.as_slice())?;
    Ok(())
}

pub(super) fn all_keys<T: ReadableTable<u128, &'static [u8]>>(
    table: &T,
) -> Result<Vec<ApiKey>, StoreError> {
    table
        .iter()?
        .map(|row| {
            let (k, v) = row?;
            from_record(k.value(), v.value())
        })
        .collect()
}

pub(super) fn insert_key(wtx: &WriteTransaction, k: &ApiKey) -> Result<(), StoreError> {
    let mut index = wtx.open_table(KEYS_BY_HASH)?;
    if index.get(&k.hash.0)?.is_some() {
        return Err(StoreError::Refused(Refusal::Conflict(
            "a key with this secret already exists".into(),
        )));
    }
    index.insert(&k.hash.0, k.id.as_u128())?;
    drop(index);
    save(wtx, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// A file written by schema 1 (keys without a rate limit) opens, is
    /// migrated to schema 2 in one transaction, and its keys still work.
    #[tokio::test]
    async fn schema_1_keys_are_migrated_to_v2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.redb");
        let id = Uuid::now_v7();
        let secret = "packd-schema-1-secret-0123456789abcdef";
        crate::store::schema::old_files::write(&path, 1, |wtx| {
            let v1 = KeyRecord::V1(KeyV1 {
                name: "old".into(),
                role: 2,
                prefix: "packd-schem".into(),
                hash: SecretHash::of(secret).0,
                active: true,
                created_at: 1,
                expires_at: None,
                last_used_at: None,
                use_count: 7,
                previous: None,
            });
            wtx.open_table(KEYS)
                .unwrap()
                .insert(id.as_u128(), encode(&v1).unwrap().as_slice())
                .unwrap();
            wtx.open_table(KEYS_BY_HASH)
                .unwrap()
                .insert(&SecretHash::of(secret).0, id.as_u128())
                .unwrap();
        });
        let store = Store::open(&path, &crate::store::StoreOptions::default()).unwrap();
        let k = store.get_key(id).unwrap();
        assert_eq!(
            (k.name.as_str(), k.use_count, k.rate_limit),
            ("old", 7, None)
        );
        assert_eq!(store.authenticate(secret).unwrap().key_id, id);
        store.close();
        drop(store);

        let (version, row) = crate::store::schema::old_files::read(&path, KEYS, id.as_u128());
        assert_eq!(version, crate::store::SCHEMA_VERSION);
        assert!(matches!(
            decode::<KeyRecord>("keys", &row).unwrap(),
            KeyRecord::V2(KeyV2 {
                rate_limit: None,
                ..
            })
        ));
    }
}
