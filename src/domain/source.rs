//! Where a package's files come from: a URL and the SHA-256 (and, if the
//! client knows it, the size) its bytes must have. Checked here, so every
//! source in the store is one packd will agree to fetch.

use std::fmt;

use super::ValidationError;

/// Longest source URL accepted.
pub const MAX_URL_CHARS: usize = 2048;

/// A package's source, valid by construction (`Source::parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    url: String,
    sha256: Sha256,
    size: Option<u64>,
    /// The text of a minisign signature (`.minisig`), checked by the API
    /// for its form and at each download for what it vouches.
    signature: Option<String>,
}

/// A SHA-256 digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// 64 lowercase hex digits, as the API spells a digest.
    pub fn parse_hex(hex: &str) -> Option<Sha256> {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Sha256(out))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Which URL schemes a server accepts for sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schemes {
    /// http and https.
    #[default]
    Web,
    /// http, https and file (`--allow-file-sources`): a client could then
    /// make packd read any file the service may read.
    WebAndFile,
}

impl Source {
    /// Checks a source as a client sent it. Each rule broken names its field.
    pub fn parse(
        url: &str,
        sha256: &str,
        size: Option<i64>,
        schemes: Schemes,
    ) -> Result<Source, ValidationError> {
        let bad_url = |message: &str| ValidationError::new("source.url", message);
        let chars = url.chars().count();
        if chars == 0 || chars > MAX_URL_CHARS {
            return Err(bad_url(&format!(
                "must be 1 to {MAX_URL_CHARS} characters, got {chars}"
            )));
        }
        // The URL parser forgives a leading space or an upper-case scheme;
        // every later use of the text (the scheme check of a fetch, the
        // file name of a single-file artifact) must not have to.
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad_url(
                "must not contain white space or control characters (percent-encode them)",
            ));
        }
        if !["http://", "https://", "file://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(bad_url(
                "must start with http://, https:// or file:// (the scheme in lower case)",
            ));
        }
        let parsed = url::Url::parse(url).map_err(|e| bad_url(&format!("is not a URL ({e})")))?;
        match (parsed.scheme(), schemes) {
            ("http" | "https", _) => {
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(bad_url("must name a host"));
                }
            }
            ("file", Schemes::WebAndFile) => {}
            ("file", Schemes::Web) => {
                return Err(bad_url(
                    "file URLs are refused unless the server runs with --allow-file-sources",
                ));
            }
            (other, _) => {
                return Err(bad_url(&format!(
                    "must be an http or https URL, not {other}"
                )));
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad_url(
                "must not carry a user or password (they would be stored and shown); \
                 serve the artifact where no credentials are needed",
            ));
        }
        let sha256 = Sha256::parse_hex(sha256).ok_or_else(|| {
            ValidationError::new("source.sha256", "must be 64 lowercase hexadecimal digits")
        })?;
        let size = match size {
            None => None,
            Some(n) => Some(u64::try_from(n).map_err(|_| {
                ValidationError::new("source.size", "must be a number of bytes, 0 or more")
            })?),
        };
        Ok(Source {
            url: url.to_string(),
            sha256,
            size,
            signature: None,
        })
    }

    /// A source read back from the store, which was checked when written.
    pub fn from_stored(
        url: String,
        sha256: [u8; 32],
        size: Option<u64>,
        signature: Option<String>,
    ) -> Source {
        Source {
            url,
            sha256: Sha256(sha256),
            size,
            signature,
        }
    }

    /// The same source with this signature text (checked by the caller).
    pub fn signed(mut self, signature: Option<String>) -> Source {
        self.signature = signature;
        self
    }

    pub fn signature(&self) -> Option<&str> {
        self.signature.as_deref()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn field(e: ValidationError) -> &'static str {
        e.field
    }

    #[test]
    fn a_web_source_with_a_digest_is_accepted() {
        let s = Source::parse(
            "https://example.org/jq-1.7.tar.gz",
            DIGEST,
            Some(10),
            Schemes::Web,
        )
        .unwrap();
        assert_eq!(s.url(), "https://example.org/jq-1.7.tar.gz");
        assert_eq!(s.sha256().to_string(), DIGEST);
        assert_eq!(s.size(), Some(10));
        assert!(Source::parse("http://127.0.0.1:8000/a", DIGEST, None, Schemes::Web).is_ok());
    }

    #[test]
    fn each_broken_rule_names_its_field() {
        let url = |u: &str| field(Source::parse(u, DIGEST, None, Schemes::Web).unwrap_err());
        assert_eq!(url("ftp://example.org/a"), "source.url");
        assert_eq!(url("not a url"), "source.url");
        assert_eq!(url("https://user:secret@example.org/a"), "source.url");
        assert_eq!(url("https://token@example.org/a"), "source.url");
        assert_eq!(url("file:///etc/passwd"), "source.url");
        assert_eq!(url(""), "source.url");
        // What the URL parser would forgive, refused before it can.
        for forgiven in [
            "FILE:///etc/passwd",
            " https://example.org/a",
            "https://example.org/a ",
            "HTTPS://example.org/a",
            "https://example.org/a b",
            "\thttps://example.org/a",
        ] {
            let err = Source::parse(forgiven, DIGEST, None, Schemes::WebAndFile).unwrap_err();
            assert_eq!(err.field, "source.url", "{forgiven:?}");
        }
        let long = format!("https://example.org/{}", "a".repeat(MAX_URL_CHARS));
        assert_eq!(url(&long), "source.url");
        let digest = |d: &str| {
            field(Source::parse("https://example.org/a", d, None, Schemes::Web).unwrap_err())
        };
        assert_eq!(digest(&DIGEST.to_uppercase()), "source.sha256");
        assert_eq!(digest(&DIGEST[1..]), "source.sha256");
        assert_eq!(digest(&format!("{}g", &DIGEST[1..])), "source.sha256");
        let size = Source::parse("https://example.org/a", DIGEST, Some(-1), Schemes::Web);
        assert_eq!(field(size.unwrap_err()), "source.size");
    }

    #[test]
    fn file_urls_only_when_allowed() {
        assert!(Source::parse("file:///srv/a.tar", DIGEST, None, Schemes::WebAndFile).is_ok());
        let refused = Source::parse("file:///srv/a.tar", DIGEST, None, Schemes::Web).unwrap_err();
        assert!(refused.message.contains("--allow-file-sources"));
    }

    #[test]
    fn digests_round_trip() {
        let d = Sha256::parse_hex(DIGEST).unwrap();
        assert_eq!(d.to_string(), DIGEST);
    }
}
