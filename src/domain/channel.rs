//! Channels: a document a publisher signs and serves from any static host,
//! which every packd following it converges to. This module owns what a
//! channel is (`Channel`, its settings), what a document may say
//! (`Document::parse`: bounded, every entry a valid package), whether a
//! document may be applied after the last one (`Channel::judge`: not
//! another channel's, not a replay, not expired) and which entries this
//! host takes (`takes`: the waves).

use std::time::Duration;

use sha2::{Digest, Sha256 as Sha256Hasher};
use uuid::Uuid;

use super::Timestamp;
use super::ValidationError;
use super::package::{PackageName, PackageVersion};
use super::source::{Schemes, Source};

/// The largest document packd reads.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The most entries one document may list.
pub const MAX_ENTRIES: usize = 10_000;
/// The shortest and longest interval between syncs.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The interval of a channel created without one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// The longest channel name (it is also a label of a metric).
const MAX_NAME_CHARS: usize = 100;
/// A `.minisig` is about 300 bytes; what a signature field may hold.
const MAX_SIGNATURE_BYTES: usize = 4096;

/// Whether a sync activates the version the document marks active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivateMode {
    /// Versions are downloaded; activating is left to the operator.
    Manual,
    /// The entry marked `active` is activated once downloaded.
    Auto,
}

impl ActivateMode {
    pub const ALL: [ActivateMode; 2] = [ActivateMode::Manual, ActivateMode::Auto];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivateMode::Manual => "manual",
            ActivateMode::Auto => "auto",
        }
    }
}

/// One package a document lists, as this host plans to hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub package_id: Uuid,
    /// The document marks it the version to run.
    pub active: bool,
}

/// A followed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: Uuid,
    /// Where the document is; its signature is at `<url>.minisig`.
    pub url: String,
    /// The document's `channel`, known from the first applied document on.
    pub name: Option<String>,
    /// The last applied document's sequence.
    pub sequence: Option<u64>,
    /// The last applied document's `expires`.
    pub expires: Option<Timestamp>,
    pub activate: ActivateMode,
    pub interval: Duration,
    pub last_checked_at: Option<Timestamp>,
    /// When a document with a new sequence was last applied.
    pub last_changed_at: Option<Timestamp>,
    /// Why the last sync failed or refused its document; `None` after one
    /// that succeeded.
    pub last_error: Option<String>,
    /// The validator of the last applied document, for `If-None-Match`.
    pub etag: Option<String>,
    /// The packages the last applied document gave this host.
    pub plan: Vec<Planned>,
    /// When the next periodic sync is due (jittered).
    pub next_sync_at: Timestamp,
    /// The sync in flight, if any: two never run at once.
    pub operation_id: Option<Uuid>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Channel {
    pub fn new(
        id: Uuid,
        url: String,
        activate: ActivateMode,
        interval: Duration,
        now: Timestamp,
    ) -> Channel {
        Channel {
            id,
            url,
            name: None,
            sequence: None,
            expires: None,
            activate,
            interval,
            last_checked_at: None,
            last_changed_at: None,
            last_error: None,
            etag: None,
            plan: Vec::new(),
            // The first sync is due at once.
            next_sync_at: now,
            operation_id: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// When the sync after one at `now` is due: the interval, spread by
    /// ±10 % (`spread` in 0..1) so a fleet started together does not
    /// arrive at the origin in step.
    pub fn next_after(&self, now: Timestamp, spread: f64) -> Timestamp {
        let factor = 0.9 + 0.2 * spread.clamp(0.0, 1.0);
        now.plus(self.interval.mul_f64(factor))
    }

    /// Whether `doc` may be applied after what this channel applied last.
    pub fn judge(&self, doc: &Document, now: Timestamp) -> Result<(), Refused> {
        if let Some(name) = &self.name
            && name != &doc.channel
        {
            return Err(Refused::OtherChannel {
                followed: name.clone(),
                served: doc.channel.clone(),
            });
        }
        if let Some(applied) = self.sequence
            && doc.sequence < applied
        {
            return Err(Refused::Replay {
                applied,
                served: doc.sequence,
            });
        }
        if doc.expires <= now {
            return Err(Refused::Expired {
                expires: doc
                    .expires
                    .to_offset_date_time()
                    .format(&::time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The packages the document marks active, for an automatic activation.
    pub fn wants_active(&self, package_id: Uuid) -> bool {
        self.activate == ActivateMode::Auto
            && self
                .plan
                .iter()
                .any(|p| p.active && p.package_id == package_id)
    }
}

/// Why a document was not applied. Each is a metric's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the document is malformed: {0}")]
    Malformed(String),
    #[error("signature_invalid: {0}")]
    Signature(String),
    #[error(
        "the document is for channel {served:?}, but this channel follows {followed:?}: refused"
    )]
    OtherChannel { followed: String, served: String },
    #[error(
        "replay: the document's sequence {served} is lower than the {applied} already applied (an old document served again): refused"
    )]
    Replay { applied: u64, served: u64 },
    #[error("expired: the document expired at {expires} (a frozen document): refused")]
    Expired { expires: String },
}

impl Refused {
    /// The metric's reason label.
    pub fn reason(&self) -> RefusedReason {
        match self {
            Refused::Malformed(_) | Refused::OtherChannel { .. } => RefusedReason::Malformed,
            Refused::Signature(_) => RefusedReason::Signature,
            Refused::Replay { .. } => RefusedReason::Replay,
            Refused::Expired { .. } => RefusedReason::Expired,
        }
    }
}

/// Why documents are refused, for `packd_channel_documents_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusedReason {
    Malformed,
    Signature,
    Replay,
    Expired,
}

/// A channel document, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub channel: String,
    pub sequence: u64,
    pub expires: Timestamp,
    pub entries: Vec<Entry>,
}

/// One package of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: PackageName,
    pub version: PackageVersion,
    /// Absolute: a relative URL is resolved against the document's.
    pub source: Source,
    pub active: bool,
    /// Percent of hosts that take it.
    pub rollout: u8,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    channel: String,
    sequence: u64,
    expires: String,
    packages: Vec<RawEntry>,
}

// Unknown fields are refused: a misspelt `rollout` read as absent would
// send a version to the whole fleet.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    version: String,
    url: String,
    sha256: String,
    #[serde(default)]
    size: Option<u64>,
    signature: String,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    rollout: Option<u8>,
}

impl Document {
    /// Reads a document fetched from `base` (its URL, against which
    /// relative entry URLs resolve).
    pub fn parse(bytes: &[u8], base: &str) -> Result<Document, Refused> {
        let bad = |m: String| Refused::Malformed(m);
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(bad(format!("it is over {MAX_DOCUMENT_BYTES} bytes")));
        }
        let raw: RawDocument = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a channel document: {e}")))?;
        check_channel_name(&raw.channel).map_err(|e| bad(e.to_string()))?;
        let expires = ::time::OffsetDateTime::parse(
            &raw.expires,
            &::time::format_description::well_known::Rfc3339,
        )
        .map(Timestamp::from_offset_date_time)
        .map_err(|_| bad("expires is not an RFC 3339 time".into()))?;
        if raw.packages.len() > MAX_ENTRIES {
            return Err(bad(format!(
                "it lists {} packages, more than {MAX_ENTRIES}",
                raw.packages.len()
            )));
        }
        let base = url::Url::parse(base).map_err(|e| bad(format!("the channel URL: {e}")))?;
        let mut entries = Vec::with_capacity(raw.packages.len());
        let mut seen = std::collections::HashSet::new();
        let mut active_names = std::collections::HashSet::new();
        for (i, e) in raw.packages.into_iter().enumerate() {
            let at = |m: &str| bad(format!("packages[{i}]: {m}"));
            let name = PackageName::parse(e.name).map_err(|v| at(&v.to_string()))?;
            let version = PackageVersion::parse(e.version).map_err(|v| at(&v.to_string()))?;
            if !seen.insert((name.clone(), version.clone())) {
                return Err(at(&format!("{name}@{version} is listed twice")));
            }
            if e.active && !active_names.insert(name.clone()) {
                return Err(at(&format!("a second version of {name} is marked active")));
            }
            let rollout = e.rollout.unwrap_or(100);
            if rollout > 100 {
                return Err(at("rollout must be 0 to 100"));
            }
            if e.signature.is_empty() || e.signature.len() > MAX_SIGNATURE_BYTES {
                return Err(at("signature must be the text of a .minisig file"));
            }
            let url = base
                .join(&e.url)
                .map_err(|err| at(&format!("url: {err}")))?;
            let size = e.size.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
            let source = Source::parse(url.as_str(), &e.sha256, size, Schemes::Web)
                .map_err(|v| at(&v.to_string()))?
                .signed(Some(e.signature));
            entries.push(Entry {
                name,
                version,
                source,
                active: e.active,
                rollout,
            });
        }
        Ok(Document {
            channel: raw.channel,
            sequence: raw.sequence,
            expires,
            entries,
        })
    }
}

/// The trusted comment a channel document's signature must carry.
pub fn comment_for(channel: &str, sequence: u64) -> String {
    format!("channel={channel} sequence={sequence}")
}

/// A channel name: what a publisher calls the channel (`stable`).
pub fn check_channel_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "channel",
            format!("a channel name is 1 to {MAX_NAME_CHARS} of A-Z, a-z, 0-9, '-', '_' and '.'"),
        ))
    }
}

/// Whether the host `host_id` takes `name@version` at `rollout` percent:
/// `sha256(host_id + "/" + name + "/" + version)`, read as a big-endian
/// number, modulo 100, below `rollout`. The same host always gets the same
/// answer, and raising the percentage only adds hosts.
pub fn takes(host_id: Uuid, name: &str, version: &str, rollout: u8) -> bool {
    if rollout >= 100 {
        return true;
    }
    let digest = Sha256Hasher::digest(format!("{host_id}/{name}/{version}").as_bytes());
    let bucket = digest
        .iter()
        .fold(0u32, |r, b| (r * 256 + u32::from(*b)) % 100);
    bucket < u32::from(rollout)
}

/// Checks the URL of a channel's document: http or https, a host, no
/// credentials (they would be stored and shown), no query or fragment
/// (the signature is at the URL with `.minisig` appended).
pub fn check_url(text: &str) -> Result<String, ValidationError> {
    let bad = |m: &str| ValidationError::new("url", m);
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain white space or control characters"));
    }
    if !text.starts_with("http://") && !text.starts_with("https://") {
        return Err(bad("must start with http:// or https:// (in lower case)"));
    }
    let url = url::Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "must have no query or fragment: the signature is fetched from the URL with .minisig appended",
        ));
    }
    Ok(text.to_string())
}

/// Reads an interval (`5m`, `30s`): 1 s to 7 days.
pub fn parse_interval(text: &str) -> Result<Duration, ValidationError> {
    let bad = |m: &str| ValidationError::new("interval", m);
    let d = humantime::parse_duration(text)
        .map_err(|_| bad("must be a duration such as 30s, 5m or 1h"))?;
    if d < MIN_INTERVAL || d > MAX_INTERVAL {
        return Err(bad("must be from 1s to 7d"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn doc(packages: &str) -> String {
        format!(
            r#"{{"channel":"stable","sequence":3,"expires":"2030-01-01T00:00:00Z","packages":[{packages}]}}"#
        )
    }

    fn entry(name: &str, version: &str, extra: &str) -> String {
        format!(
            r#"{{"name":"{name}","version":"{version}","url":"a/{name}-{version}.tar.gz","sha256":"{DIGEST}","signature":"sig"{extra}}}"#
        )
    }

    const BASE: &str = "https://cdn.example/channels/stable/channel.json";

    #[test]
    fn a_document_resolves_relative_urls_against_its_own() {
        let d = Document::parse(
            doc(&entry("jq", "1.7", r#","active":true"#)).as_bytes(),
            BASE,
        )
        .unwrap();
        assert_eq!(d.channel, "stable");
        assert_eq!(d.sequence, 3);
        assert_eq!(
            d.entries[0].source.url(),
            "https://cdn.example/channels/stable/a/jq-1.7.tar.gz"
        );
        assert!(d.entries[0].active);
        assert_eq!(d.entries[0].rollout, 100);
    }

    #[test]
    fn what_a_document_may_not_say() {
        let refused = |text: String| Document::parse(text.as_bytes(), BASE).unwrap_err();
        let two = format!("{},{}", entry("jq", "1.7", ""), entry("jq", "1.7", ""));
        assert!(refused(doc(&two)).to_string().contains("listed twice"));
        let two_active = format!(
            "{},{}",
            entry("jq", "1.7", r#","active":true"#),
            entry("jq", "1.8", r#","active":true"#)
        );
        assert!(
            refused(doc(&two_active))
                .to_string()
                .contains("second version")
        );
        assert!(
            refused(doc(&entry("jq", "1.7", r#","rollout":101"#)))
                .to_string()
                .contains("rollout")
        );
        assert!(
            refused(doc(&entry("jq", "1.7", r#","rolout":10"#)))
                .to_string()
                .contains("rolout")
        );
        assert!(
            refused(doc(&entry(" jq", "1", "")))
                .to_string()
                .contains("packages[0]")
        );
        assert!(
            refused("[]".into())
                .to_string()
                .contains("not a channel document")
        );
        let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(matches!(
            Document::parse(&big, BASE),
            Err(Refused::Malformed(_))
        ));
        let ftp = doc(&entry("jq", "1.7", "").replace("a/jq-1.7.tar.gz", "ftp://x/y"));
        assert!(refused(ftp).to_string().contains("source.url"));
    }

    #[test]
    fn a_replay_an_expired_document_and_another_channel_are_refused() {
        let now = Timestamp::now();
        let mut c = Channel::new(
            Uuid::now_v7(),
            BASE.into(),
            ActivateMode::Auto,
            DEFAULT_INTERVAL,
            now,
        );
        let d = Document::parse(doc("").as_bytes(), BASE).unwrap();
        assert_eq!(c.judge(&d, now), Ok(()));
        c.name = Some("stable".into());
        c.sequence = Some(3);
        assert_eq!(
            c.judge(&d, now),
            Ok(()),
            "the same sequence again is idempotent"
        );
        c.sequence = Some(4);
        assert!(matches!(
            c.judge(&d, now),
            Err(Refused::Replay {
                applied: 4,
                served: 3
            })
        ));
        c.sequence = Some(1);
        let later =
            Timestamp::from_offset_date_time(::time::macros::datetime!(2031-01-01 0:00 UTC));
        assert!(matches!(c.judge(&d, later), Err(Refused::Expired { .. })));
        c.name = Some("beta".into());
        assert!(matches!(
            c.judge(&d, now),
            Err(Refused::OtherChannel { .. })
        ));
    }

    #[test]
    fn waves_take_about_their_share_and_only_grow() {
        let hosts: Vec<Uuid> = (0..2000).map(|i| Uuid::from_u128(i * 7919 + 1)).collect();
        let share = |p| hosts.iter().filter(|h| takes(**h, "jq", "1.7", p)).count();
        assert_eq!(share(0), 0);
        assert_eq!(share(100), 2000);
        // 2000 draws at 30 %: mean 600, sd 20.5; four sd either side.
        let thirty = share(30);
        assert!((518..=682).contains(&thirty), "{thirty}");
        for h in &hosts {
            if takes(*h, "jq", "1.7", 10) {
                assert!(
                    takes(*h, "jq", "1.7", 30),
                    "a host in the 10 % wave is in the 30 % one"
                );
            }
        }
    }

    #[test]
    fn intervals_are_bounded() {
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_interval("500ms").is_err());
        assert!(parse_interval("8d").is_err());
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn the_next_sync_is_spread_by_a_tenth() {
        let now = Timestamp::now();
        let c = Channel::new(
            Uuid::now_v7(),
            BASE.into(),
            ActivateMode::Manual,
            Duration::from_secs(100),
            now,
        );
        let early = c.next_after(now, 0.0).as_micros() - now.as_micros();
        let late = c.next_after(now, 1.0).as_micros() - now.as_micros();
        assert_eq!(early, 90_000_000);
        assert_eq!(late, 110_000_000);
    }
}
