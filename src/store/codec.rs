//! The byte encoding of stored records: postcard inside a version envelope.
//!
//! postcard is positional: adding a field to a stored struct silently changes
//! what old bytes mean. So every record type is an enum of versions
//! (`V1(..)`), a new field means a new variant plus a migration, and decoding
//! an unknown variant is an error the caller sees, never a panic.

use serde::{Serialize, de::DeserializeOwned};

use super::Failure;
use super::StoreError;

/// The fixed byte codes of a domain enum in records and index keys: one
/// table, read both ways. A code is a format: never change or reuse one.
macro_rules! stored_codes {
    ($what:literal, $domain:ident, $to:ident, $from:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        pub(crate) fn $to(v: $domain) -> u8 {
            match v {
                $($domain::$variant => $code),+
            }
        }

        pub(crate) fn $from(code: u8) -> Result<$domain, StoreError> {
            match code {
                $($code => Ok($domain::$variant),)+
                other => Err(StoreError::Failed(Failure::Corrupt(format!(
                    concat!("unknown ", $what, " code {}"),
                    other
                )))),
            }
        }
    };
}
pub(crate) use stored_codes;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value)
        .map_err(|e| StoreError::Failed(Failure::Internal(format!("encode record: {e}"))))
}

pub(crate) fn decode<T: DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| {
        StoreError::Failed(Failure::Corrupt(format!(
            "a record in table `{table}` cannot be decoded ({e}); \
             it may come from a newer packd"
        )))
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Envelope {
        V1(Inner),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        name: String,
        n: u64,
        maybe: Option<u128>,
    }

    #[test]
    fn round_trip() {
        let value = Envelope::V1(Inner {
            name: "ünïcode".into(),
            n: u64::MAX,
            maybe: Some(7),
        });
        let bytes = encode(&value).unwrap();
        assert_eq!(
            bytes[0], 0,
            "the envelope's first byte is the version variant"
        );
        assert_eq!(decode::<Envelope>("t", &bytes).unwrap(), value);
    }

    #[test]
    fn unknown_envelope_version_is_an_error() {
        let mut bytes = encode(&Envelope::V1(Inner {
            name: "x".into(),
            n: 1,
            maybe: None,
        }))
        .unwrap();
        bytes[0] = 9; // a V10 this binary has never heard of
        let err = decode::<Envelope>("packages", &bytes).unwrap_err();
        assert!(
            matches!(err, StoreError::Failed(Failure::Corrupt(ref m)) if m.contains("packages")),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_and_garbage_bytes_are_errors() {
        let bytes = encode(&Envelope::V1(Inner {
            name: "abcdef".into(),
            n: 300,
            maybe: Some(1),
        }))
        .unwrap();
        for cut in 0..bytes.len() {
            assert!(
                decode::<Envelope>("t", &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode::<Envelope>("t", &[0xff; 40]).is_err());
    }
}
