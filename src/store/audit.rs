//! The audit log: who changed what, when, and how it ended. Append-only,
//! oldest first, pruned by age.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode};
use super::tables::AUDIT;
use super::{Page, Store, StoreError, page_of};
use crate::domain::Timestamp;

#[derive(Debug, Serialize, Deserialize)]
enum AuditRecord {
    V1(AuditV1),
}

#[derive(Debug, Serialize, Deserialize)]
struct AuditV1 {
    at: i64,
    key_id: Option<u128>,
    action: String,
    target: String,
    status: u16,
    request_id: String,
}

/// One audited request. Never holds a secret: only ids, the route and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: Uuid,
    pub at: Timestamp,
    /// The key that acted (none when the actor is the offline command line).
    pub key_id: Option<Uuid>,
    /// What was asked, as `METHOD /route/{id}`.
    pub action: String,
    /// The resource acted on, when there is one.
    pub target: String,
    /// The HTTP status the request ended with.
    pub status: u16,
    pub request_id: String,
}

fn to_record(e: &AuditEntry) -> AuditRecord {
    AuditRecord::V1(AuditV1 {
        at: e.at.as_micros(),
        key_id: e.key_id.map(|u| u.as_u128()),
        action: e.action.clone(),
        target: e.target.clone(),
        status: e.status,
        request_id: e.request_id.clone(),
    })
}

fn from_record(id: u128, bytes: &[u8]) -> Result<AuditEntry, StoreError> {
    let AuditRecord::V1(r) = decode::<AuditRecord>("audit", bytes)?;
    Ok(AuditEntry {
        id: Uuid::from_u128(id),
        at: Timestamp::from_micros(r.at),
        key_id: r.key_id.map(Uuid::from_u128),
        action: r.action,
        target: r.target,
        status: r.status,
        request_id: r.request_id,
    })
}

/// Entries removed per transaction when pruning, so a large backlog never
/// makes one huge transaction that holds up every other write.
const PRUNE_BATCH: usize = 10_000;

impl Store {
    pub async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.write(move |wtx| {
            wtx.open_table(AUDIT)?
                .insert(entry.id.as_u128(), encode(&to_record(&entry))?.as_slice())?;
            Ok(())
        })
        .await
    }

    pub fn list_audit(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.read(|rtx| page_of(&rtx.open_table(AUDIT)?, after, limit, from_record, |e| e.id))
    }

    /// Removes entries older than `before`; returns how many went.
    pub async fn prune_audit(&self, before: Timestamp) -> Result<usize, StoreError> {
        // A UUID v7 starts with its 48-bit millisecond timestamp, so every
        // entry older than `before` sorts below this bound.
        let millis = u128::try_from(before.as_micros().max(0) / 1000).unwrap_or(0);
        let bound = millis << 80;
        let mut total = 0;
        loop {
            let removed = self
                .write(move |wtx| {
                    let mut table = wtx.open_table(AUDIT)?;
                    let old: Vec<u128> = table
                        .range(..bound)?
                        .take(PRUNE_BATCH)
                        .map(|r| r.map(|(k, _)| k.value()))
                        .collect::<Result<_, _>>()?;
                    for id in &old {
                        table.remove(*id)?;
                    }
                    Ok(old.len())
                })
                .await?;
            total += removed;
            if removed < PRUNE_BATCH {
                return Ok(total);
            }
        }
    }
}
