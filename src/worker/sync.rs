//! A channel's sync, as the queue runs it: the document and its signature
//! fetched (conditionally), the signature checked with the trusted keys and
//! its trusted comment with the document, and the outcome handed to the
//! store, which judges the document against the channel (replay, expiry)
//! and applies it in one transaction.

use uuid::Uuid;

use super::executor::ExecError;
use crate::domain::Timestamp;
use crate::domain::channel::{self, Document, Refused};
use crate::files::Budget;
use crate::files::fetch::{FetchError, Fetcher, Small};
use crate::metrics::{self, RefusedDocument, SyncOutcome as Counted};
use crate::store::{Store, SyncOutcome};
use crate::trust::Trust;

/// The largest `.minisig` read.
const MAX_SIGNATURE_BYTES: usize = 4096;

/// What a sync needs besides the store.
#[derive(Clone)]
pub struct Syncer {
    pub store: Store,
    pub fetcher: Fetcher,
    pub trust: Trust,
    /// This host's place in the waves.
    pub host_id: Uuid,
}

impl Syncer {
    /// Runs one sync of `channel_id`. A refused document fails the
    /// operation for good (the next periodic sync looks again); a fetch
    /// that failed in a way a retry may mend is retried by the queue.
    pub async fn sync(&self, channel_id: Uuid, budget: &Budget) -> Result<(), ExecError> {
        let stored = |e: crate::store::StoreError| ExecError::Failed(format!("{e}"));
        let channel = self
            .store
            .get_channel(channel_id)
            .map_err(|e| ExecError::Fatal(format!("cannot read channel {channel_id}: {e}")))?;
        let outcome = self.fetch(&channel, budget).await;
        if let SyncOutcome::Failed(_) = &outcome
            && budget.check().is_err()
        {
            return Err(ExecError::Stopped);
        }
        let next = channel.next_after(Timestamp::now(), rand::random::<f64>());
        let synced = self
            .store
            .record_sync(channel_id, outcome.clone(), next)
            .await
            .map_err(stored)?;
        let refused = match &outcome {
            SyncOutcome::Refused(why) => Some(why.clone()),
            _ => synced.refused.clone(),
        };
        let counted = match (&outcome, &refused) {
            (_, Some(_)) => Counted::Refused,
            (SyncOutcome::NotModified, _) => Counted::NotModified,
            (SyncOutcome::Failed(_), _) => Counted::Failed,
            _ if synced.changed => Counted::Applied,
            _ => Counted::Unchanged,
        };
        metrics::global().channel_syncs.inc(counted);
        let c = &synced.channel;
        match (outcome, refused) {
            (_, Some(why)) => {
                metrics::global()
                    .channel_documents_refused
                    .inc(reason(&why));
                tracing::warn!(channel = %c.url, error = %why, "channel document refused; nothing applied");
                Err(ExecError::Fatal(why.to_string()))
            }
            (SyncOutcome::Failed(error), None) => {
                tracing::warn!(channel = %c.url, %error, "channel sync failed");
                Err(ExecError::Failed(error))
            }
            _ => {
                tracing::info!(
                    channel = %c.url,
                    name = c.name.as_deref().unwrap_or(""),
                    sequence = c.sequence.unwrap_or(0),
                    changed = synced.changed,
                    packages = c.plan.len(),
                    "channel synced"
                );
                Ok(())
            }
        }
    }

    /// Fetches and checks what the channel serves now.
    async fn fetch(&self, c: &channel::Channel, budget: &Budget) -> SyncOutcome {
        let keys = self.trust.keys();
        if keys.is_empty() {
            return SyncOutcome::Failed(
                "channels need a trusted publisher key (--trusted-key); none is trusted now".into(),
            );
        }
        // Conditional only once a document was applied: a 304 then means
        // "the one applied".
        let etag = c.etag.as_deref().filter(|_| c.sequence.is_some());
        let bytes = match self
            .fetcher
            .fetch_small(&c.url, etag, channel::MAX_DOCUMENT_BYTES, budget)
            .await
        {
            Ok(Small::NotModified) => return SyncOutcome::NotModified,
            Ok(Small::Body { bytes, etag }) => (bytes, etag),
            Err(e) => return failed(e),
        };
        let (bytes, etag) = bytes;
        let signature_url = format!("{}.minisig", c.url);
        let signature = match self
            .fetcher
            .fetch_small(&signature_url, None, MAX_SIGNATURE_BYTES, budget)
            .await
        {
            Ok(Small::Body { bytes, .. }) => bytes,
            Ok(Small::NotModified) => {
                return SyncOutcome::Failed(format!("{signature_url} answered 304 unasked"));
            }
            Err(e) => return failed(e),
        };
        let Ok(signature) = String::from_utf8(signature) else {
            return SyncOutcome::Refused(Refused::Signature(format!(
                "{signature_url} is not text"
            )));
        };
        let comment = match crate::trust::verify_document(&keys, &signature, &bytes) {
            Ok(comment) => comment,
            Err(why) => return SyncOutcome::Refused(Refused::Signature(why)),
        };
        let document = match Document::parse(&bytes, &c.url) {
            Ok(d) => d,
            Err(why) => return SyncOutcome::Refused(why),
        };
        let wanted = channel::comment_for(&document.channel, document.sequence);
        if comment != wanted {
            return SyncOutcome::Refused(Refused::Signature(format!(
                "the signature's trusted comment is {comment:?}, not {wanted:?}: it was made for another document"
            )));
        }
        SyncOutcome::Fetched {
            document,
            etag,
            host_id: self.host_id,
        }
    }
}

fn failed(e: FetchError) -> SyncOutcome {
    SyncOutcome::Failed(e.to_string())
}

fn reason(why: &Refused) -> RefusedDocument {
    match why.reason() {
        channel::RefusedReason::Malformed => RefusedDocument::Malformed,
        channel::RefusedReason::Signature => RefusedDocument::Signature,
        channel::RefusedReason::Replay => RefusedDocument::Replay,
        channel::RefusedReason::Expired => RefusedDocument::Expired,
    }
}
