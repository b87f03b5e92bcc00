//! `packd channel …`: following channels on a running server, and
//! `packd channel publish`, the publisher's side, which works offline on a
//! directory (`crate::publish`).

use std::process::ExitCode;

use serde_json::json;

use super::answers::{Channel, Operation};
use super::args::{ChannelArgs, ChannelCommand, Output};
use super::http::{Api, Failure};
use super::{finished, follow, run as run_client, show};

/// Runs `packd channel …`.
pub fn run(args: ChannelArgs) -> ExitCode {
    if let ChannelCommand::Publish(p) = &args.command {
        let job = crate::publish::Publish {
            dir: &p.dir,
            name: &p.name,
            sequence: p.sequence,
            secret_key: &p.secret_key,
            password_file: p.password_file.as_deref(),
            base_url: p.base_url.as_deref(),
            expires_in: p.expires,
            active: &p.active,
            rollout: &p.rollout,
        };
        return match crate::publish::publish(&job) {
            Ok((document, signature, n)) => {
                println!("{}", document.display());
                println!("{}", signature.display());
                eprintln!(
                    "published {} sequence {} with {n} packages",
                    p.name, p.sequence
                );
                ExitCode::SUCCESS
            }
            Err(e) => Failure::Other(format!("{e:#}")).report(),
        };
    }
    let out = args.client.session.output;
    run_client(&args.client, async move |api| {
        command(&api, out, args.command).await
    })
}

async fn command(api: &Api, out: Output, command: ChannelCommand) -> Result<(), Failure> {
    match command {
        ChannelCommand::Add {
            document,
            activate,
            interval,
        } => {
            let mut body = json!({"url": document});
            if let Some(a) = activate {
                body["activate"] = json!(a);
            }
            if let Some(i) = interval {
                body["interval"] = json!(i);
            }
            let c: Channel = api.get_as("POST", "/v1/channels", Some(&body), &[]).await?;
            show::channel(out, &c);
        }
        ChannelCommand::List => {
            let list: serde_json::Value = api.get_as("GET", "/v1/channels", None, &[]).await?;
            let items: Vec<Channel> = super::http::typed(list["items"].clone())?;
            show::channels(out, &items);
        }
        ChannelCommand::Get { id } => {
            let c: Channel = api
                .get_as("GET", &format!("/v1/channels/{id}"), None, &[])
                .await?;
            show::channel(out, &c);
        }
        ChannelCommand::Edit {
            id,
            activate,
            interval,
        } => {
            let mut body = json!({});
            if let Some(a) = activate {
                body["activate"] = json!(a);
            }
            if let Some(i) = interval {
                body["interval"] = json!(i);
            }
            let c: Channel = api
                .get_as("PATCH", &format!("/v1/channels/{id}"), Some(&body), &[])
                .await?;
            show::channel(out, &c);
        }
        ChannelCommand::Sync { id, wait } => {
            let op: Operation = api
                .get_as("POST", &format!("/v1/channels/{id}/sync"), None, &[])
                .await?;
            if !wait {
                show::operation(out, &op);
                return Ok(());
            }
            let done = follow::to_the_end(api, op.id, &format!("sync of channel {id}")).await?;
            finished(out, &done)?;
        }
        ChannelCommand::Remove { id } => {
            api.send("DELETE", &format!("/v1/channels/{id}"), None)
                .await?;
            show::deleted(out, "channel", id);
        }
        // Offline: `run` handles it before a client is made.
        ChannelCommand::Publish(_) => {
            return Err(Failure::Usage(
                "channel publish works on a directory, not a server".into(),
            ));
        }
    }
    Ok(())
}
