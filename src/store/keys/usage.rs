//! Key usage (`use_count`, `last_used_at`): counted in memory by the cache
//! on every request, written here in one transaction every few seconds and
//! at shutdown, so a read request never waits for a disk write.

use super::super::tables::KEYS;
use super::super::{Store, StoreError};
use super::record::{all_keys, load, save};
use crate::domain::Timestamp;

impl Store {
    pub async fn flush_usage(&self) -> Result<usize, StoreError> {
        let pending = self.inner.keys.drain_usage();
        if pending.is_empty() {
            return Ok(0);
        }
        let n = pending.len();
        let batch = pending.clone();
        let result = self
            .write(move |wtx| {
                for &(id, count, last) in &batch {
                    let Ok(mut k) = load(wtx, id) else {
                        continue; // deleted since: its usage goes with it
                    };
                    k.use_count = k.use_count.saturating_add(count);
                    if k.last_used_at.is_none_or(|t| t.as_micros() < last) {
                        k.last_used_at = Some(Timestamp::from_micros(last));
                    }
                    save(wtx, &k)?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                // The cache's copies still carry the old totals; the cells were drained.
                let fresh = self.read(|rtx| all_keys(&rtx.open_table(KEYS)?))?;
                for k in fresh
                    .into_iter()
                    .filter(|k| pending.iter().any(|p| p.0 == k.id))
                {
                    self.inner.keys.refresh(k.id, Some(k));
                }
                Ok(n)
            }
            Err(e) => {
                self.inner.keys.restore_usage(&pending);
                Err(e)
            }
        }
    }
}
