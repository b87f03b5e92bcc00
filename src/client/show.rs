//! What the client prints on standard output: one JSON document for
//! programs (`--output json`), or a plain table for people. Tables carry no
//! terminal escapes, so they read the same in a pipe or a log.

use comfy_table::{Table, presets};
use serde::Serialize;
use uuid::Uuid;

use super::answers::{Channel, Key, Operation, Package};
use crate::client::args::Output;

fn json(v: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
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

/// An optional field as text: `-` when absent.
fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// One object as `field  value` lines.
fn record(fields: Vec<(&str, String)>) {
    table(
        &["FIELD", "VALUE"],
        fields
            .into_iter()
            .map(|(f, v)| vec![f.to_string(), v])
            .collect(),
    );
}

pub fn package(out: Output, p: &Package) {
    match out {
        Output::Json => json(p),
        Output::Table => {
            let source = p.source.as_ref();
            record(vec![
                ("id", p.id.to_string()),
                ("name", p.name.clone()),
                ("version", p.version.clone()),
                ("status", p.status.clone()),
                ("source", or_dash(source.map(|s| &s.url))),
                ("sha256", or_dash(source.map(|s| &s.sha256))),
                ("size", or_dash(source.and_then(|s| s.size))),
                (
                    "signed",
                    or_dash(source.map(|s| if s.signature.is_some() { "yes" } else { "no" })),
                ),
                ("path", or_dash(p.path.as_ref())),
                ("operation_id", or_dash(p.operation_id)),
                ("channel_id", or_dash(p.channel_id)),
                ("pinned", if p.pinned { "yes" } else { "no" }.into()),
                ("revision", p.revision.to_string()),
                ("created_at", p.created_at.clone()),
                ("updated_at", p.updated_at.clone()),
            ]);
        }
    }
}

pub fn packages(out: Output, items: &[Package]) {
    match out {
        Output::Json => json(&items),
        Output::Table => table(
            &["ID", "NAME", "VERSION", "STATUS", "PINNED", "SOURCE"],
            items
                .iter()
                .map(|p| {
                    vec![
                        p.id.to_string(),
                        p.name.clone(),
                        p.version.clone(),
                        p.status.clone(),
                        if p.pinned { "yes" } else { "-" }.into(),
                        or_dash(p.source.as_ref().map(|s| &s.url)),
                    ]
                })
                .collect(),
        ),
    }
}

pub fn operation(out: Output, op: &Operation) {
    match out {
        Output::Json => json(op),
        Output::Table => record(vec![
            ("id", op.id.to_string()),
            ("package_id", or_dash(op.package_id)),
            ("channel_id", or_dash(op.channel_id)),
            ("kind", op.kind.clone()),
            ("state", op.state.clone()),
            ("progress", op.progress.to_string()),
            ("bytes_done", or_dash(op.bytes_done)),
            ("bytes_total", or_dash(op.bytes_total)),
            ("attempts", op.attempts.to_string()),
            ("error", or_dash(op.error.as_ref())),
            ("created_at", op.created_at.clone()),
            ("started_at", or_dash(op.started_at.as_ref())),
            ("finished_at", or_dash(op.finished_at.as_ref())),
        ]),
    }
}

/// Operations; `names` gives a package's `name@version` by id where the
/// caller looked it up (the id is shown otherwise).
pub fn operations(
    out: Output,
    items: &[Operation],
    names: &std::collections::HashMap<Uuid, String>,
) {
    match out {
        Output::Json => json(&items),
        Output::Table => table(
            &["ID", "PACKAGE", "KIND", "STATE", "PROGRESS", "ERROR"],
            items
                .iter()
                .map(|o| {
                    vec![
                        o.id.to_string(),
                        match (o.package_id, o.channel_id) {
                            (Some(id), _) => {
                                names.get(&id).cloned().unwrap_or_else(|| id.to_string())
                            }
                            (None, Some(channel)) => format!("channel {channel}"),
                            (None, None) => "-".into(),
                        },
                        o.kind.clone(),
                        o.state.clone(),
                        format!("{}%", o.progress),
                        or_dash(o.error.as_ref()),
                    ]
                })
                .collect(),
        ),
    }
}

pub fn key(out: Output, k: &Key) {
    match out {
        Output::Json => json(k),
        Output::Table => {
            record(vec![
                ("id", k.id.to_string()),
                ("name", k.name.clone()),
                ("role", k.role.clone()),
                ("prefix", k.prefix.clone()),
                ("active", k.active.to_string()),
                ("expires_at", or_dash(k.expires_at.as_ref())),
                ("last_used_at", or_dash(k.last_used_at.as_ref())),
                ("use_count", k.use_count.to_string()),
            ]);
            if let Some(secret) = &k.key {
                println!("secret (shown only now): {secret}");
            }
        }
    }
}

/// One row of the keys table, the same online and offline.
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    /// `active`, `inactive` or `expired`.
    pub state: &'static str,
    pub prefix: String,
    pub expires_at: Option<String>,
    pub uses: u64,
}

/// The state a key's fields say, as a person reads it.
pub fn key_state(active: bool, expired: bool) -> &'static str {
    match (active, expired) {
        (false, _) => "inactive",
        (true, true) => "expired",
        (true, false) => "active",
    }
}

/// `keys list` as a table, whether the keys came from the API or the file.
pub fn keys_table(rows: Vec<KeyRow>) {
    table(
        &["ID", "NAME", "ROLE", "STATE", "PREFIX", "EXPIRES", "USES"],
        rows.into_iter()
            .map(|k| {
                vec![
                    k.id,
                    k.name,
                    k.role,
                    k.state.to_string(),
                    k.prefix,
                    or_dash(k.expires_at),
                    k.uses.to_string(),
                ]
            })
            .collect(),
    );
}

pub fn keys(out: Output, items: &[Key]) {
    match out {
        Output::Json => json(&items),
        Output::Table => {
            let now = time::OffsetDateTime::now_utc();
            keys_table(
                items
                    .iter()
                    .map(|k| {
                        let expired = k.expires_at.as_deref().is_some_and(|e| {
                            time::OffsetDateTime::parse(
                                e,
                                &time::format_description::well_known::Rfc3339,
                            )
                            .is_ok_and(|at| at <= now)
                        });
                        KeyRow {
                            id: k.id.to_string(),
                            name: k.name.clone(),
                            role: k.role.clone(),
                            state: key_state(k.active, expired),
                            prefix: k.prefix.clone(),
                            expires_at: k.expires_at.clone(),
                            uses: k.use_count,
                        }
                    })
                    .collect(),
            );
        }
    }
}

pub fn channel(out: Output, c: &Channel) {
    match out {
        Output::Json => json(c),
        Output::Table => record(vec![
            ("id", c.id.to_string()),
            ("url", c.url.clone()),
            ("name", or_dash(c.name.as_ref())),
            ("sequence", or_dash(c.sequence)),
            ("expires", or_dash(c.expires.as_ref())),
            ("activate", c.activate.clone()),
            ("interval", c.interval.clone()),
            ("last_checked_at", or_dash(c.last_checked_at.as_ref())),
            ("last_changed_at", or_dash(c.last_changed_at.as_ref())),
            ("last_error", or_dash(c.last_error.as_ref())),
            ("operation_id", or_dash(c.operation_id)),
            ("created_at", c.created_at.clone()),
        ]),
    }
}

pub fn channels(out: Output, items: &[Channel]) {
    match out {
        Output::Json => json(&items),
        Output::Table => table(
            &[
                "ID",
                "NAME",
                "SEQUENCE",
                "ACTIVATE",
                "INTERVAL",
                "LAST CHECKED",
                "ERROR",
            ],
            items
                .iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        or_dash(c.name.as_ref()),
                        or_dash(c.sequence),
                        c.activate.clone(),
                        c.interval.clone(),
                        or_dash(c.last_checked_at.as_ref()),
                        or_dash(c.last_error.as_ref()),
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
