//! JSON field types stricter than poem-openapi's defaults.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    MaybeUndefined, ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

use crate::domain::ValidationError;

/// What `check_text` accepts, as a JSON Schema pattern: no control
/// characters (C0, DEL, C1) and no white space at either end. Published so
/// clients (and schemathesis) know the rule; the domain enforces it with a 422
/// that names the field.
pub const PRINTABLE_TRIMMED: &str =
    r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$";

/// A JSON string, and only a string (poem-openapi's `String` also takes
/// numbers and booleans: `5` becomes `"5"`, which hides client bugs), of 1 to
/// `MAX` printable characters without surrounding white space. The rules are
/// in the description; parsing takes any string, so that the domain's
/// validation answers 422 `validation_failed` with the field, not a
/// framework 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<const MAX: usize>(pub String);

fn string_schema(min: usize, max: usize, pattern: &str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        min_length: Some(min),
        max_length: Some(max),
        pattern: Some(pattern.to_string()),
        ..MetaSchema::new("string")
    }))
}

impl<const MAX: usize> Type for Text<MAX> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        format!("text({MAX})").into()
    }

    fn schema_ref() -> MetaSchemaRef {
        string_schema(1, MAX, PRINTABLE_TRIMMED)
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

impl<const MAX: usize> ParseFromJSON for Text<MAX> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(s)) => Ok(Text(s)),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl<const MAX: usize> ToJSON for Text<MAX> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// What an `Idempotency-Key` may hold: visible ASCII and inner spaces.
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$";

/// The `Idempotency-Key` header: described with its rules, checked by the
/// handler (422 `validation_failed`, `field` naming the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub String);

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

impl Type for IdempotencyKey {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "idempotency_key".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        string_schema(1, MAX_IDEMPOTENCY_KEY_LEN, IDEMPOTENCY_KEY_PATTERN)
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

impl ParseFromParameter for IdempotencyKey {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(IdempotencyKey(value.to_string()))
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
