//! The description's shape, tidied for the tools people point at it:
//! client generators (openapi-python-client; openapi-generator's python,
//! typescript-fetch and rust) and the reference page. poem-openapi's draft
//! is valid OpenAPI, but generators read some of its forms badly: a
//! reference wrapped with a description becomes a second, unusable type,
//! `not: {}` a settable `Any`, `application/json; charset=utf-8` a model
//! named after the media type. CI generates each client and fails on any
//! warning, so what is here is held by the tools themselves.

use serde_json::{Map, Value, json};

/// What the tidy pass needs to know of the server it describes.
pub(super) struct Served {
    /// `?api_key=` is accepted (`--allow-query-key`).
    pub allow_query_key: bool,
}

pub(super) fn tidy(spec: &mut Value, served: &Served) {
    plain_references(spec);
    patch_without_status(spec);
    // These optional fields may be sent as null, which the server reads as
    // absent (a source's size or signature unknown, a pin unchanged), and
    // generated clients send null for fields left unset.
    for (schema, field) in [
        ("SourceInput", "size"),
        ("SourceInput", "signature"),
        ("PackagePatch", "pinned"),
    ] {
        let pointer = format!("/components/schemas/{schema}/properties/{field}");
        if let Some(property) = spec.pointer_mut(&pointer) {
            property["nullable"] = Value::Bool(true);
        }
    }
    spec["info"]["license"] = json!({"name": "MIT", "url": "https://opensource.org/licenses/MIT"});
    // Relative to where the description is served: the explorer calls the
    // server it was loaded from, and a generated client is given its base
    // URL (packd has no fixed address).
    spec["servers"] =
        json!([{"url": "/", "description": "the packd that serves this description"}]);
    spec["tags"] = json!(
        TAGS.iter()
            .map(|(name, description)| json!({"name": name, "description": description}))
            .collect::<Vec<_>>()
    );
    if served.allow_query_key {
        query_key_scheme(spec);
    }
    spec["components"]["headers"] = shared_headers();
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(methods) = item.as_object_mut() else {
            continue;
        };
        for operation in methods.values_mut() {
            tidy_operation(path, operation);
        }
    }
}

/// The tags in the order a reader wants them: packages and what is done
/// to them first, the service's own routes last.
const TAGS: &[(&str, &str)] = &[
    (
        "Packages",
        "The catalogue, and the download, activation and deactivation of a package.",
    ),
    (
        "Operations",
        "The long operations on the queue, and the event stream that follows them.",
    ),
    (
        "Channels",
        "Signed documents a publisher serves, which this host follows.",
    ),
    ("Keys", "API keys, the audit log and backups."),
    ("Service", "Health, readiness, metrics and trust."),
];

/// `allOf: [$ref, {description}]` (poem-openapi's form of a documented
/// reference) becomes a plain `$ref`, or `allOf: [$ref]` beside `nullable`
/// where the field may be null (OpenAPI 3.0 ignores siblings of `$ref`).
fn plain_references(spec: &mut Value) {
    let Some(schemas) = spec
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for schema in schemas.values_mut() {
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for property in properties.values_mut() {
            let Some(members) = property.get("allOf").and_then(Value::as_array) else {
                continue;
            };
            let Some(reference) = members.iter().find(|m| m.get("$ref").is_some()).cloned() else {
                continue;
            };
            let only_words = members.iter().all(|m| {
                m.get("$ref").is_some()
                    || m.as_object()
                        .is_some_and(|o| o.keys().all(|k| k == "description"))
            });
            if !only_words {
                continue;
            }
            if property["nullable"] == Value::Bool(true) {
                property["allOf"] = json!([reference]);
            } else {
                *property = reference;
            }
        }
    }
}

/// `status` is in the PATCH body's type only so that a client sending it
/// hears why it is refused; described, it became a settable field of every
/// generated client. The closed body already refuses it.
fn patch_without_status(spec: &mut Value) {
    let Some(patch) = spec.pointer_mut("/components/schemas/PackagePatch") else {
        return;
    };
    if let Some(properties) = patch.get_mut("properties").and_then(Value::as_object_mut) {
        properties.remove("status");
    }
    if let Some(required) = patch.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r != "status");
    }
    let said = patch["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    patch["description"] = format!(
        "{said}\n\nA status is not writable: statuses change only through operations \
         (a body with `status` is refused with 422 `validation_failed`)."
    )
    .trim_start()
    .into();
}

/// `?api_key=` as a scheme of its own, offered on every `/v1` call, when
/// the server accepts it: a browser's `EventSource` cannot send headers.
fn query_key_scheme(spec: &mut Value) {
    spec["components"]["securitySchemes"]["QueryKey"] = json!({
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
        "description": "The API key as `?api_key=<key>`, accepted because the server runs \
                        with `--allow-query-key` (URLs end up in logs: prefer the header, \
                        except for a browser's EventSource, which cannot send one).",
    });
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for methods in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in methods.values_mut() {
            if let Some(security) = operation.get_mut("security").and_then(Value::as_array_mut)
                && !security.is_empty()
            {
                security.push(json!({"QueryKey": []}));
            }
        }
    }
}

fn shared_headers() -> Value {
    json!({
        "X-Request-Id": {
            "description": "The request's id (the client's, if it sent a printable one of at \
                            most 200 characters; else one made by the server), as the log \
                            and the audit log name it.",
            "schema": {"type": "string"},
        },
        "RateLimit": {
            "description": "With `--rate-limit`: the key's requests left and the seconds until \
                            its bucket is full (`\"key\";r=<left>;t=<seconds>`).",
            "schema": {"type": "string"},
        },
        "RateLimit-Policy": {
            "description": "With `--rate-limit`: the key's burst (`\"key\";q=<burst>;w=1`).",
            "schema": {"type": "string"},
        },
    })
}

fn tidy_operation(path: &str, operation: &mut Value) {
    let id = operation["operationId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(tags) = operation.get_mut("tags").and_then(Value::as_array_mut) {
        // A package's actions sit with the packages, where a reader looks
        // for them; their operations are followed under Operations.
        if matches!(
            id.as_str(),
            "download_package" | "activate_package" | "deactivate_package"
        ) {
            *tags = vec![json!("Packages")];
        }
    }
    if let Some(content) = operation
        .pointer_mut("/requestBody/content")
        .and_then(Value::as_object_mut)
    {
        plain_media_types(content);
    }
    for parameter in operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if parameter["in"] == "path" && parameter["name"] == "id" {
            parameter["example"] = json!(super::examples::example_id(&id));
        }
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
            plain_media_types(content);
        }
        if response["description"].as_str().is_none_or(str::is_empty) {
            response["description"] = success_description(&id).into();
        }
        if let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) {
            let named: Map<String, Value> = std::mem::take(headers)
                .into_iter()
                .map(|(name, header)| (canonical_header(&name), header))
                .collect();
            *headers = named;
        } else {
            response["headers"] = json!({});
        }
        let headers = &mut response["headers"];
        headers["X-Request-Id"] = json!({"$ref": "#/components/headers/X-Request-Id"});
        if path.starts_with("/v1") {
            headers["RateLimit"] = json!({"$ref": "#/components/headers/RateLimit"});
            headers["RateLimit-Policy"] = json!({"$ref": "#/components/headers/RateLimit-Policy"});
        }
        let described = super::examples::response_words(&id, status);
        if let Some(words) = described {
            response["description"] = words.into();
        }
        if let Some(example) = super::examples::success(&id, status)
            && let Some(media) = response.pointer_mut("/content/application~1json")
        {
            media["example"] = example;
        }
    }
    if id == "stream_events" {
        super::examples::event_stream(operation);
    }
}

/// `application/json; charset=utf-8` is `application/json` (JSON is UTF-8
/// by definition, RFC 8259); generators made a model of the longer name.
fn plain_media_types(content: &mut Map<String, Value>) {
    if let Some(media) = content.remove("application/json; charset=utf-8") {
        content.insert("application/json".into(), media);
    }
}

/// `ETAG` -> `ETag`, `CONTENT-LENGTH` -> `Content-Length`: one spelling
/// for every header name in the description.
fn canonical_header(name: &str) -> String {
    if name.eq_ignore_ascii_case("etag") {
        return "ETag".into();
    }
    name.split('-')
        .map(|part| {
            let lower = part.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Words for the success answers poem-openapi leaves undescribed (a plain
/// `Json<T>` return has no doc comment to take them from).
fn success_description(operation_id: &str) -> &'static str {
    match operation_id {
        "healthz" => "The process serves.",
        "list_audit" => "A page of the audit log.",
        "list_channels" => "The channels this host follows.",
        "get_channel" => "The channel.",
        "update_channel" => "The channel as changed.",
        "get_host" => "This host.",
        "list_keys" => "A page of API keys.",
        "get_key" | "update_key" | "activate_key" | "deactivate_key" => "The key, without secret.",
        "rotate_key" => "The key with its new secret, shown this once.",
        "list_operations" => "A page of operations.",
        "get_operation" => "The operation (finished, or as it was when the wait ended).",
        "cancel_operation" => "The operation, with `cancel_requested` set (or already cancelled).",
        "list_packages" => "A page of packages.",
        "list_statuses" => "The statuses and the transitions between them.",
        "list_trusted_keys" => "The publisher keys this server trusts.",
        _ => "Success.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_take_one_spelling() {
        assert_eq!(canonical_header("ETAG"), "ETag");
        assert_eq!(
            canonical_header("CONTENT-DISPOSITION"),
            "Content-Disposition"
        );
        assert_eq!(canonical_header("Retry-After"), "Retry-After");
        assert_eq!(canonical_header("LOCATION"), "Location");
    }

    #[test]
    fn a_documented_reference_becomes_plain_and_a_nullable_one_keeps_its_null() {
        let mut spec = json!({"components": {"schemas": {"A": {"properties": {
            "plain": {"allOf": [{"$ref": "#/x"}, {"description": "d"}], "description": "d"},
            "null": {"allOf": [{"$ref": "#/x"}, {"description": "d"}], "description": "d",
                     "nullable": true},
            "mixed": {"allOf": [{"$ref": "#/x"}, {"type": "object"}]},
        }}}}});
        plain_references(&mut spec);
        let p = &spec["components"]["schemas"]["A"]["properties"];
        assert_eq!(p["plain"], json!({"$ref": "#/x"}));
        assert_eq!(
            p["null"],
            json!({"allOf": [{"$ref": "#/x"}], "description": "d", "nullable": true})
        );
        assert_eq!(p["mixed"]["allOf"].as_array().unwrap().len(), 2);
    }
}
