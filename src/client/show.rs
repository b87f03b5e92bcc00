//! What the client prints on standard output: one JSON document for
//! programs (`--output json`), or a plain table for people. Tables carry no
//! terminal escapes, so they read the same in a pipe or a log.

use comfy_table::{Table, presets};
use serde_json::Value;
use uuid::Uuid;

use crate::client::args::Output;

fn json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_string()));
    for row in rows {
        t.add_row(row);
    }
    println!("{}", t.trim_fmt());
}

/// A field as text: strings bare, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One object as `field  value` lines.
fn record(v: &Value, fields: &[&str]) {
    table(
        &["FIELD", "VALUE"],
        fields
            .iter()
            .map(|f| vec![(*f).to_string(), text(&v[*f])])
            .collect(),
    );
}

const PACKAGE_FIELDS: [&str; 9] = [
    "id",
    "name",
    "version",
    "status",
    "path",
    "operation_id",
    "revision",
    "created_at",
    "updated_at",
];

pub fn package(out: Output, p: &Value) {
    match out {
        Output::Json => json(p),
        Output::Table => {
            record(p, &PACKAGE_FIELDS);
            if let Some(source) = p["source"].as_object() {
                println!(
                    "source    {} (sha256 {})",
                    text(&source["url"].clone()),
                    text(&source["sha256"].clone())
                );
            }
        }
    }
}

pub fn packages(out: Output, items: &[Value]) {
    match out {
        Output::Json => json(&Value::Array(items.to_vec())),
        Output::Table => table(
            &["ID", "NAME", "VERSION", "STATUS", "SOURCE"],
            items
                .iter()
                .map(|p| {
                    vec![
                        text(&p["id"]),
                        text(&p["name"]),
                        text(&p["version"]),
                        text(&p["status"]),
                        text(&p["source"]["url"]),
                    ]
                })
                .collect(),
        ),
    }
}

const OPERATION_FIELDS: [&str; 12] = [
    "id",
    "package_id",
    "kind",
    "state",
    "progress",
    "bytes_done",
    "bytes_total",
    "attempts",
    "error",
    "created_at",
    "started_at",
    "finished_at",
];

pub fn operation(out: Output, op: &Value) {
    match out {
        Output::Json => json(op),
        Output::Table => record(op, &OPERATION_FIELDS),
    }
}

pub fn operations(out: Output, items: &[Value]) {
    match out {
        Output::Json => json(&Value::Array(items.to_vec())),
        Output::Table => table(
            &["ID", "PACKAGE", "KIND", "STATE", "PROGRESS", "ERROR"],
            items
                .iter()
                .map(|o| {
                    vec![
                        text(&o["id"]),
                        text(&o["package_id"]),
                        text(&o["kind"]),
                        text(&o["state"]),
                        format!("{}%", text(&o["progress"])),
                        text(&o["error"]),
                    ]
                })
                .collect(),
        ),
    }
}

pub fn key(out: Output, k: &Value) {
    match out {
        Output::Json => json(k),
        Output::Table => {
            record(
                k,
                &[
                    "id",
                    "name",
                    "role",
                    "prefix",
                    "active",
                    "expires_at",
                    "last_used_at",
                    "use_count",
                ],
            );
            if let Some(secret) = k["key"].as_str() {
                println!("secret (shown only now): {secret}");
            }
        }
    }
}

pub fn keys(out: Output, items: &[Value]) {
    match out {
        Output::Json => json(&Value::Array(items.to_vec())),
        Output::Table => table(
            &["ID", "NAME", "ROLE", "ACTIVE", "PREFIX", "EXPIRES", "USES"],
            items
                .iter()
                .map(|k| {
                    vec![
                        text(&k["id"]),
                        text(&k["name"]),
                        text(&k["role"]),
                        text(&k["active"]),
                        text(&k["prefix"]),
                        text(&k["expires_at"]),
                        text(&k["use_count"]),
                    ]
                })
                .collect(),
        ),
    }
}

pub fn deleted(out: Output, what: &str, id: Uuid) {
    match out {
        Output::Json => json(&serde_json::json!({"deleted": what, "id": id})),
        Output::Table => println!("deleted {what} {id}"),
    }
}
