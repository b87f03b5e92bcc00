//! Channel rows, and what a sync writes: the document's packages created
//! with their channel, their downloads and activations queued, the
//! channel's sequence, validator and error, all in one transaction. Also
//! the follow-up of a channel package's download (its activation, when the
//! channel says so) and the release of a finished sync.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::codec::{decode, encode, stored_codes};
use super::events::Written;
use super::operations::queue::{enqueue_new, load as load_operation, start_in};
use super::packages::{self, get_in as get_package_in, put as put_package};
use super::tables::{CHANNELS, PACKAGES, PACKAGES_BY_NAME_VERSION};
use super::{Failure, Refusal, Store, StoreError};
use crate::domain::Timestamp;
use crate::domain::channel::{ActivateMode, Channel, Document, Planned, Refused, takes};
use crate::domain::operation::{CannotStart, Operation, OperationKind};
use crate::domain::package::{Package, Status};

/// Channels one packd follows at most: each is a periodic fetch.
pub const MAX_CHANNELS: usize = 1000;

#[derive(Debug, Serialize, Deserialize)]
enum ChannelRecord {
    V1(ChannelV1),
}

#[derive(Debug, Serialize, Deserialize)]
struct ChannelV1 {
    url: String,
    name: Option<String>,
    sequence: Option<u64>,
    expires: Option<i64>,
    activate: u8,
    interval_ms: u64,
    last_checked_at: Option<i64>,
    last_changed_at: Option<i64>,
    last_error: Option<String>,
    etag: Option<String>,
    /// (package id, marked active)
    plan: Vec<(u128, bool)>,
    next_sync_at: i64,
    operation_id: Option<u128>,
    created_at: i64,
    updated_at: i64,
}

stored_codes!("channel activate mode", ActivateMode, mode_code, mode_from_code {
    Manual = 0,
    Auto = 1,
});

fn to_record(c: &Channel) -> ChannelRecord {
    ChannelRecord::V1(ChannelV1 {
        url: c.url.clone(),
        name: c.name.clone(),
        sequence: c.sequence,
        expires: c.expires.map(Timestamp::as_micros),
        activate: mode_code(c.activate),
        interval_ms: u64::try_from(c.interval.as_millis()).unwrap_or(u64::MAX),
        last_checked_at: c.last_checked_at.map(Timestamp::as_micros),
        last_changed_at: c.last_changed_at.map(Timestamp::as_micros),
        last_error: c.last_error.clone(),
        etag: c.etag.clone(),
        plan: c
            .plan
            .iter()
            .map(|p| (p.package_id.as_u128(), p.active))
            .collect(),
        next_sync_at: c.next_sync_at.as_micros(),
        operation_id: c.operation_id.map(|u| u.as_u128()),
        created_at: c.created_at.as_micros(),
        updated_at: c.updated_at.as_micros(),
    })
}

fn from_record(id: u128, bytes: &[u8]) -> Result<Channel, StoreError> {
    let ChannelRecord::V1(r) = decode::<ChannelRecord>("channels", bytes)?;
    Ok(Channel {
        id: Uuid::from_u128(id),
        url: r.url,
        name: r.name,
        sequence: r.sequence,
        expires: r.expires.map(Timestamp::from_micros),
        activate: mode_from_code(r.activate)?,
        interval: std::time::Duration::from_millis(r.interval_ms),
        last_checked_at: r.last_checked_at.map(Timestamp::from_micros),
        last_changed_at: r.last_changed_at.map(Timestamp::from_micros),
        last_error: r.last_error,
        etag: r.etag,
        plan: r
            .plan
            .into_iter()
            .map(|(id, active)| Planned {
                package_id: Uuid::from_u128(id),
                active,
            })
            .collect(),
        next_sync_at: Timestamp::from_micros(r.next_sync_at),
        operation_id: r.operation_id.map(Uuid::from_u128),
        created_at: Timestamp::from_micros(r.created_at),
        updated_at: Timestamp::from_micros(r.updated_at),
    })
}

fn get_in<T: ReadableTable<u128, &'static [u8]>>(
    table: &T,
    id: Uuid,
) -> Result<Channel, StoreError> {
    let row = table
        .get(id.as_u128())?
        .ok_or(StoreError::Refused(Refusal::NotFound))?;
    from_record(id.as_u128(), row.value())
}

fn put(wtx: &WriteTransaction, written: &mut Written, c: &Channel) -> Result<(), StoreError> {
    written.channel(c);
    wtx.open_table(CHANNELS)?
        .insert(c.id.as_u128(), encode(&to_record(c))?.as_slice())?;
    Ok(())
}

fn load(wtx: &WriteTransaction, id: Uuid) -> Result<Channel, StoreError> {
    get_in(&wtx.open_table(CHANNELS)?, id)
}

/// What a client supplies to follow a channel.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub url: String,
    pub activate: ActivateMode,
    pub interval: std::time::Duration,
}

/// How a sync's fetch and checks ended, to be recorded.
#[derive(Debug, Clone)]
pub enum SyncOutcome {
    /// The server answered 304: the document is the one applied.
    NotModified,
    /// A document that passed its signature check, with its validator.
    Fetched {
        document: Document,
        etag: Option<String>,
        host_id: Uuid,
    },
    /// A document refused (replay, expired, bad signature, malformed).
    Refused(Refused),
    /// The fetch itself failed (network, a status): tried again later.
    Failed(String),
}

/// What recording a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub channel: Channel,
    /// Whether a document with a new sequence was applied.
    pub changed: bool,
    /// The refusal, if the document was refused (by the checks that need
    /// the channel's state: replay, another channel, expiry).
    pub refused: Option<Refused>,
}

/// A finished sync: the channel is free for the next one.
pub(super) fn release(
    wtx: &WriteTransaction,
    written: &mut Written,
    op: &Operation,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut channel = match load(wtx, op.package_id) {
        Ok(c) => c,
        // Deleted during its sync.
        Err(StoreError::Refused(Refusal::NotFound)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if channel.operation_id == Some(op.id) {
        channel.operation_id = None;
        channel.updated_at = now;
        put(wtx, written, &channel)?;
        written.channel_free = true;
    }
    Ok(())
}

/// After a channel package's download succeeded: its activation, when
/// its channel activates automatically and marks it active.
pub(super) fn follow_download(
    wtx: &WriteTransaction,
    written: &mut Written,
    package_id: Uuid,
    now: Timestamp,
) -> Result<(), StoreError> {
    let package = match get_package_in(&wtx.open_table(PACKAGES)?, package_id) {
        Ok(p) => p,
        Err(StoreError::Refused(Refusal::NotFound)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some(channel_id) = package.channel_id else {
        return Ok(());
    };
    let channel = match load(wtx, channel_id) {
        Ok(c) => c,
        Err(StoreError::Refused(Refusal::NotFound)) => return Ok(()),
        Err(e) => return Err(e),
    };
    if channel.wants_active(package.id) {
        activate_unless_held(wtx, written, &package, now)?;
    }
    Ok(())
}

/// Queues `package`'s activation unless its name's active version is
/// pinned or the rules of starting refuse it now (a link change of the
/// name in flight: the next sync tries again).
fn activate_unless_held(
    wtx: &WriteTransaction,
    written: &mut Written,
    package: &Package,
    now: Timestamp,
) -> Result<bool, StoreError> {
    if package.status != Status::Downloaded || package.operation_id.is_some() {
        return Ok(false);
    }
    if let Some(active) = packages::of_name(wtx, &package.name)?
        .into_iter()
        .find(|p| p.status == Status::Active && p.id != package.id)
        && active.pinned
    {
        tracing::info!(name = %package.name, pinned = %active.version, "a pinned version is active; the channel's version is not activated");
        return Ok(false);
    }
    match start_in(wtx, written, package, OperationKind::Activate, now) {
        Ok(_) => Ok(true),
        Err(StoreError::Refused(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Queues what the channel's plan still needs: downloads of its packages
/// not on this machine, and with `activate: auto` the activation of the
/// ones marked active. Packages with an operation in flight are left to it.
fn converge(
    wtx: &WriteTransaction,
    written: &mut Written,
    channel: &Channel,
    now: Timestamp,
) -> Result<(), StoreError> {
    for planned in &channel.plan {
        let package = match get_package_in(&wtx.open_table(PACKAGES)?, planned.package_id) {
            Ok(p) => p,
            // Deleted by hand since: the next new document makes it again.
            Err(StoreError::Refused(Refusal::NotFound)) => continue,
            Err(e) => return Err(e),
        };
        if package.operation_id.is_some() {
            continue;
        }
        match package.status {
            Status::Created => {
                start_in(wtx, written, &package, OperationKind::Download, now)?;
            }
            Status::Downloaded if channel.wants_active(package.id) => {
                activate_unless_held(wtx, written, &package, now)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The document's entries this host takes, made packages where they are
/// not yet: the plan.
fn plan(
    wtx: &WriteTransaction,
    written: &mut Written,
    channel: &Channel,
    document: &Document,
    host_id: Uuid,
    now: Timestamp,
) -> Result<(Vec<Planned>, Vec<String>), StoreError> {
    let mut plan = Vec::new();
    let mut conflicts = Vec::new();
    for entry in &document.entries {
        if !takes(
            host_id,
            entry.name.as_str(),
            entry.version.as_str(),
            entry.rollout,
        ) {
            continue;
        }
        let existing = wtx
            .open_table(PACKAGES_BY_NAME_VERSION)?
            .get((entry.name.as_str(), entry.version.as_str()))?
            .map(|id| Uuid::from_u128(id.value()));
        let package = match existing {
            Some(id) => get_package_in(&wtx.open_table(PACKAGES)?, id)?,
            None => {
                let mut p = Package::new(
                    Uuid::now_v7(),
                    entry.name.clone(),
                    entry.version.clone(),
                    Some(entry.source.clone()),
                    now,
                );
                p.channel_id = Some(channel.id);
                put_package(wtx, written, &p)?;
                p
            }
        };
        // A package made by hand, or by another channel, or with another
        // artifact under the same name and version, is not this
        // channel's to change: said, and left as it is.
        let same = package.source.as_ref().map(|s| (s.url(), s.sha256()))
            == Some((entry.source.url(), entry.source.sha256()));
        if package.channel_id != Some(channel.id) || !same {
            conflicts.push(format!("{}@{}", entry.name, entry.version));
            continue;
        }
        plan.push(Planned {
            package_id: package.id,
            active: entry.active,
        });
    }
    Ok((plan, conflicts))
}

impl Store {
    pub async fn create_channel(&self, new: NewChannel) -> Result<Channel, StoreError> {
        let now = Timestamp::now();
        let channel = Channel::new(Uuid::now_v7(), new.url, new.activate, new.interval, now);
        self.write_changes(move |wtx, written| {
            let table = wtx.open_table(CHANNELS)?;
            let mut count = 0;
            for row in table.iter()? {
                let (k, v) = row?;
                let other = from_record(k.value(), v.value())?;
                if other.url == channel.url {
                    return Err(StoreError::Refused(Refusal::Conflict(format!(
                        "channel {} already follows {}",
                        other.id, other.url
                    ))));
                }
                count += 1;
            }
            drop(table);
            if count >= MAX_CHANNELS {
                return Err(StoreError::Refused(Refusal::Conflict(format!(
                    "packd follows {MAX_CHANNELS} channels at most"
                ))));
            }
            put(wtx, written, &channel)?;
            Ok(channel.clone())
        })
        .await
    }

    pub fn get_channel(&self, id: Uuid) -> Result<Channel, StoreError> {
        self.read(|rtx| get_in(&rtx.open_table(CHANNELS)?, id))
    }

    /// Every channel, oldest first (there are at most `MAX_CHANNELS`).
    pub fn list_channels(&self) -> Result<Vec<Channel>, StoreError> {
        self.read(|rtx| {
            rtx.open_table(CHANNELS)?
                .iter()?
                .map(|row| {
                    let (k, v) = row?;
                    from_record(k.value(), v.value())
                })
                .collect()
        })
    }

    /// Changes how a channel is followed. A new interval counts from the
    /// last check.
    pub async fn update_channel(
        &self,
        id: Uuid,
        activate: Option<ActivateMode>,
        interval: Option<std::time::Duration>,
    ) -> Result<Channel, StoreError> {
        let now = Timestamp::now();
        let channel = self
            .write_changes(move |wtx, written| {
                let mut c = load(wtx, id)?;
                let before = c.clone();
                if let Some(a) = activate {
                    c.activate = a;
                }
                if let Some(i) = interval {
                    c.interval = i;
                    c.next_sync_at = c.last_checked_at.unwrap_or(now).plus(i);
                }
                if c != before {
                    c.updated_at = now;
                    put(wtx, written, &c)?;
                    // Switched to auto: what the plan marks active is
                    // activated now, not at the next document.
                    converge(wtx, written, &c, now)?;
                }
                Ok(c)
            })
            .await?;
        self.inner.channels_changed.notify_one();
        Ok(channel)
    }

    /// Stops following a channel. Its packages stay, as ordinary packages.
    pub async fn delete_channel(&self, id: Uuid) -> Result<Channel, StoreError> {
        let gone = self
            .write_changes(move |wtx, written| {
                let channel = load(wtx, id)?;
                wtx.open_table(CHANNELS)?.remove(id.as_u128())?;
                written.channel_deleted(id);
                let now = Timestamp::now();
                let theirs: Vec<Package> = {
                    let table = wtx.open_table(PACKAGES)?;
                    let mut theirs = Vec::new();
                    for row in table.iter()? {
                        let (k, _) = row?;
                        let p = get_package_in(&table, Uuid::from_u128(k.value()))?;
                        if p.channel_id == Some(id) {
                            theirs.push(p);
                        }
                    }
                    theirs
                };
                for mut p in theirs {
                    p.channel_id = None;
                    p.revision += 1;
                    p.updated_at = now;
                    put_package(wtx, written, &p)?;
                }
                Ok(channel)
            })
            .await?;
        self.inner.channels_changed.notify_one();
        Ok(gone)
    }

    /// Starts a sync of the channel, or returns the one in flight (`false`:
    /// nothing new was started): two syncs of a channel never run at once.
    pub async fn start_sync(&self, id: Uuid) -> Result<(Operation, bool), StoreError> {
        let now = Timestamp::now();
        self.write_changes(move |wtx, written| {
            let mut channel = load(wtx, id)?;
            match Operation::start_sync(Uuid::now_v7(), id, channel.operation_id, now) {
                Ok(op) => {
                    enqueue_new(wtx, written, &op, now)?;
                    channel.operation_id = Some(op.id);
                    channel.updated_at = now;
                    put(wtx, written, &channel)?;
                    Ok((op, true))
                }
                Err(CannotStart::InFlight(other)) => Ok((load_operation(wtx, other)?, false)),
                Err(other) => Err(StoreError::Failed(Failure::Internal(format!(
                    "a sync cannot start: {other:?}"
                )))),
            }
        })
        .await
    }

    /// Records what a sync found, and applies an accepted document: its
    /// packages made, their downloads and activations queued, its sequence
    /// and validator kept. A document is judged again here, against the
    /// channel as it is in this transaction.
    pub async fn record_sync(
        &self,
        id: Uuid,
        outcome: SyncOutcome,
        next_sync_at: Timestamp,
    ) -> Result<Synced, StoreError> {
        let now = Timestamp::now();
        let synced = self.write_changes(move |wtx, written| {
            let mut c = load(wtx, id)?;
            c.last_checked_at = Some(now);
            c.next_sync_at = next_sync_at;
            c.updated_at = now;
            let mut changed = false;
            let mut refused = None;
            match &outcome {
                SyncOutcome::NotModified => {
                    c.last_error = None;
                    converge(wtx, written, &c, now)?;
                }
                SyncOutcome::Fetched {
                    document,
                    etag,
                    host_id,
                } => match c.judge(document, now) {
                    Ok(()) => {
                        let (plan, conflicts) = plan(wtx, written, &c, document, *host_id, now)?;
                        changed = c.sequence != Some(document.sequence);
                        if changed {
                            c.last_changed_at = Some(now);
                        }
                        c.name = Some(document.channel.clone());
                        c.sequence = Some(document.sequence);
                        c.expires = Some(document.expires);
                        c.etag = etag.clone();
                        c.plan = plan;
                        c.last_error = (!conflicts.is_empty()).then(|| {
                            format!(
                                "not the channel's to manage (made by hand, by another channel, or with another artifact): {}",
                                conflicts.join(", ")
                            )
                        });
                        converge(wtx, written, &c, now)?;
                    }
                    Err(why) => {
                        c.last_error = Some(why.to_string());
                        refused = Some(why);
                    }
                },
                SyncOutcome::Refused(why) => {
                    c.last_error = Some(why.to_string());
                    refused = Some(why.clone());
                }
                SyncOutcome::Failed(error) => c.last_error = Some(error.clone()),
            }
            put(wtx, written, &c)?;
            Ok(Synced {
                channel: c,
                changed,
                refused,
            })
        })
        .await?;
        self.inner.channels_changed.notify_one();
        Ok(synced)
    }

    /// Wakes the scheduler of periodic syncs (a channel made, changed or
    /// removed).
    pub fn channels_changed(&self) -> &tokio::sync::Notify {
        &self.inner.channels_changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::channel::DEFAULT_INTERVAL;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn document(sequence: u64, versions: &[(&str, bool)]) -> Document {
        let entries: Vec<String> = versions
            .iter()
            .map(|(v, active)| {
                format!(
                    r#"{{"name":"app","version":"{v}","url":"app-{v}.tar.gz","sha256":"{DIGEST}","signature":"s","active":{active}}}"#
                )
            })
            .collect();
        let text = format!(
            r#"{{"channel":"stable","sequence":{sequence},"expires":"2099-01-01T00:00:00Z","packages":[{}]}}"#,
            entries.join(",")
        );
        Document::parse(text.as_bytes(), "http://127.0.0.1/c/channel.json").unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("packd.redb"),
            &crate::store::StoreOptions::default(),
        )
        .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_sync_is_idempotent_and_a_replay_changes_nothing() {
        let (_dir, store) = store();
        let c = store
            .create_channel(NewChannel {
                url: "http://127.0.0.1/c/channel.json".into(),
                activate: ActivateMode::Auto,
                interval: DEFAULT_INTERVAL,
            })
            .await
            .unwrap();
        let host = Uuid::now_v7();
        let fetched = |d| SyncOutcome::Fetched {
            document: d,
            etag: None,
            host_id: host,
        };
        let next = Timestamp::now();
        let first = store
            .record_sync(c.id, fetched(document(2, &[("1.0", true)])), next)
            .await
            .unwrap();
        assert!(first.changed);
        assert_eq!(first.channel.plan.len(), 1);
        // Again: the same package, its download already queued.
        let again = store
            .record_sync(c.id, fetched(document(2, &[("1.0", true)])), next)
            .await
            .unwrap();
        assert!(!again.changed);
        assert_eq!(again.channel.plan, first.channel.plan);
        let replay = store
            .record_sync(c.id, fetched(document(1, &[("0.9", true)])), next)
            .await
            .unwrap();
        assert!(matches!(replay.refused, Some(Refused::Replay { .. })));
        assert_eq!(replay.channel.sequence, Some(2));
        assert_eq!(replay.channel.plan, first.channel.plan);
        let page = store
            .list_packages(&crate::store::ListPackages {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.items.len(), 1, "no package from the replayed document");
        assert_eq!(page.items[0].channel_id, Some(c.id));
        assert!(
            page.items[0].operation_id.is_some(),
            "its download is queued"
        );
        // A channel's package refuses a hand edit; deleting the channel
        // makes it an ordinary one.
        store.delete_channel(c.id).await.unwrap();
        let p = store.get_package(page.items[0].id).unwrap();
        assert_eq!(p.channel_id, None);
    }
}
