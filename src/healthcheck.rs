//! `packd healthcheck`: a GET of `/healthz` for container health checks,
//! where the image has no curl, through the project's HTTP client. Plain
//! http only (packd serves plain http; TLS ends at a proxy in front of it),
//! and a hard deadline.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::client::args::HealthcheckArgs;

/// The URL checked when none is given: the listen address, with a wildcard
/// address replaced by loopback (one cannot connect to 0.0.0.0 portably).
pub fn default_url(listen: SocketAddr) -> String {
    format!("{}/healthz", base_url(listen))
}

/// `http://ADDR` for a listen address, through loopback for a wildcard.
pub fn base_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Sends the GET and returns the status code of the answer. Every address
/// the host resolves to is tried (`localhost` may be ::1 first while packd
/// listens on 127.0.0.1).
pub fn probe(url: &str, timeout: Duration) -> anyhow::Result<u16> {
    if !url.starts_with("http://") {
        bail!("only http:// URLs are supported, not {url:?} (packd serves plain http)");
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .user_agent("packd-healthcheck")
        .build()
        .into();
    let resp = agent
        .get(url)
        .call()
        .with_context(|| format!("no answer from {url} within {timeout:?}"))?;
    Ok(resp.status().as_u16())
}

/// Runs the command: Ok when the answer is 200.
pub fn run(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| default_url(args.server.listen));
    match probe(&url, args.timeout)? {
        200 => {
            println!("packd: {url} is healthy");
            Ok(())
        }
        status => bail!("{url} answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_checked_through_loopback() {
        assert_eq!(
            default_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(
            default_url("[::]:9000".parse().unwrap()),
            "http://[::1]:9000/healthz"
        );
        assert_eq!(
            default_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80/healthz"
        );
    }

    #[test]
    fn only_plain_http_is_probed() {
        let err = probe("https://example.org/", Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("only http://"), "{err}");
    }
}
