//! API keys: roles, the secret format, and the hash that is all the store keeps.
//!
//! A generated secret is `packd_` + 43 base62 characters (32 bytes from the OS
//! generator) + 6 base62 characters of checksum. The checksum lets a malformed
//! or mistyped key be refused without touching the store, and the prefix makes
//! leaked keys easy to spot in logs and scanners. Secrets are high-entropy, so
//! a plain SHA-256 is the right hash: a slow password hash would add latency
//! to every request and no security.

use std::fmt;

use sha2::{Digest, Sha256};

use super::{Timestamp, ValidationError};

pub const SECRET_PREFIX: &str = "packd_";
/// Shortest value accepted as a key at all (the bootstrap key's floor too).
pub const MIN_SECRET_LEN: usize = 32;
const BODY_LEN: usize = 43;
const CHECK_LEN: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const KEY_NAME_MAX_CHARS: usize = 100;

/// What a key may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SHA-256 of a secret: the only form in which a secret is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short on purpose: enough to tell two apart in a debug print.
        write!(f, "SecretHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }
}

/// Why a presented value is not even worth looking up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    TooShort,
    BadChecksum,
}

fn base62_fixed(bytes: &[u8], width: usize) -> String {
    // Repeated division of a big-endian number by 62; `width` digits, zero-padded.
    let mut num = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    for _ in 0..width {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 62) as u8;
            rem = acc % 62;
        }
        digits.push(BASE62[rem as usize]);
    }
    digits.reverse();
    String::from_utf8(digits).expect("base62 is ASCII")
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    base62_fixed(&digest[..4], CHECK_LEN)
}

/// Makes a new secret from 32 bytes of the OS random generator (not a
/// user-space generator: a key must not depend on a seed's quality).
pub fn generate_secret() -> Result<String, String> {
    use rand::TryRng;
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("the OS random generator failed: {e}"))?;
    let body = base62_fixed(&bytes, BODY_LEN);
    let check = checksum(&body);
    Ok(format!("{SECRET_PREFIX}{body}{check}"))
}

/// A secret of the generated form made from a fixed `body` of 43
/// alphanumerics, its checksum added: for examples that must have the
/// shape of a real secret (a random one would change the description at
/// every start).
pub fn secret_of(body: &str) -> String {
    format!("{SECRET_PREFIX}{body}{}", checksum(body))
}

/// Cheap checks before any lookup: long enough, and for values in the
/// `packd_` form, a valid checksum. Other long values (an operator's own
/// bootstrap key) pass through to the lookup.
pub fn check_format(presented: &str) -> Result<(), FormatError> {
    if presented.len() < MIN_SECRET_LEN {
        return Err(FormatError::TooShort);
    }
    if let Some(rest) = presented.strip_prefix(SECRET_PREFIX) {
        if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FormatError::BadChecksum);
        }
        let (body, check) = rest.split_at(BODY_LEN);
        if checksum(body) != check {
            return Err(FormatError::BadChecksum);
        }
    }
    Ok(())
}

/// The part of a secret shown in listings: enough to recognise it, far too
/// little to use it.
pub fn display_prefix(secret: &str) -> String {
    let n = if secret.starts_with(SECRET_PREFIX) {
        SECRET_PREFIX.len() + 6
    } else {
        4
    };
    secret.chars().take(n).collect()
}

/// A key's display name: 1 to 100 characters, printable, trimmed.
pub fn parse_key_name(name: String) -> Result<String, ValidationError> {
    super::package::check_text("name", &name, KEY_NAME_MAX_CHARS)?;
    Ok(name)
}

/// An API key as the service knows it. The secret itself is never here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: uuid::Uuid,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub hash: SecretHash,
    pub active: bool,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub use_count: u64,
    /// The secret replaced by the last rotation, valid until the grace ends.
    pub previous: Option<(SecretHash, Timestamp)>,
    /// This key's own request rate limit (per second), overriding the
    /// server's: `None` takes the server's, `Some(0)` means unlimited.
    pub rate_limit: Option<u32>,
}

/// Why a known key may not be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Inactive,
    Expired,
}

impl ApiKey {
    /// Whether the key may authenticate at `now` with the secret of `hash`;
    /// `None` when `hash` is not (or no longer) one of its secrets.
    pub fn check(&self, hash: &SecretHash, now: Timestamp) -> Option<Result<(), KeyRefusal>> {
        let current = self.hash == *hash;
        let in_grace = self
            .previous
            .is_some_and(|(old, until)| old == *hash && now < until);
        if !current && !in_grace {
            return None;
        }
        Some(if !self.active {
            Err(KeyRefusal::Inactive)
        } else if self.expires_at.is_some_and(|e| e <= now) {
            Err(KeyRefusal::Expired)
        } else {
            Ok(())
        })
    }

    /// An active admin key that has not expired.
    pub fn is_live_admin(&self, now: Timestamp) -> bool {
        self.role == Role::Admin && self.active && self.expires_at.is_none_or(|e| e > now)
    }

    /// An active admin key that never expires: one that stays usable.
    pub fn is_lasting_admin(&self) -> bool {
        self.role == Role::Admin && self.active && self.expires_at.is_none()
    }
}

/// Whether changing key `before` into `after` (`None`: deleted), with
/// `others` unchanged, leaves an admin key usable now and, if there was one,
/// an admin key that never expires: admins that all expire lock everyone
/// out later, when nobody is looking.
pub fn admin_remains<'a>(
    before: &ApiKey,
    after: Option<&ApiKey>,
    others: impl Iterator<Item = &'a ApiKey> + Clone,
    now: Timestamp,
) -> bool {
    let keeps = |rule: &dyn Fn(&ApiKey) -> bool| {
        !rule(before) || after.is_some_and(rule) || others.clone().any(rule)
    };
    keeps(&|k| k.is_live_admin(now)) && keeps(&|k| k.is_lasting_admin())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_documented_shape() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("packd_"));
        assert_eq!(a.len(), 6 + 43 + 6);
        assert!(a[6..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(check_format(&a), Ok(()));
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let s = generate_secret().unwrap();
        let mut bytes = s.into_bytes();
        let i = 20;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(check_format(&tampered), Err(FormatError::BadChecksum));
        assert_eq!(
            check_format("packd_tooshortbutlongenoughoverall32"),
            Err(FormatError::BadChecksum)
        );
    }

    #[test]
    fn short_values_are_refused_and_other_long_values_pass() {
        assert_eq!(check_format("short"), Err(FormatError::TooShort));
        assert_eq!(check_format(&"x".repeat(31)), Err(FormatError::TooShort));
        assert_eq!(check_format(&"x".repeat(32)), Ok(()));
    }

    #[test]
    fn base62_is_fixed_width_and_big_endian() {
        assert_eq!(base62_fixed(&[0], 3), "000");
        assert_eq!(base62_fixed(&[61], 2), "0z");
        assert_eq!(base62_fixed(&[0, 62], 2), "10");
        assert_eq!(base62_fixed(&[0xff; 32], 43).len(), 43);
    }

    #[test]
    fn roles_include_the_ones_before() {
        assert!(Role::Admin.allows(Role::Read));
        assert!(Role::Write.allows(Role::Write));
        assert!(!Role::Read.allows(Role::Write));
        assert!(!Role::Write.allows(Role::Admin));
    }

    fn key() -> ApiKey {
        ApiKey {
            id: uuid::Uuid::now_v7(),
            name: "k".into(),
            role: Role::Write,
            prefix: "packd_abcdef".into(),
            hash: SecretHash::of("new"),
            active: true,
            created_at: Timestamp::from_micros(0),
            expires_at: None,
            last_used_at: None,
            use_count: 0,
            previous: Some((SecretHash::of("old"), Timestamp::from_micros(100))),
            rate_limit: None,
        }
    }

    #[test]
    fn check_covers_rotation_grace_state_and_expiry() {
        let mut k = key();
        let at = Timestamp::from_micros;
        assert_eq!(k.check(&SecretHash::of("new"), at(50)), Some(Ok(())));
        assert_eq!(k.check(&SecretHash::of("old"), at(50)), Some(Ok(())));
        assert_eq!(k.check(&SecretHash::of("old"), at(100)), None, "grace over");
        assert_eq!(k.check(&SecretHash::of("other"), at(50)), None);
        k.expires_at = Some(at(60));
        assert_eq!(
            k.check(&SecretHash::of("new"), at(60)),
            Some(Err(KeyRefusal::Expired))
        );
        k.active = false;
        assert_eq!(
            k.check(&SecretHash::of("new"), at(10)),
            Some(Err(KeyRefusal::Inactive))
        );
    }

    #[test]
    fn an_admin_that_never_expires_must_remain() {
        let now = Timestamp::from_micros(1_000);
        let admin = |expires_at: Option<i64>| ApiKey {
            id: uuid::Uuid::now_v7(),
            role: Role::Admin,
            expires_at: expires_at.map(Timestamp::from_micros),
            ..key()
        };
        let lasting = admin(None);
        let expiring = admin(Some(10_000));
        let deactivated = |k: &ApiKey| ApiKey {
            active: false,
            ..k.clone()
        };
        // The last lasting admin cannot go, even with a live expiring one.
        assert!(!admin_remains(&lasting, None, [&expiring].into_iter(), now));
        let off = deactivated(&lasting);
        assert!(!admin_remains(
            &lasting,
            Some(&off),
            [&expiring].into_iter(),
            now
        ));
        let soon = admin(Some(5_000));
        assert!(!admin_remains(
            &lasting,
            Some(&soon),
            [&expiring].into_iter(),
            now
        ));
        // With another lasting admin it may; an expiring one may always go
        // while a lasting one stays.
        let other = admin(None);
        assert!(admin_remains(&lasting, None, [&other].into_iter(), now));
        assert!(admin_remains(&expiring, None, [&lasting].into_iter(), now));
        // Where no admin ever was lasting, the live one is what must stay.
        assert!(!admin_remains(&expiring, None, std::iter::empty(), now));
        let writer = key();
        assert!(admin_remains(&writer, None, std::iter::empty(), now));
    }
}
