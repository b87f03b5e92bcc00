//! JSON field types stricter than poem-openapi's defaults.

use std::borrow::Cow;
use std::marker::PhantomData;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    MaybeUndefined, ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

use crate::domain::ValidationError;

/// The API's twin of a domain enum: the same variants, described for the
/// OpenAPI document under `$name` in lowercase, and converted both ways. The
/// domain stays free of the HTTP framework; the variants are listed once.
macro_rules! api_enum {
    ($(#[$meta:meta])* $dto:ident as $name:literal <=> $domain:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum, serde::Serialize)]
        #[oai(rename = $name, rename_all = "lowercase")]
        #[serde(rename_all = "lowercase")]
        pub enum $dto {
            $($variant),+
        }

        impl From<$domain> for $dto {
            fn from(v: $domain) -> Self {
                match v {
                    $($domain::$variant => $dto::$variant),+
                }
            }
        }

        impl From<$dto> for $domain {
            fn from(v: $dto) -> Self {
                match v {
                    $($dto::$variant => $domain::$variant),+
                }
            }
        }
    };
}
pub(crate) use api_enum;

/// The Basic Multilingual Plane's format characters (`FORMAT_CHARS` in the
/// domain), as a character-class fragment.
macro_rules! bmp_format_chars {
    () => {
        r"\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    };
}

/// What `check_text` accepts, as a JSON Schema pattern: no control
/// characters (C0, DEL, C1), no format characters (Unicode Cf: those of the
/// Basic Multilingual Plane here, since a pattern without the `u` flag
/// cannot name the others; the server refuses all of them) and no white
/// space at either end. Published so clients (and schemathesis) know the
/// rule; the domain enforces it with a 422 that names the field.
pub const PRINTABLE_TRIMMED: &str = concat!(
    r"^[^\s\x00-\x1f\x7f-\x9f",
    bmp_format_chars!(),
    r"](?:[^\x00-\x1f\x7f-\x9f",
    bmp_format_chars!(),
    r"]*[^\s\x00-\x1f\x7f-\x9f",
    bmp_format_chars!(),
    r"])?$"
);

/// The rules of a string field or parameter, as the description states
/// them. The server checks them itself (the domain, or the handler), so a
/// breach answers 422 `validation_failed` naming the field, not a framework
/// 400, and no regular expression is compiled per request.
pub trait StringRules: Send + Sync + 'static {
    fn name() -> Cow<'static, str>;
    const MIN: usize;
    const MAX: usize;
    const PATTERN: &'static str;
    /// Whether the description states `MIN` and `MAX` besides the pattern.
    /// A pattern that already bounds the form is better alone: fuzzers
    /// build boundary-length strings from the lengths that ignore it.
    const STATE_LENGTHS: bool = true;
}

/// A string described by `R`. As a JSON value it must be a string, and only
/// a string (poem-openapi's `String` also takes numbers and booleans: `5`
/// becomes `"5"`, which hides client bugs); any string parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described<R>(pub String, PhantomData<R>);

impl<R> Described<R> {
    pub fn new(value: String) -> Self {
        Self(value, PhantomData)
    }
}

impl<R: StringRules> Type for Described<R> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        R::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            min_length: Some(R::MIN),
            max_length: R::STATE_LENGTHS.then_some(R::MAX),
            pattern: Some(R::PATTERN.to_string()),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<R: StringRules> ParseFromJSON for Described<R> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(s)) => Ok(Self::new(s)),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl<R: StringRules> ParseFromParameter for Described<R> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self::new(value.to_string()))
    }
}

impl<R: StringRules> ToJSON for Described<R> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// 1 to `MAX` printable characters without surrounding white space: what
/// `check_text` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printable<const MAX: usize>;

impl<const MAX: usize> StringRules for Printable<MAX> {
    fn name() -> Cow<'static, str> {
        format!("text({MAX})").into()
    }
    const MIN: usize = 1;
    const MAX: usize = MAX;
    const PATTERN: &'static str = PRINTABLE_TRIMMED;
}

/// Names, versions: see `Printable`.
pub type Text<const MAX: usize> = Described<Printable<MAX>>;

/// A package source's URL: what the description can say of it (the server
/// checks the rest: a URL that parses, the scheme, no user or password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrlRules;

impl StringRules for SourceUrlRules {
    fn name() -> Cow<'static, str> {
        "source_url".into()
    }
    const MIN: usize = 1;
    const MAX: usize = crate::domain::source::MAX_URL_CHARS;
    const PATTERN: &'static str = r"^(https?://[A-Za-z0-9\[]|file://)";
}

/// A SHA-256 digest: 64 lowercase hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Rules;

impl StringRules for Sha256Rules {
    fn name() -> Cow<'static, str> {
        "sha256".into()
    }
    const MIN: usize = 64;
    const MAX: usize = 64;
    const PATTERN: &'static str = "^[0-9a-f]{64}$";
}

/// `If-Match` (RFC 9110 §13.1.1): `*`, or a comma-separated list of entity
/// tags. A value of another form is a 400; the pattern says so before a
/// client tries. The grammar is `domain::precondition`'s; a test holds this
/// pattern to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfMatchRules;

impl StringRules for IfMatchRules {
    fn name() -> Cow<'static, str> {
        "if_match".into()
    }
    const MIN: usize = 0;
    const MAX: usize = 1024;
    const STATE_LENGTHS: bool = false;
    // A list may be empty and have empty elements (RFC 9110 §5.6.1).
    const PATTERN: &'static str = r#"^(\*|[ \t,]*((W/)?"[\x21\x23-\x7e]*"([ \t]*,[ \t,]*(W/)?"[\x21\x23-\x7e]*")*)?[ \t,]*)$"#;
}

/// The `If-Match` header (read by `domain::precondition::Precondition::parse`).
pub type IfMatch = Described<IfMatchRules>;

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Visible ASCII and inner spaces, 1 to 255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKeyRules;

impl StringRules for IdempotencyKeyRules {
    fn name() -> Cow<'static, str> {
        "idempotency_key".into()
    }
    const MIN: usize = 1;
    const MAX: usize = MAX_IDEMPOTENCY_KEY_LEN;
    const PATTERN: &'static str = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$";
}

/// The `Idempotency-Key` header, checked by the handler.
pub type IdempotencyKey = Described<IdempotencyKeyRules>;

impl IdempotencyKey {
    pub fn is_valid(&self) -> bool {
        let k = self.0.as_bytes();
        !k.is_empty()
            && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
            && k.iter().all(|b| (0x20..=0x7e).contains(b))
            && k.first() != Some(&b' ')
            && k.last() != Some(&b' ')
    }
}

/// A PATCH field: absent is "leave it", null is refused, a value is validated.
pub fn field<T, const MAX: usize>(
    value: MaybeUndefined<Text<MAX>>,
    name: &'static str,
    parse: fn(String) -> Result<T, ValidationError>,
) -> Result<Option<T>, ValidationError> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(ValidationError::new(
            name,
            "must not be null (leave it out to keep the current value)",
        )),
        MaybeUndefined::Value(v) => parse(v.0).map(Some),
    }
}

/// An optional request field that may be left out but not be `null`.
pub fn present<T>(
    value: MaybeUndefined<T>,
    name: &'static str,
) -> Result<Option<T>, ValidationError> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(ValidationError::new(
            name,
            "must not be null (leave it out for the default, or to keep the current value)",
        )),
        MaybeUndefined::Value(v) => Ok(Some(v)),
    }
}

/// A response field that is always present and may be `null`. poem-openapi
/// describes an `Option` field as an optional, non-nullable value, while the
/// contract sends `null` (for `next_cursor`, `expires_at`, ...); this type
/// says `nullable: true`, and `required`, in the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nullable<T>(pub Option<T>);

impl<T> From<Option<T>> for Nullable<T> {
    fn from(v: Option<T>) -> Self {
        Nullable(v)
    }
}

impl<T: Type> Type for Nullable<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("nullable<{}>", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        match T::schema_ref() {
            MetaSchemaRef::Inline(schema) => MetaSchemaRef::Inline(Box::new(MetaSchema {
                nullable: true,
                ..*schema
            })),
            // OpenAPI 3.0 ignores siblings of `$ref`: wrap it.
            reference => MetaSchemaRef::Inline(Box::new(MetaSchema {
                nullable: true,
                all_of: vec![reference],
                ..MetaSchema::ANY
            })),
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(Type::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(v) => v.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }
}

impl<T: ParseFromJSON> ParseFromJSON for Nullable<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            None | Some(Value::Null) => Ok(Nullable(None)),
            v => T::parse_from_json(v)
                .map(|t| Nullable(Some(t)))
                .map_err(ParseError::propagate),
        }
    }
}

impl<T: ToJSON> ToJSON for Nullable<T> {
    fn to_json(&self) -> Option<Value> {
        Some(
            self.0
                .as_ref()
                .and_then(ToJSON::to_json)
                .unwrap_or(Value::Null),
        )
    }
}

impl<T: serde::Serialize> serde::Serialize for Nullable<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The description's pattern and the parser are one grammar: every
    /// sample the parser reads is matched, every one it refuses is not.
    #[test]
    fn the_if_match_pattern_says_what_the_parser_reads() {
        let pattern = regex::Regex::new(IfMatchRules::PATTERN).unwrap();
        assert!(pattern.is_match("*"));
        for (value, reads) in crate::domain::precondition::tests::SAMPLES {
            assert_eq!(pattern.is_match(value), reads.is_some(), "{value:?}");
        }
    }
}
