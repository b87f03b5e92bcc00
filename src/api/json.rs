//! `FastJson`: JSON responses written straight from serde.
//!
//! poem-openapi's `Json` first turns the value into a `serde_json::Value` tree
//! (a map and several small allocations per object) and then writes that tree.
//! For a page of 50 packages the tree cost more than reading the page from the
//! store (profiled with `perf`: half the time in malloc and BTreeMap inserts).
//! `FastJson` keeps `T`'s schema for the OpenAPI description and writes the
//! body with `T`'s `Serialize`; a test per type checks that both give the same
//! JSON, so the description cannot drift from what is sent.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use serde::Serialize;

use super::problem::{ErrorCode, Problem};

pub struct FastJson<T>(pub T);

impl<T: Type> Payload for FastJson<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + Serialize> IntoResponse for FastJson<T> {
    fn into_response(self) -> Response {
        // A page of 50 packages is about 12 KiB: start big enough that most
        // bodies are written without growing (and copying) the buffer.
        let mut body = Vec::with_capacity(16 * 1024);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => Response::builder()
                .content_type(<Self as Payload>::CONTENT_TYPE)
                .body(body),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a response");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error",
                )
                .into_response()
            }
        }
    }
}

impl<T: Type + ToJSON + Serialize> ApiResponse for FastJson<T> {
    fn meta() -> MetaResponses {
        <Json<T> as ApiResponse>::meta()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

/// Both encodings of `value`, for the tests that they agree.
#[cfg(test)]
pub fn both_encodings<T: ToJSON + Serialize>(value: &T) -> (serde_json::Value, serde_json::Value) {
    (
        value.to_json().unwrap_or_default(),
        serde_json::to_value(value).expect("serializable"),
    )
}

/// The first member name that appears twice in one object of `body`, if any.
/// serde_json keeps the last of duplicates, so `{"name":"a","name":"b"}`
/// would pass as `b` while a reviewer of the request reads `a`; the edge
/// refuses such bodies instead. Bodies that are not valid JSON are left to
/// the handlers' own parsing (and its error).
pub fn duplicate_member(body: &[u8]) -> Option<String> {
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    struct Unique;

    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueVisitor)
        }
    }

    struct UniqueVisitor;

    const PREFIX: &str = "duplicate member ";

    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Unique;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if !seen.insert(name.clone()) {
                    return Err(de::Error::custom(format!("{PREFIX}{name}")));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }

        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
    }

    match serde_json::from_slice::<Unique>(body) {
        Err(e) if e.is_data() => {
            let message = e.to_string();
            let rest = message.strip_prefix(PREFIX)?;
            // serde_json appends " at line L column C".
            let name = rest.rsplit_once(" at line ").map_or(rest, |(n, _)| n);
            Some(name.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod duplicate_tests {
    use super::duplicate_member;

    #[test]
    fn finds_duplicates_at_any_depth_and_only_those() {
        assert_eq!(
            duplicate_member(br#"{"name":"a","version":"1","name":"b"}"#),
            Some("name".into())
        );
        assert_eq!(
            duplicate_member(br#"{"source":{"url":"x","url":"y"}}"#),
            Some("url".into())
        );
        assert_eq!(
            duplicate_member(br#"[{"a":1},{"a":1,"a":2}]"#),
            Some("a".into())
        );
        // Escapes spell the same name.
        assert_eq!(
            duplicate_member(br#"{"name":1,"n\u0061me":2}"#),
            Some("name".into())
        );
        assert_eq!(duplicate_member(br#"{"a":{"a":1},"b":[1,2]}"#), None);
        assert_eq!(duplicate_member(b"{not json"), None);
        assert_eq!(duplicate_member(b""), None);
    }
}
