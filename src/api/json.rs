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
