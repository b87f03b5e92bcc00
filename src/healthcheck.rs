//! `packd healthcheck`: a minimal HTTP/1.1 GET of `/healthz` for container
//! health checks, where the image has no curl. Plain http only (packd serves
//! plain http; TLS ends at a proxy in front of it), and a hard deadline.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::config::HealthcheckArgs;

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

/// `http://host[:port][/path]` split into (host:port, path).
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("only http:// URLs are supported, not {url:?}");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        bail!("{url:?} has no usable host");
    }
    let has_port = match authority.rfind(']') {
        // [v6]:port
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// Sends the GET and returns the status code of the answer.
pub fn probe(url: &str, timeout: Duration) -> anyhow::Result<u16> {
    let deadline = Instant::now() + timeout;
    let (authority, path) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("timed out after {timeout:?}");
    }
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    let host = authority.trim_end_matches(":80");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: packd-healthcheck\r\nConnection: close\r\n\r\n"
    )?;
    // The status line fits in the first bytes; the rest is not needed.
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < head.len() {
        let n = stream
            .read(&mut head[len..])
            .with_context(|| format!("no answer from {addr} within {timeout:?}"))?;
        if n == 0 {
            break;
        }
        len += n;
        if head[..len].contains(&b'\n') {
            break;
        }
    }
    let line = std::str::from_utf8(&head[..len]).unwrap_or("");
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("{addr} did not answer HTTP"))?;
    Ok(status)
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
    fn urls_are_split_into_address_and_path() {
        let split = |u| split_url(u).unwrap();
        assert_eq!(
            split("http://127.0.0.1:8080/healthz"),
            ("127.0.0.1:8080".into(), "/healthz".into())
        );
        assert_eq!(
            split("http://localhost"),
            ("localhost:80".into(), "/".into())
        );
        assert_eq!(split("http://[::1]/x"), ("[::1]:80".into(), "/x".into()));
        assert_eq!(split("http://[::1]:81/x"), ("[::1]:81".into(), "/x".into()));
        assert!(split_url("https://example.org/").is_err());
        assert!(split_url("http:///healthz").is_err());
    }
}
