//! The service commands of the client: `packd backup` through the API (the
//! offline one, on the file, is `offline::backup`) and `packd healthcheck`
//! for container health checks, where the image has no curl. Both through
//! the client's HTTP stack, like every other command.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::mpsc;

use super::args::{ClientOptions, HealthcheckArgs, Output, Session};
use super::http::{self, Api, Failure};
use crate::config::BackupArgs;

/// `http://ADDR` for a listen address, through loopback for a wildcard
/// (one cannot connect to 0.0.0.0 portably).
pub fn base_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// The URL checked when none is given: `/healthz` at the listen address.
pub fn default_health_url(listen: SocketAddr) -> String {
    format!("{}/healthz", base_url(listen))
}

/// `packd backup` without `--db`: `GET /v1/backup` into a file beside
/// `--out`, synced, renamed over it, then opened to check it is a packd
/// database. Exit statuses as for every client command.
pub fn backup(args: &BackupArgs) -> ExitCode {
    let options = ClientOptions {
        url: args
            .url
            .clone()
            .unwrap_or_else(|| base_url(args.server.listen)),
        session: Session {
            key: args.key.clone(),
            output: Output::Table,
        },
    };
    if options.session.key.is_none() {
        return Failure::Usage(
            "an admin key is needed: set PACKD_API_KEY or pass --key (or --db for an offline backup)"
                .into(),
        )
        .report();
    }
    if let Err(e) = crate::durable::check_destination(&args.out) {
        return Failure::Usage(e).report();
    }
    let out = args.out.clone();
    super::run(&options, async move |api| {
        let size = download(&api, &out).await?;
        let version = crate::store::verify_file(&out).map_err(|e| {
            Failure::Other(format!("the backup {} does not open: {e}", out.display()))
        })?;
        println!(
            "packd: backup written to {} ({size} bytes, schema version {version})",
            out.display()
        );
        Ok(())
    })
}

/// Streams the answer to a file written beside `out` on a blocking thread
/// (`durable::replace_file`: synced, renamed, the directory synced).
async fn download(api: &Api, out: &Path) -> Result<u64, Failure> {
    let answer = api
        .request("GET", "/v1/backup")?
        .send()
        .await
        .map_err(|e| api.unreachable(&e))?;
    if !answer.status().is_success() {
        return Err(http::read(answer)
            .await
            .err()
            .unwrap_or_else(|| Failure::Other("the server answered without a backup".into())));
    }
    let expected = answer.content_length();
    let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(16);
    let path = out.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || {
        crate::durable::replace_file(&path, |tmp| -> std::io::Result<u64> {
            use std::io::Write;
            let mut file = crate::durable::create_private_file(tmp)?;
            let mut written = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
            }
            if expected.is_some_and(|n| n != written) {
                return Err(std::io::Error::other(format!(
                    "the server sent {written} of {} bytes",
                    expected.unwrap_or_default()
                )));
            }
            file.sync_all()?;
            Ok(written)
        })
    });
    let mut answer = answer;
    let pumped = async {
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| Failure::Unreachable(format!("the backup was cut: {e}")))?
        {
            if tx.send(chunk).await.is_err() {
                break; // the writer failed; it says why
            }
        }
        Ok::<(), Failure>(())
    }
    .await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Failure::Other(e.to_string()))?
        .map_err(|e| Failure::Other(format!("cannot write {}: {e}", out.display())));
    pumped?;
    written
}

/// A base URL (no path, or `/`) gets `/healthz`; any other is checked as
/// it is.
fn health_url_of(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    match rest.find('/') {
        None => format!("{url}/healthz"),
        Some(i) if &rest[i..] == "/" => format!("{}healthz", url),
        Some(_) => url.to_string(),
    }
}

/// `packd healthcheck`: 0 when the URL answers 200 within the timeout.
pub fn healthcheck(args: &HealthcheckArgs) -> ExitCode {
    let url = args
        .url
        .as_deref()
        .map_or_else(|| default_health_url(args.server.listen), health_url_of);
    match probe(&url, args.timeout) {
        Ok(200) => {
            println!("packd: {url} is healthy");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("packd: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("packd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends the GET and returns the status code of the answer, within
/// `timeout` in all. Plain http only: packd serves plain http (TLS ends at
/// a proxy in front of it).
pub fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    if !url.starts_with("http://") {
        return Err(format!(
            "only http:// URLs are supported, not {url:?} (packd serves plain http)"
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    runtime.block_on(async {
        let client = http::client(
            false,
            concat!("packd-healthcheck/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(|e| format!("{e:?}"))?;
        let answer = tokio::time::timeout(timeout, client.get(url).send())
            .await
            .map_err(|_| format!("no answer from {url} within {timeout:?}"))?
            .map_err(|e| format!("no answer from {url}: {e}"))?;
        Ok(answer.status().as_u16())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_checked_through_loopback() {
        assert_eq!(
            default_health_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(
            default_health_url("[::]:9000".parse().unwrap()),
            "http://[::1]:9000/healthz"
        );
        assert_eq!(
            default_health_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80/healthz"
        );
    }

    #[test]
    fn only_plain_http_is_probed() {
        let err = probe("https://example.org/", Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("only http://"), "{err}");
    }
}
