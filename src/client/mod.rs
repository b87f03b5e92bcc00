//! The command-line client: `packd pkg …`, `packd op …` and `packd keys …`
//! (online), `packd backup` through the API and `packd healthcheck`, over
//! the HTTP API and never over the file: the API's first user. `args.rs`
//! has their flags; `http.rs` talks to the server and turns answers into
//! values or `Failure`s; `follow.rs` watches an operation to its end
//! through the event stream; `show.rs` prints tables or JSON;
//! `service.rs` has the backup and the health check.
//!
//! Exit statuses (README: Try it: the command-line client): 0 done, 1 the operation failed or was
//! cancelled, 2 usage error, 3 server unreachable, 4 authentication or
//! authorization refused, 5 any other API error (its problem on stderr).

pub mod answers;
pub mod args;
pub mod channel;
pub(crate) mod follow;
mod http;
pub mod service;
pub mod show;
mod sse;

use std::process::ExitCode;

use serde_json::{Value, json};

use self::answers::{Key, Operation, Package};
use self::http::Api;
pub use self::http::Failure;
use crate::client::args::{
    ClientOptions, KeysCommand, OpArgs, OpCommand, Output, PkgArgs, PkgCommand, SourceArgs,
    StartArgs,
};

/// Runs `packd pkg …`.
pub fn pkg(args: PkgArgs) -> ExitCode {
    if let Some(hint) = old_source_spelling(std::env::args()) {
        return Failure::Usage(hint).report();
    }
    let options = args.client();
    let out = options.session.output;
    run(&options, async move |api| {
        pkg_command(&api, out, args.command).await
    })
}

/// Runs `packd op …`.
pub fn op(args: OpArgs) -> ExitCode {
    let out = args.client.session.output;
    run(&args.client, async move |api| {
        op_command(&api, out, args.command).await
    })
}

/// Runs `packd keys …` through the API.
pub fn keys(client: &ClientOptions, command: KeysCommand) -> ExitCode {
    let out = client.session.output;
    run(client, async move |api| {
        keys_command(&api, out, command).await
    })
}

pub(crate) fn run(
    options: &ClientOptions,
    body: impl AsyncFnOnce(Api) -> Result<(), Failure>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Failure::Other(format!("cannot start: {e}")).report(),
    };
    let result = runtime.block_on(async {
        let api = Api::new(options)?;
        body(api).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

async fn pkg_command(api: &Api, out: Output, command: PkgCommand) -> Result<(), Failure> {
    match command {
        PkgCommand::List { status, name } => {
            let mut query = Vec::new();
            if let Some(s) = status {
                query.push(("status", s));
            }
            if let Some(n) = name {
                query.push(("name", n));
            }
            let items: Vec<Package> = api.all_pages("/v1/packages", &query).await?;
            show::packages(out, &items);
        }
        PkgCommand::Get { reference } => {
            let p = api.package(&reference).await?;
            show::package(out, &p);
        }
        PkgCommand::Create {
            name,
            version,
            from,
        } => {
            let mut body = json!({"name": name, "version": version});
            if let Some(source) = source_body(from)? {
                body["source"] = source;
            }
            let p: Package = api.get_as("POST", "/v1/packages", Some(&body), &[]).await?;
            show::package(out, &p);
        }
        PkgCommand::Edit {
            reference,
            name,
            version,
            from,
            no_source,
        } => {
            let current = api.package(&reference).await?;
            let mut body = json!({});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            if let Some(version) = version {
                body["version"] = json!(version);
            }
            if let Some(source) = source_body(from)? {
                body["source"] = source;
            } else if no_source {
                body["source"] = Value::Null;
            }
            let p: Package = api
                .get_as(
                    "PATCH",
                    &format!("/v1/packages/{}", current.id),
                    Some(&body),
                    &[],
                )
                .await?;
            show::package(out, &p);
        }
        PkgCommand::Delete { reference } => {
            let current = api.package(&reference).await?;
            api.send("DELETE", &format!("/v1/packages/{}", current.id), None)
                .await?;
            show::deleted(out, "package", current.id);
        }
        PkgCommand::Pin { reference } => pin(api, out, &reference, true).await?,
        PkgCommand::Unpin { reference } => pin(api, out, &reference, false).await?,
        PkgCommand::Download(start) => operation(api, out, "download", start).await?,
        PkgCommand::Activate(start) => operation(api, out, "activate", start).await?,
        PkgCommand::Deactivate(start) => operation(api, out, "deactivate", start).await?,
    }
    Ok(())
}

/// Starts an operation; with `--wait`, follows it to its end.
async fn operation(api: &Api, out: Output, kind: &str, start: StartArgs) -> Result<(), Failure> {
    let package = api.package(&start.reference).await?;
    let id = package.id;
    let headers: Vec<(&str, &str)> = start
        .idempotency_key
        .as_deref()
        .map(|k| ("Idempotency-Key", k))
        .into_iter()
        .collect();
    let op: Operation = api
        .get_as("POST", &format!("/v1/packages/{id}/{kind}"), None, &headers)
        .await?;
    if !start.wait {
        show::operation(out, &op);
        return Ok(());
    }
    let label = format!("{kind} {}@{}", package.name, package.version);
    let done = follow::to_the_end(api, op.id, &label).await?;
    finished(out, &done)
}

/// `pkg pin` and `pkg unpin`: a PATCH of `pinned`.
async fn pin(api: &Api, out: Output, reference: &str, pinned: bool) -> Result<(), Failure> {
    let current = api.package(reference).await?;
    let p: Package = api
        .get_as(
            "PATCH",
            &format!("/v1/packages/{}", current.id),
            Some(&json!({ "pinned": pinned })),
            &[],
        )
        .await?;
    show::package(out, &p);
    Ok(())
}

/// Prints a finished operation; a failed or cancelled one is exit 1.
pub(crate) fn finished(out: Output, op: &Operation) -> Result<(), Failure> {
    show::operation(out, op);
    match op.state.as_str() {
        "succeeded" => Ok(()),
        state => Err(Failure::OperationFailed(format!(
            "the operation {state}{}",
            op.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ))),
    }
}

async fn op_command(api: &Api, out: Output, command: OpCommand) -> Result<(), Failure> {
    match command {
        OpCommand::List { state, package } => {
            let mut query = Vec::new();
            if let Some(s) = state {
                query.push(("state", s));
            }
            if let Some(reference) = package {
                let p = api.package(&reference).await?;
                query.push(("package_id", p.id.to_string()));
            }
            let items: Vec<Operation> = api.all_pages("/v1/operations", &query).await?;
            let names = match out {
                Output::Table => package_names(api, &items).await,
                Output::Json => Default::default(),
            };
            show::operations(out, &items, &names);
        }
        OpCommand::Get { id } => {
            let op: Operation = api
                .get_as("GET", &format!("/v1/operations/{id}"), None, &[])
                .await?;
            show::operation(out, &op);
        }
        OpCommand::Wait { id } => {
            // Named by what it works on, as `--wait` names it: a UUID would
            // take half the line.
            let op: Operation = api
                .get_as("GET", &format!("/v1/operations/{id}"), None, &[])
                .await?;
            let label = match (op.package_id, op.channel_id) {
                (Some(id), _) => match api.package(&id.to_string()).await {
                    Ok(p) => format!("{} {}@{}", op.kind, p.name, p.version),
                    Err(_) => format!("{} of a deleted package", op.kind),
                },
                (None, channel) => format!("{} of channel {}", op.kind, or_unknown(channel)),
            };
            let done = follow::to_the_end(api, id, &label).await?;
            finished(out, &done)?;
        }
        OpCommand::Cancel { id } => {
            let op: Operation = api
                .get_as("POST", &format!("/v1/operations/{id}/cancel"), None, &[])
                .await?;
            show::operation(out, &op);
        }
    }
    Ok(())
}

async fn keys_command(api: &Api, out: Output, command: KeysCommand) -> Result<(), Failure> {
    match command {
        KeysCommand::Create { name, role, ttl } => {
            let mut body = json!({"name": name, "role": role});
            if let Some(ttl) = ttl {
                let at = crate::domain::Timestamp::now()
                    .plus(ttl)
                    .to_offset_date_time()
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(|e| Failure::Other(e.to_string()))?;
                body["expires_at"] = json!(at);
            }
            let k: Key = api.get_as("POST", "/v1/keys", Some(&body), &[]).await?;
            show::key(out, &k);
        }
        KeysCommand::List => {
            let items: Vec<Key> = api.all_pages("/v1/keys", &[]).await?;
            show::keys(out, &items);
        }
        KeysCommand::Get { id } => {
            let k: Key = api
                .get_as("GET", &format!("/v1/keys/{id}"), None, &[])
                .await?;
            show::key(out, &k);
        }
        KeysCommand::Deactivate { id } | KeysCommand::Activate { id } => {
            let verb = if matches!(command, KeysCommand::Activate { .. }) {
                "activate"
            } else {
                "deactivate"
            };
            let k: Key = api
                .get_as("POST", &format!("/v1/keys/{id}/{verb}"), None, &[])
                .await?;
            show::key(out, &k);
        }
        KeysCommand::Rotate { id, grace } => {
            let body = json!({"grace_seconds": grace.map_or(0, |g| g.as_secs())});
            let k: Key = api
                .get_as("POST", &format!("/v1/keys/{id}/rotate"), Some(&body), &[])
                .await?;
            show::key(out, &k);
        }
        KeysCommand::Delete { id } => {
            api.send("DELETE", &format!("/v1/keys/{id}"), None).await?;
            show::deleted(out, "key", id);
        }
    }
    Ok(())
}

/// The `source` of a request body from `--source`, `--sha256`, `--size`
/// and `--signature` (the `.minisig` file read here); `None` without one.
fn source_body(from: SourceArgs) -> Result<Option<Value>, Failure> {
    let (Some(url), Some(sha256)) = (from.source, from.sha256) else {
        return Ok(None);
    };
    let signature = from
        .signature
        .map(|p| {
            std::fs::read_to_string(&p).map_err(|e| {
                Failure::Usage(format!("cannot read the signature {}: {e}", p.display()))
            })
        })
        .transpose()?;
    Ok(Some(
        json!({"url": url, "sha256": sha256, "size": from.size, "signature": signature}),
    ))
}

/// `pkg create … --url URL` once meant the package's source; `--url` is the
/// server's everywhere now, so that spelling is refused with the new one
/// rather than taken as a server.
fn old_source_spelling(argv: impl Iterator<Item = String>) -> Option<String> {
    let argv: Vec<String> = argv.collect();
    let pkg = argv.iter().position(|a| a == "pkg")?;
    let mut rest = argv[pkg + 1..].iter();
    // The subcommand: the first word that is not a flag or a flag's value.
    let subcommand = loop {
        let word = rest.next()?;
        match word.as_str() {
            "--url" | "--key" | "-o" | "--output" => {
                rest.next();
            }
            w if w.starts_with('-') => {}
            w => break w.to_string(),
        }
    };
    let late_url = rest.any(|a| a == "--url" || a.starts_with("--url="));
    (late_url && (subcommand == "create" || subcommand == "edit")).then(|| {
        format!(
            "a package's source is `--source URL`; `--url` is the server's (give it before \
             `{subcommand}`, or set PACKD_URL)"
        )
    })
}

/// Packages looked up at most: a table of operations names each package
/// as `name@version` with one request per package, up to this many.
const NAMES_LOOKED_UP: usize = 100;

fn or_unknown(id: Option<uuid::Uuid>) -> String {
    id.map_or_else(|| "?".into(), |id| id.to_string())
}

/// `name@version` of the packages these operations work on (a deleted one,
/// or past the cap, keeps its id).
async fn package_names(
    api: &Api,
    items: &[Operation],
) -> std::collections::HashMap<uuid::Uuid, String> {
    let mut ids: Vec<uuid::Uuid> = items.iter().filter_map(|o| o.package_id).collect();
    ids.sort();
    ids.dedup();
    let mut names = std::collections::HashMap::new();
    for id in ids.into_iter().take(NAMES_LOOKED_UP) {
        if let Ok(p) = api
            .get_as::<Package>("GET", &format!("/v1/packages/{id}"), None, &[])
            .await
        {
            names.insert(id, format!("{}@{}", p.name, p.version));
        }
    }
    names
}
