//! The OpenAPI description as served: poem-openapi's, with what it leaves
//! out written in (closed request bodies, a nullable `source`,
//! `Problem.code` as a plain reference, an example for every request body
//! and error status), tidied for client generators (`tidy`), with success
//! examples (`examples`), and the documentation pages made to work offline.

mod examples;
mod tidy;

use poem_openapi::OpenApiService;

use super::{ApiOptions, Apis, error_docs};

/// Request bodies refuse unknown fields (`deny_unknown_fields`), which
/// poem-openapi does not write into the description: said here, so clients
/// and fuzzers know a stray field is an error. A test checks every request
/// body is listed.
const CLOSED_BODIES: &[&str] = &[
    "NewPackage",
    "SourceInput",
    "PackagePatch",
    "NewApiKey",
    "ApiKeyPatch",
    "RotateApiKey",
    "NewChannel",
    "ChannelPatch",
];

/// The OpenAPI description as served: poem-openapi's, with what it leaves out.
pub(super) fn described(api: &OpenApiService<Apis, ()>, options: &ApiOptions) -> serde_json::Value {
    let mut spec: serde_json::Value =
        serde_json::from_str(&api.spec()).unwrap_or(serde_json::Value::Null);
    for name in CLOSED_BODIES {
        if let Some(schema) = spec["components"]["schemas"].get_mut(*name) {
            schema["additionalProperties"] = serde_json::Value::Bool(false);
        }
    }
    // `source` may be null in a create (no source) and a PATCH (remove it);
    // poem-openapi describes an optional field as non-nullable, and OpenAPI
    // 3.0 ignores `nullable` beside a `$ref`, so the reference is wrapped.
    for body in ["NewPackage", "PackagePatch"] {
        if let Some(source) = spec["components"]["schemas"][body]["properties"].get_mut("source") {
            if source.get("$ref").is_some() {
                let reference = source.take();
                *source = serde_json::json!({"allOf": [reference]});
            }
            source["nullable"] = serde_json::Value::Bool(true);
        }
    }
    // `code` as a plain reference: poem-openapi wraps it in `allOf` with a
    // description, which generators (openapi-python-client) cannot take,
    // and then drop the whole `Problem` model.
    if let Some(code) = spec["components"]["schemas"]["Problem"]["properties"].get_mut("code") {
        *code = serde_json::json!({"$ref": "#/components/schemas/ErrorCode"});
    }
    if let Some(codes) = spec["components"]["schemas"].get_mut("ErrorCode") {
        codes["description"] = "What went wrong, for a program.".into();
    }
    add_examples(&mut spec);
    tidy::tidy(
        &mut spec,
        &tidy::Served {
            allow_query_key: options.allow_query_key,
        },
    );
    spec
}

/// Example request bodies, so the explorer's prefilled requests are
/// meaningful and work unedited.
const BODY_EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "/v1/packages",
        "post",
        r#"{"name": "jq", "version": "1.7.1"}"#,
    ),
    ("/v1/packages/{id}", "patch", r#"{"version": "1.7.2"}"#),
    ("/v1/keys", "post", r#"{"name": "ci", "role": "write"}"#),
    ("/v1/keys/{id}", "patch", r#"{"name": "ci-nightly"}"#),
    ("/v1/keys/{id}/rotate", "post", r#"{"grace_seconds": 600}"#),
    (
        "/v1/channels",
        "post",
        r#"{"url": "https://releases.example.org/stable/channel.json", "activate": "auto", "interval": "5m"}"#,
    ),
    ("/v1/channels/{id}", "patch", r#"{"activate": "manual"}"#),
];

/// Example bodies: one per request body, and a problem per error status
/// with the `code` that status carries.
fn add_examples(spec: &mut serde_json::Value) {
    // Looked up with `get_mut`, never indexed mutably: indexing would add
    // `null` members where there were none.
    for (path, method, example) in BODY_EXAMPLES {
        let content = spec
            .get_mut("paths")
            .and_then(|p| p.get_mut(*path))
            .and_then(|p| p.get_mut(*method))
            .and_then(|m| m.get_mut("requestBody"))
            .and_then(|b| b.get_mut("content"))
            .and_then(serde_json::Value::as_object_mut);
        if let Some(content) = content {
            for (media_type, media) in content.iter_mut() {
                if media_type.starts_with("application/json") {
                    media["example"] = serde_json::from_str(example).unwrap_or_default();
                }
            }
        }
    }
    let Some(paths) = spec
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for item in paths.values_mut() {
        let Some(methods) = item.as_object_mut() else {
            continue;
        };
        for operation in methods.values_mut() {
            let id = operation["operationId"].as_str().unwrap_or("").to_string();
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(serde_json::Value::as_object_mut)
            else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                let Some(media) = response
                    .get_mut("content")
                    .and_then(|c| c.get_mut("application/problem+json"))
                else {
                    continue;
                };
                let Ok(status) = status.parse::<u16>() else {
                    continue;
                };
                media["example"] = error_docs::example(&id, status);
            }
        }
    }
}

/// A documentation page as packd serves it: the description it embeds is
/// the served one (`described`), and nothing is fetched from elsewhere
/// (poem-openapi's Redoc page links web fonts; the page falls back to the
/// system's).
pub(super) fn offline_page(html: String, draft: &str, served: &str) -> String {
    // ReDoc shows each parameter's pattern in the middle of its reading
    // view; the If-Match and Idempotency-Key grammars are a line of regex
    // each. The description keeps them for tools; the page leaves them out.
    let mut page = html.replace(draft, served).replace(
        "scrollYOffset: 50",
        "scrollYOffset: 50, hideSchemaPattern: true",
    );
    // Only the page's own head is looked at: the inlined scripts after it
    // are code, not tags.
    loop {
        let head_end = page.find("<script").unwrap_or(page.len());
        let Some(start) = page[..head_end].find("<link href=\"https://") else {
            return page;
        };
        let Some(len) = page[start..].find('>') else {
            return page;
        };
        page.replace_range(start..=start + len, "");
    }
}
