//! The publisher's side of a channel (`packd channel publish`): from a
//! directory of artifacts, each with its `.minisig`, writes `channel.json`
//! and `channel.json.minisig`, ready for any static file server. Every
//! artifact's signature is checked with the publishing key first, so a
//! stale or foreign `.minisig` is caught here and not by the fleet.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::Timestamp;
use crate::domain::channel::{MAX_ENTRIES, check_channel_name, comment_for};
use crate::trust::{self, Signer};

/// The document's file name in DIR.
pub const DOCUMENT: &str = "channel.json";

/// What `packd channel publish` is asked to do.
pub struct Publish<'a> {
    pub dir: &'a Path,
    pub name: &'a str,
    pub sequence: u64,
    pub secret_key: &'a Path,
    pub password_file: Option<&'a Path>,
    /// Prefix of the artifacts' URLs; without it they are relative to the
    /// document (served from the same directory).
    pub base_url: Option<&'a str>,
    pub expires_in: Duration,
    /// NAME@VERSION marked active.
    pub active: &'a [String],
    /// NAME@VERSION=PERCENT.
    pub rollout: &'a [String],
}

/// One artifact found in DIR.
struct Artifact {
    file: String,
    name: String,
    version: String,
    sha256: String,
    size: u64,
    signature: String,
}

/// Writes the document and its signature; returns their paths and the
/// number of packages listed.
pub fn publish(job: &Publish<'_>) -> anyhow::Result<(PathBuf, PathBuf, usize)> {
    check_channel_name(job.name).map_err(|e| anyhow::anyhow!("--name: {}", e.message))?;
    let document = job.dir.join(DOCUMENT);
    if let Some(previous) = previous_sequence(&document)?
        && job.sequence <= previous
    {
        bail!(
            "--sequence {} is not above {previous}, the sequence of the {} already in {}: every packd that applied it would refuse this one as a replay",
            job.sequence,
            DOCUMENT,
            job.dir.display()
        );
    }
    let signer = Signer::open(job.secret_key, job.password_file)?;
    let artifacts = artifacts(job.dir, &signer)?;
    if artifacts.len() > MAX_ENTRIES {
        bail!(
            "{} artifacts; a channel lists at most {MAX_ENTRIES}",
            artifacts.len()
        );
    }
    let key = |a: &Artifact| format!("{}@{}", a.name, a.version);
    let known: BTreeMap<String, &Artifact> = artifacts.iter().map(|a| (key(a), a)).collect();
    let mut active = BTreeMap::new();
    for reference in job.active {
        let Some(a) = known.get(reference) else {
            bail!(
                "--active {reference}: no artifact in {} is signed for it",
                job.dir.display()
            );
        };
        if let Some(other) = active.insert(a.name.clone(), reference.clone()) {
            bail!(
                "--active {reference}: {other} is marked active already; one version of a name is active"
            );
        }
    }
    let mut rollout = BTreeMap::new();
    for spec in job.rollout {
        let Some((reference, percent)) = spec.rsplit_once('=') else {
            bail!("--rollout {spec}: expected NAME@VERSION=PERCENT");
        };
        let percent: u8 = percent
            .parse()
            .ok()
            .filter(|p| *p <= 100)
            .with_context(|| format!("--rollout {spec}: the percentage must be 0 to 100"))?;
        if !known.contains_key(reference) {
            bail!(
                "--rollout {spec}: no artifact in {} is signed for {reference}",
                job.dir.display()
            );
        }
        rollout.insert(reference.to_string(), percent);
    }
    let entries: Vec<serde_json::Value> = known
        .iter()
        .map(|(reference, a)| {
            let url = match job.base_url {
                Some(base) => format!("{}/{}", base.trim_end_matches('/'), encode(&a.file)),
                None => encode(&a.file),
            };
            let mut entry = json!({
                "name": a.name,
                "version": a.version,
                "url": url,
                "sha256": a.sha256,
                "size": a.size,
                "signature": a.signature,
            });
            if active.get(&a.name) == Some(reference) {
                entry["active"] = json!(true);
            }
            if let Some(p) = rollout.get(reference) {
                entry["rollout"] = json!(p);
            }
            entry
        })
        .collect();
    let expires = Timestamp::now()
        .plus(job.expires_in)
        .to_offset_date_time()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| Timestamp::now().to_offset_date_time())
        .format(&time::format_description::well_known::Rfc3339)?;
    let body = json!({
        "channel": job.name,
        "sequence": job.sequence,
        "expires": expires,
        "packages": entries,
    });
    let mut text = serde_json::to_string_pretty(&body)?;
    text.push('\n');
    // Beside, then renamed over: a server never serves half a document.
    let beside = job.dir.join(format!(".{DOCUMENT}.new"));
    std::fs::write(&beside, &text).with_context(|| format!("cannot write {}", beside.display()))?;
    std::fs::rename(&beside, &document)
        .with_context(|| format!("cannot write {}", document.display()))?;
    let signature = signer.sign_file(
        &document,
        &comment_for(job.name, job.sequence),
        &format!("channel {} sequence {}", job.name, job.sequence),
    )?;
    Ok((document, signature, entries.len()))
}

/// The sequence of the document already in DIR, if there is one.
fn previous_sequence(document: &Path) -> anyhow::Result<Option<u64>> {
    let text = match std::fs::read(document) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", document.display())),
    };
    let value: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", document.display()))?;
    value["sequence"]
        .as_u64()
        .map(Some)
        .with_context(|| format!("{} has no sequence", document.display()))
}

/// Every regular file of DIR with a `.minisig` beside it, its signature
/// checked with the publishing key (and its trusted comment read for the
/// name and version).
fn artifacts(dir: &Path, signer: &Signer) -> anyhow::Result<Vec<Artifact>> {
    let mut found = Vec::new();
    let listing =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut names: Vec<String> = Vec::new();
    for entry in listing {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else {
            bail!("{}: a file name that is not UTF-8", entry.path().display());
        };
        names.push(name);
    }
    names.sort();
    for file in &names {
        if file.ends_with(".minisig") || file == DOCUMENT || file.starts_with('.') {
            continue;
        }
        let signature_file = format!("{file}.minisig");
        if !names.contains(&signature_file) {
            continue;
        }
        let path = dir.join(file);
        let signature = std::fs::read_to_string(dir.join(&signature_file))
            .with_context(|| format!("cannot read {signature_file}"))?;
        let comment = minisign_verify::Signature::decode(&signature)
            .map_err(|_| anyhow::anyhow!("{signature_file} is not a minisign signature"))?
            .trusted_comment()
            .to_string();
        let Some((name, version)) = comment
            .strip_prefix("name=")
            .and_then(|rest| rest.rsplit_once(" version="))
        else {
            bail!(
                "{signature_file}: its trusted comment is {comment:?}, not \"name=N version=V\" (sign with packd sign)"
            );
        };
        let vouched = trust::vouch(
            std::slice::from_ref(&signer.public),
            Some(&signature),
            name,
            version,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "{signature_file}: {e} (the publishing key is {})",
                signer.public.id
            )
        })?
        .context("a key is given")?;
        let mut stream = vouched.stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut reader = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut buffer = vec![0; 256 * 1024];
        loop {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            stream.update(&buffer[..n]);
            size += n as u64;
        }
        stream
            .finish()
            .map_err(|e| anyhow::anyhow!("{file}: {e}: sign it again"))?;
        found.push(Artifact {
            file: file.clone(),
            name: name.to_string(),
            version: version.to_string(),
            sha256: format!("{:x}", hasher.finalize()),
            size,
            signature,
        });
    }
    if found.is_empty() {
        bail!(
            "{} holds no artifact with a .minisig beside it (sign each with packd sign)",
            dir.display()
        );
    }
    Ok(found)
}

/// A file name as a relative URL: every byte outside the unreserved set
/// percent-encoded, so a name with a space, `#` or `?` stays one path.
fn encode(file: &str) -> String {
    file.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_become_one_relative_path() {
        assert_eq!(encode("app-1.0.tar.gz"), "app-1.0.tar.gz");
        assert_eq!(encode("a b#?.tgz"), "a%20b%23%3F.tgz");
        assert_eq!(encode("../x"), "..%2Fx");
    }
}
