//! Talking to systemd's service manager (`Type=notify`): `READY=1` once the
//! store is open and the port bound, `STOPPING=1` when shutdown starts, and
//! the watchdog keep-alive when the unit sets `WatchdogSec=`. Without
//! `NOTIFY_SOCKET` (not under systemd) every call does nothing.
//!
//! The protocol is one datagram to a Unix socket; libsystemd is not needed
//! for that.

use std::time::Duration;

/// Sends one notification; failures are logged, never fatal (systemd
/// then reports the start as timed out, which says more than we could).
pub fn notify(state: &str) {
    if let Err(e) = send(state) {
        tracing::warn!(error = %e, state, "cannot notify the service manager");
    }
}

#[cfg(target_os = "linux")]
fn send(state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // A leading `@` names a socket in the abstract namespace.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&path)?,
    };
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn send(_state: &str) -> std::io::Result<()> {
    Ok(())
}

/// The keep-alive interval systemd asked for (`WATCHDOG_USEC`, meant for
/// this process), halved as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_none_or(|pid| pid == std::process::id());
    (for_us && usec > 0).then(|| Duration::from_micros(usec / 2))
}
