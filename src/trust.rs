//! Trust in publishers: the minisign public keys packd trusts
//! (`--trusted-key`), the checks a package's signature passes before any
//! byte is fetched (a minisign signature, prehashed, by a trusted key, its
//! trusted comment naming this very package), and the check over the bytes
//! as they stream by. The cryptography is minisign's own crates':
//! `minisign-verify` checks (streaming), `minisign` reads key files, makes
//! key pairs and signs (`packd keygen`, `packd sign`).
//!
//! Architecture invariant: no I/O but the reading of a key file given on
//! the command line; every refusal says why without echoing what a secret
//! file held.

use std::path::Path;
use std::sync::{Arc, RwLock};

/// Most bytes of a signature's text (a `.minisig` file is about 300).
pub const MAX_SIGNATURE_BYTES: usize = 4096;
/// Most bytes of a key file read for `--trusted-key`.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// One trusted key.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// minisign's key id: 16 hex digits, as `minisign` prints it.
    pub id: String,
    /// The untrusted comment of its `.pub` file, if it came from one.
    pub comment: Option<String>,
    /// The base64 line, as given or as the file held it.
    pub line: String,
    key: minisign_verify::PublicKey,
}

impl TrustedKey {
    /// `--trusted-key`: the base64 line of a minisign public key, or the
    /// path of a `.pub` file holding one.
    pub fn parse(arg: &str) -> Result<TrustedKey, String> {
        let arg = arg.trim();
        if let Ok(key) = minisign::PublicKey::from_base64(arg) {
            return TrustedKey::of(&key, None);
        }
        let path = Path::new(arg);
        let text = read_small(path).map_err(|e| {
            format!("{arg:?} is neither a minisign public key nor a readable key file: {e}")
        })?;
        let key = minisign::PublicKeyBox::from_string(&text)
            .and_then(|b| b.into_public_key())
            .map_err(|_| format!("{} is not a minisign public key file", path.display()))?;
        let comment = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("untrusted comment:"))
            .map(|c| c.trim().to_string());
        TrustedKey::of(&key, comment)
    }

    fn of(key: &minisign::PublicKey, comment: Option<String>) -> Result<TrustedKey, String> {
        let line = key.to_base64();
        let verify = minisign_verify::PublicKey::from_base64(&line)
            .map_err(|e| format!("unusable minisign public key: {e}"))?;
        Ok(TrustedKey {
            id: key_id(key.keynum()),
            comment,
            line,
            key: verify,
        })
    }
}

/// minisign's spelling of a key id: the 8 bytes as a little-endian number
/// in 16 upper-case hex digits.
fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    let len = keynum.len().min(8);
    n[..len].copy_from_slice(&keynum[..len]);
    format!("{:016X}", u64::from_le_bytes(n))
}

fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// The keys trusted now. Cheap to clone; a reload replaces the set whole,
/// and a check in progress keeps the set it began with.
#[derive(Clone, Default)]
pub struct Trust(Arc<RwLock<Arc<Vec<TrustedKey>>>>);

impl Trust {
    pub fn new(keys: Vec<TrustedKey>) -> Trust {
        Trust(Arc::new(RwLock::new(Arc::new(keys))))
    }

    pub fn keys(&self) -> Arc<Vec<TrustedKey>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether sources must be signed: at least one key is trusted.
    pub fn required(&self) -> bool {
        !self.keys().is_empty()
    }

    pub fn replace(&self, keys: Vec<TrustedKey>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }
}

/// Checks the text of a signature when a source is given one: a minisign
/// signature of at most 4 KiB. Whether it vouches for anything is checked
/// at the download.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "the signature is over {MAX_SIGNATURE_BYTES} bytes; a .minisig file is about 300"
        ));
    }
    minisign_verify::Signature::decode(text)
        .map(|_| ())
        .map_err(|_| "not the text of a minisign signature (.minisig)".to_string())
}

/// The trusted comment a package's signature must carry.
pub fn comment_for(name: &str, version: &str) -> String {
    format!("name={name} version={version}")
}

/// A signature that passed every check but the bytes': decoded, by a
/// trusted key, for this package.
#[derive(Clone)]
pub struct Vouched {
    signature: minisign_verify::Signature,
    key: minisign_verify::PublicKey,
    /// The id of the key that made it, for the log.
    pub key_id: String,
}

impl Vouched {
    /// The check over the bytes, fed as they come.
    pub fn stream(&self) -> Stream<'_> {
        Stream(
            self.key
                .verify_stream(&self.signature)
                .expect("checked in vouch: a prehashed signature by this key"),
        )
    }
}

/// The signature check over bytes fed in order.
pub struct Stream<'a>(minisign_verify::StreamVerifier<'a>);

impl Stream<'_> {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Whether the bytes fed are the ones signed.
    pub fn finish(mut self) -> Result<(), String> {
        self.0.finalize().map_err(|_| {
            "signature_invalid: the signature does not match the artifact's bytes".to_string()
        })
    }
}

/// Everything about a package's signature that needs no byte of the
/// artifact. `None` when no key is trusted (a signature, if given, is then
/// not checked). Every refusal starts with `signature_invalid`.
pub fn vouch(
    keys: &[TrustedKey],
    signature: Option<&str>,
    name: &str,
    version: &str,
) -> Result<Option<Vouched>, String> {
    if keys.is_empty() {
        return Ok(None);
    }
    let refuse = |why: String| Err(format!("signature_invalid: {why}"));
    let Some(text) = signature else {
        return refuse("the source has no signature, and packd trusts publisher keys".into());
    };
    let Ok(parsed) = minisign_verify::Signature::decode(text) else {
        return refuse("the source's signature is not a minisign signature".into());
    };
    let wanted = comment_for(name, version);
    if parsed.trusted_comment() != wanted {
        return refuse(format!(
            "the signature's trusted comment is {:?}, not {wanted:?}: it was made for another package",
            parsed.trusted_comment()
        ));
    }
    for trusted in keys {
        match trusted.key.verify_stream(&parsed) {
            Ok(_) => {
                return Ok(Some(Vouched {
                    signature: parsed.clone(),
                    key: trusted.key.clone(),
                    key_id: trusted.id.clone(),
                }));
            }
            Err(minisign_verify::Error::UnsupportedLegacyMode) => {
                return refuse(
                    "a legacy (not prehashed) signature; sign with minisign 0.9 or later, or packd sign"
                        .into(),
                );
            }
            Err(_) => {}
        }
    }
    let by = minisign::SignatureBox::from_string(text)
        .map(|b| key_id(b.keynum()))
        .unwrap_or_else(|_| "?".into());
    refuse(format!(
        "the signature is by key {by}, which packd does not trust"
    ))
}

/// Checks a whole document (a channel's) against its detached signature
/// with the trusted keys; returns the signature's trusted comment, which
/// the caller compares with what the document says.
pub fn verify_document(
    keys: &[TrustedKey],
    signature: &str,
    bytes: &[u8],
) -> Result<String, String> {
    let Ok(parsed) = minisign_verify::Signature::decode(signature) else {
        return Err("the .minisig is not a minisign signature".into());
    };
    for trusted in keys {
        if trusted.key.verify(bytes, &parsed, false).is_ok() {
            return Ok(parsed.trusted_comment().to_string());
        }
    }
    let by = minisign::SignatureBox::from_string(signature)
        .map(|b| key_id(b.keynum()))
        .unwrap_or_else(|_| "?".into());
    if keys.iter().any(|k| k.id == by) {
        Err("the signature does not match the document's bytes (or its trusted comment was altered)".into())
    } else {
        Err(format!(
            "the document is signed by key {by}, which packd does not trust"
        ))
    }
}

/// `packd keygen`: a new key pair, the secret key unencrypted (mode 0600)
/// at `PREFIX.key`, the public one at `PREFIX.pub`. Refuses to overwrite.
pub fn keygen(prefix: &Path) -> anyhow::Result<TrustedKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pair = minisign::KeyPair::generate_unencrypted_keypair()
        .map_err(|e| anyhow::anyhow!("cannot make a key pair: {e}"))?;
    let id = key_id(pair.pk.keynum());
    let public = pair
        .pk
        .to_box()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_string();
    let secret = pair
        .sk
        .to_box(Some(&format!("packd secret key {id}")))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_string();
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        std::path::PathBuf::from(p)
    };
    let files = [(with(".key"), secret, 0o600), (with(".pub"), public, 0o644)];
    if let Some((there, _, _)) = files.iter().find(|(p, _, _)| p.exists()) {
        anyhow::bail!(
            "{} exists; packd keygen never overwrites a key",
            there.display()
        );
    }
    for (path, text, mode) in files {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    TrustedKey::of(&pair.pk, Some(format!("minisign public key: {id}"))).map_err(anyhow::Error::msg)
}

/// What `packd sign` is asked to do.
pub struct SignJob<'a> {
    /// Made by `packd keygen` or `minisign -G`.
    pub secret_key: &'a Path,
    /// The first line is the secret key's password; without it an
    /// encrypted key asks on the terminal.
    pub password_file: Option<&'a Path>,
    pub name: &'a str,
    pub version: &'a str,
    pub artifact: &'a Path,
}

/// `packd sign`: signs the artifact for a package, writing
/// `ARTIFACT.minisig`; returns its path.
pub fn sign(job: &SignJob<'_>) -> anyhow::Result<std::path::PathBuf> {
    let SignJob {
        secret_key,
        password_file,
        name,
        version,
        artifact,
    } = *job;
    Signer::open(secret_key, password_file)?.sign_file(
        artifact,
        &comment_for(name, version),
        &format!("signature for {name} {version}"),
    )
}

/// A publisher's opened secret key, and its public key (to check what it
/// signed before publishing it).
pub struct Signer {
    key: minisign::SecretKey,
    pub public: TrustedKey,
}

impl Signer {
    /// Opens a secret key: an unencrypted one (packd keygen) as it is;
    /// else with its password, from the file or the terminal.
    pub fn open(secret_key: &Path, password_file: Option<&Path>) -> anyhow::Result<Signer> {
        use anyhow::Context;
        let text = std::fs::read_to_string(secret_key)
            .with_context(|| format!("cannot read {}", secret_key.display()))?;
        let boxed = || {
            minisign::SecretKeyBox::from_string(&text).map_err(|_| {
                anyhow::anyhow!("{} is not a minisign secret key", secret_key.display())
            })
        };
        let password = password_file
            .map(|p| {
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))
                    .map(|t| t.lines().next().unwrap_or("").to_string())
            })
            .transpose()?;
        let key = match boxed()?.into_unencrypted_secret_key() {
            Ok(key) => key,
            Err(_) => boxed()?
                .into_secret_key(password)
                .map_err(|e| anyhow::anyhow!("cannot open the secret key: {e}"))?,
        };
        let public = minisign::PublicKey::from_secret_key(&key)
            .map_err(|e| anyhow::anyhow!("cannot read the secret key's public key: {e}"))?;
        let public = TrustedKey::of(&public, None).map_err(anyhow::Error::msg)?;
        Ok(Signer { key, public })
    }

    /// Signs `file` with this trusted comment, writing `FILE.minisig`
    /// beside it; returns its path.
    pub fn sign_file(
        &self,
        file: &Path,
        trusted_comment: &str,
        untrusted_comment: &str,
    ) -> anyhow::Result<std::path::PathBuf> {
        use anyhow::Context;
        let data =
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        let signature = minisign::sign(
            None,
            &self.key,
            std::io::BufReader::new(data),
            Some(trusted_comment),
            Some(untrusted_comment),
        )
        .map_err(|e| anyhow::anyhow!("cannot sign: {e}"))?;
        let mut out = file.as_os_str().to_owned();
        out.push(".minisig");
        let out = std::path::PathBuf::from(out);
        std::fs::write(&out, signature.into_string())
            .with_context(|| format!("cannot write {}", out.display()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path) -> (TrustedKey, std::path::PathBuf) {
        let prefix = dir.join("publisher");
        let key = keygen(&prefix).unwrap();
        (key, dir.join("publisher.key"))
    }

    fn signed(dir: &Path, secret: &Path, name: &str, version: &str, bytes: &[u8]) -> String {
        let artifact = dir.join(format!("{name}-{version}.bin"));
        std::fs::write(&artifact, bytes).unwrap();
        let sig = sign(&SignJob {
            secret_key: secret,
            password_file: None,
            name,
            version,
            artifact: &artifact,
        })
        .unwrap();
        std::fs::read_to_string(sig).unwrap()
    }

    #[test]
    fn a_signature_vouches_for_its_package_and_its_bytes_only() {
        let dir = tempfile::tempdir().unwrap();
        let (key, secret) = pair(dir.path());
        let keys = vec![key.clone()];
        let text = signed(dir.path(), &secret, "jq", "1.7", b"the bytes");
        let vouched = vouch(&keys, Some(&text), "jq", "1.7").unwrap().unwrap();
        assert_eq!(vouched.key_id, key.id);
        let mut stream = vouched.stream();
        stream.update(b"the ");
        stream.update(b"bytes");
        assert!(stream.finish().is_ok());
        let mut other = vouched.stream();
        other.update(b"other bytes");
        assert!(other.finish().unwrap_err().starts_with("signature_invalid"));

        for (name, version) in [("jq", "1.8"), ("yq", "1.7")] {
            let e = vouch(&keys, Some(&text), name, version).err().unwrap();
            assert!(e.contains("another package"), "{e}");
        }
        // No key trusted: nothing is checked.
        assert!(vouch(&[], None, "jq", "1.7").unwrap().is_none());
        let e = vouch(&keys, None, "jq", "1.7").err().unwrap();
        assert!(e.contains("no signature"), "{e}");
        // Another publisher's key.
        let other_dir = tempfile::tempdir().unwrap();
        let (stranger, stranger_secret) = pair(other_dir.path());
        let theirs = signed(
            other_dir.path(),
            &stranger_secret,
            "jq",
            "1.7",
            b"the bytes",
        );
        let e = vouch(&keys, Some(&theirs), "jq", "1.7").err().unwrap();
        assert!(e.contains(&stranger.id) && e.contains("not trust"), "{e}");
        // Both trusted (a rotation): either signs.
        let both = vec![key, stranger];
        assert!(vouch(&both, Some(&theirs), "jq", "1.7").unwrap().is_some());
    }

    #[test]
    fn keys_are_read_from_a_line_or_a_file_and_junk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = pair(dir.path());
        let from_file =
            TrustedKey::parse(dir.path().join("publisher.pub").to_str().unwrap()).unwrap();
        assert_eq!(from_file.id, key.id);
        assert_eq!(
            from_file.comment.as_deref(),
            Some(format!("minisign public key: {}", key.id).as_str())
        );
        let from_line = TrustedKey::parse(&key.line).unwrap();
        assert_eq!(from_line.id, key.id);
        assert!(TrustedKey::parse("RWQnotakey").is_err());
        let secret = dir.path().join("publisher.key");
        let e = TrustedKey::parse(secret.to_str().unwrap()).unwrap_err();
        assert!(
            !e.contains("RW"),
            "a refusal must not echo a secret file: {e}"
        );
        // keygen never overwrites.
        assert!(keygen(&dir.path().join("publisher")).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn signature_text_is_bounded_and_must_be_minisign() {
        assert!(check_text("junk").is_err());
        assert!(check_text(&"x".repeat(MAX_SIGNATURE_BYTES + 1)).is_err());
    }
}
