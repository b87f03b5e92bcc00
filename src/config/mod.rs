//! The command line: every flag of every subcommand, each serve flag with its
//! `PACKD_*` environment twin (clap's `env`), so containers and systemd units
//! configure packd without a config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::args::{HealthcheckArgs, KeysArgs, OpArgs, PkgArgs};

pub mod file;
pub mod man;

pub use man::ManArgs;

#[derive(Debug, Parser)]
#[command(
    name = "packd",
    version,
    about = "A self-hosted service for managing software packages",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// `packd` alone is `packd serve` with these flags.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI description (JSON) on standard output.
    Openapi,
    /// Packages on a running server: list, get, create, edit, delete,
    /// download, activate, deactivate.
    Pkg(PkgArgs),
    /// Operations on a running server: list, get, wait, cancel.
    Op(OpArgs),
    /// Manage API keys through the running server's API (admin key), or
    /// offline on the database file with --db (the server must not be running).
    Keys(KeysArgs),
    /// Print a completion script for a shell.
    Completions(CompletionsArgs),
    /// Print the manual page, packd(1), in roff; with --dir, write it and
    /// a page per subcommand (packd-serve(1), packd-pkg-create(1), …).
    #[command(hide = true)]
    Man(ManArgs),
    /// Write a backup: through the running server's API (admin key), or with
    /// --db straight from a database file no server holds.
    Backup(BackupArgs),
    /// Check every page of a database file no server holds: exit 0 intact,
    /// 1 damaged, 2 cannot be checked. The file is only read (the check
    /// runs on a copy beside it, which needs as much free space).
    Check(CheckArgs),
    /// Tools for benchmarks and trials, working offline on a database file.
    Dev(DevArgs),
    /// Exit 0 if the server's `/healthz` answers 200, non-zero otherwise (for
    /// container health checks: the image has no curl).
    Healthcheck(HealthcheckArgs),
    /// The configuration file: `packd config check` prints the effective
    /// settings (secrets masked) and where each came from; exit 2 when the
    /// file or a value is wrong.
    Config(ConfigArgs),
    /// Make a minisign key pair for signing artifacts: PREFIX.key (secret,
    /// unencrypted, mode 0600) and PREFIX.pub (to trust with --trusted-key).
    Keygen(KeygenArgs),
    /// Sign an artifact for one package: writes ARTIFACT.minisig, whose
    /// trusted comment names the package (`name=N version=V`).
    Sign(SignArgs),
    /// Channels: follow a publisher's signed document on a running server
    /// (add, list, get, edit, sync, remove), or publish one (offline).
    Channel(crate::client::args::ChannelArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the settings `packd serve` would run with (the same flags,
    /// environment and `--config`), and print them.
    Check(Box<ServeArgs>),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the pair: PREFIX.key and PREFIX.pub. Neither may exist.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The secret key: from `packd keygen`, or `minisign -G` (an encrypted
    /// one asks for its password on the terminal).
    #[arg(long)]
    pub secret_key: PathBuf,
    /// The package's name, as the signature's trusted comment names it.
    #[arg(long)]
    pub name: String,
    /// The package's version, as the signature's trusted comment names it.
    #[arg(long)]
    pub version: String,
    /// Read the secret key's password from this file (its first line)
    /// instead of asking on the terminal.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// The artifact to sign.
    pub artifact: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup. It is written beside it first, synced, and
    /// renamed, so the file is either the old one or the whole new backup.
    #[arg(long)]
    pub out: PathBuf,

    /// Back up this database file directly (offline: no server may hold it).
    /// Without it, the backup comes from the running server.
    #[arg(long)]
    pub db: Option<PathBuf>,

    /// The server to back up (plain http). Default: the address in PACKD_LISTEN,
    /// through loopback when that is a wildcard.
    #[arg(long, env = "PACKD_URL")]
    pub url: Option<String>,

    /// An admin API key, for the online backup.
    #[arg(long, env = "PACKD_API_KEY", hide_env_values = true)]
    pub key: Option<String>,

    #[command(flatten)]
    pub server: ServerAddress,
}

/// Where a running server listens, for commands that talk to it: the same
/// `PACKD_LISTEN` the server reads, so in a container or a unit the commands
/// find it without flags.
#[derive(Debug, Args)]
pub struct ServerAddress {
    /// Where the server listens; only used to build the default URL.
    #[arg(
        long,
        env = "PACKD_LISTEN",
        default_value = "127.0.0.1:8080",
        hide = true
    )]
    pub listen: SocketAddr,
}

/// The database file of a command that opens it itself (no server may
/// hold it): the same flag and default as `packd serve --db`.
#[derive(Debug, Clone, Args)]
pub struct DbFile {
    /// The database file (the server's `--db`; no server may hold it).
    #[arg(long, env = "PACKD_DB", default_value = DEFAULT_DB, global = true)]
    pub db: PathBuf,
}

/// Where the database file is unless `--db` or `PACKD_DB` says otherwise.
pub const DEFAULT_DB: &str = "./packd.redb";

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub file: DbFile,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub file: DbFile,

    #[command(subcommand)]
    pub command: DevCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Write generated packages straight to the file (no HTTP), e.g. a
    /// million for the benchmarks. Names are `PREFIX-N`; statuses cycle
    /// through created, downloaded and active.
    Seed {
        /// How many packages to write.
        #[arg(long)]
        count: u64,
        /// Name prefix; seeding again needs another one (names are unique).
        #[arg(long, default_value = "seed")]
        prefix: String,
        /// Also queue a download for this many of the new `created` packages.
        #[arg(long, default_value_t = 0)]
        queue_downloads: u64,
    },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A configuration file (TOML): the keys are these flags' long names
    /// with `_` for `-`. Flags and the environment rank above it; SIGHUP
    /// reads it again.
    #[arg(help_heading = "Serving", long, env = "PACKD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address and port to listen on.
    #[arg(
        help_heading = "Serving",
        long,
        env = "PACKD_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// The database file (created on first start).
    #[arg(help_heading = "Storage", long, env = "PACKD_DB", default_value = DEFAULT_DB)]
    pub db: PathBuf,

    /// The data directory: downloaded artifacts and package files. Made at
    /// start if missing (0755, or 0750 with --private-files; an existing
    /// one keeps its mode). One packd owns it: a second one on the same
    /// directory is refused.
    #[arg(
        help_heading = "Storage",
        long,
        env = "PACKD_DATA_DIR",
        default_value = "./packd-data"
    )]
    pub data_dir: PathBuf,

    /// Use the data directory even though it belongs to another database
    /// (or the database to another directory): after restoring a backup
    /// onto a new directory, or moving one. Its owner record is rewritten.
    #[arg(help_heading = "Storage", long, env = "PACKD_ADOPT_DATA_DIR")]
    pub adopt_data_dir: bool,

    /// Install package files 0640 and directories 0750 (the group reads,
    /// other users nothing) instead of 0644/0755.
    #[arg(help_heading = "Storage", long, env = "PACKD_PRIVATE_FILES")]
    pub private_files: bool,

    /// Log line format.
    #[arg(
        help_heading = "Logging",
        long,
        env = "PACKD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter, in `tracing` syntax (e.g. `info`, `packd=debug,poem=info`).
    #[arg(
        help_heading = "Logging",
        long,
        env = "PACKD_LOG",
        default_value = "info"
    )]
    pub log: String,

    /// A browser origin allowed by CORS (repeatable). CORS is off without one.
    #[arg(
        help_heading = "Serving",
        long = "cors-origin",
        env = "PACKD_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// How long requests in flight may take to finish after SIGTERM.
    #[arg(help_heading = "Serving", long, env = "PACKD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Accept the API key in the `api_key` query parameter (off: URLs end up in logs).
    #[arg(help_heading = "Serving", long, env = "PACKD_ALLOW_QUERY_KEY")]
    pub allow_query_key: bool,

    /// Default lifetime of keys created without `expires_at` (e.g. 90d); unset: never expire.
    #[arg(help_heading = "Limits", long, env = "PACKD_KEY_TTL", value_parser = parse_duration)]
    pub key_ttl: Option<Duration>,

    /// How long audit log entries are kept.
    #[arg(help_heading = "Storage", long, env = "PACKD_AUDIT_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub audit_retention: Duration,

    /// Becomes the admin key `bootstrap` when no active admin key exists (at least 32 characters).
    #[arg(long, env = "PACKD_BOOTSTRAP_KEY", hide_env_values = true, hide = true)]
    pub bootstrap_key: Option<String>,

    /// Workers running operations at once.
    #[arg(
        help_heading = "Operations",
        long,
        env = "PACKD_WORKERS",
        default_value_t = 4
    )]
    pub workers: usize,

    /// How long the stub executor takes to download a package.
    #[arg(help_heading = "Simulation (packages without a source)", long, env = "PACKD_DOWNLOAD_DURATION", default_value = "10s", value_parser = parse_duration)]
    pub download_duration: Duration,

    /// How long the stub executor takes to activate a package.
    #[arg(help_heading = "Simulation (packages without a source)", long, env = "PACKD_ACTIVATE_DURATION", default_value = "3s", value_parser = parse_duration)]
    pub activate_duration: Duration,

    /// How long the stub executor takes to deactivate a package.
    #[arg(help_heading = "Simulation (packages without a source)", long, env = "PACKD_DEACTIVATE_DURATION", default_value = "2s", value_parser = parse_duration)]
    pub deactivate_duration: Duration,

    /// Share of stub attempts that fail (0 to 1), for testing retries.
    #[arg(help_heading = "Simulation (packages without a source)", long, env = "PACKD_STUB_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub stub_failure_rate: f64,

    /// Attempts before an operation is marked failed.
    #[arg(help_heading = "Operations", long, env = "PACKD_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// First retry delay; doubles with each retry (with jitter), up to 5 minutes.
    #[arg(help_heading = "Operations", long, env = "PACKD_RETRY_DELAY", default_value = "1s", value_parser = parse_duration)]
    pub retry_delay: Duration,

    /// After an activation, the versions of its name that keep their files,
    /// the active one counting (older ones go back to `created`; never the
    /// active, the previous, a pinned one or one in flight). 0 keeps all.
    #[arg(help_heading = "Storage", long, env = "PACKD_KEEP_DOWNLOADED", default_value_t = crate::store::DEFAULT_KEEP_DOWNLOADED)]
    pub keep_downloaded: usize,

    /// The free space a download must leave on the data directory's file
    /// system: a size (1GiB, 500MB) or a share of it (5%). Else it fails
    /// at once.
    #[arg(help_heading = "Storage", long, env = "PACKD_MIN_FREE_SPACE", default_value = "1GiB", value_parser = crate::files::space::Floor::parse)]
    pub min_free_space: crate::files::space::Floor,

    /// How long finished operations are kept.
    #[arg(help_heading = "Storage", long, env = "PACKD_OPERATION_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub operation_retention: Duration,

    /// Open HTTP connections at most; past it a new one gets 503 and is
    /// closed. Keep it under the process's file descriptor limit.
    #[arg(
        help_heading = "Serving",
        long,
        env = "PACKD_MAX_CONNECTIONS",
        default_value_t = 512
    )]
    pub max_connections: usize,

    /// The most bytes one artifact may have; a larger one fails its download.
    #[arg(help_heading = "Downloads and trust", long, env = "PACKD_MAX_DOWNLOAD_BYTES", default_value_t = 8 << 30)]
    pub max_download_bytes: u64,

    /// The most bytes one artifact may unpack to (archive headers included).
    #[arg(help_heading = "Downloads and trust", long, env = "PACKD_MAX_UNPACKED_BYTES", default_value_t = 32 << 30)]
    pub max_unpacked_bytes: u64,

    /// How long unpacking one artifact may take; past it the download
    /// fails (a hostile archive is not given the machine's time).
    #[arg(help_heading = "Downloads and trust", long, env = "PACKD_UNPACK_TIMEOUT", default_value = "30m", value_parser = parse_positive_duration)]
    pub unpack_timeout: Duration,

    /// How long one download attempt may take in all (a source that sends a
    /// byte now and then is never silent long enough for --read-timeout);
    /// then it is retried. Default: no limit.
    #[arg(help_heading = "Downloads and trust", long, env = "PACKD_DOWNLOAD_TIMEOUT", value_parser = parse_positive_duration)]
    pub download_timeout: Option<Duration>,

    /// How long a download may take to connect.
    #[arg(help_heading = "Downloads and trust", long, env = "PACKD_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub connect_timeout: Duration,

    /// The longest silence while a download reads (then it is retried).
    #[arg(help_heading = "Downloads and trust", long, env = "PACKD_READ_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub read_timeout: Duration,

    /// Extra trusted roots (PEM) for https sources, besides the bundled and
    /// the system's, e.g. an internal mirror's CA.
    #[arg(help_heading = "Downloads and trust", long, env = "PACKD_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Sends every download through this HTTP proxy (an `http://` or
    /// `https://` URL), whatever `http_proxy` and `https_proxy` say; hosts
    /// in `no_proxy` and loopback addresses are still reached directly.
    #[arg(help_heading = "Downloads and trust", long, env = "PACKD_PROXY", value_parser = parse_proxy)]
    pub proxy: Option<String>,

    /// Event streams (`GET /v1/events`) open at once; past it a new one gets 503.
    #[arg(
        help_heading = "Serving",
        long,
        env = "PACKD_MAX_STREAMS",
        default_value_t = 256
    )]
    pub max_streams: usize,

    /// How often an idle event stream gets a comment line, so proxies keep
    /// it open (at most 15s, as the API promises).
    #[arg(help_heading = "Serving", long, env = "PACKD_EVENT_HEARTBEAT", default_value = "15s", value_parser = parse_heartbeat)]
    pub event_heartbeat: Duration,

    /// A program run (without a shell) after `active/<name>` points at a
    /// newly activated version; a failure puts the link back and fails the
    /// attempt. It may run again after a crash: it must be idempotent.
    #[arg(help_heading = "Hooks", long, env = "PACKD_HOOK_ACTIVATE", value_parser = parse_program)]
    pub hook_activate: Option<PathBuf>,

    /// A program run (without a shell) after `active/<name>` is removed by
    /// a deactivation; a failure puts the link back and fails the attempt.
    #[arg(help_heading = "Hooks", long, env = "PACKD_HOOK_DEACTIVATE", value_parser = parse_program)]
    pub hook_deactivate: Option<PathBuf>,

    /// How long a hook may run; then it gets SIGTERM, and SIGKILL 5 s later.
    #[arg(help_heading = "Hooks", long, env = "PACKD_HOOK_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub hook_timeout: Duration,

    /// A program run (like a hook) every --health-interval after an
    /// activation, until --health-window has passed: the activation
    /// succeeds only then. A failure or a timeout reverts it (the link and
    /// the activate hook back to the version active before).
    #[arg(help_heading = "Hooks", long, env = "PACKD_HEALTH_CHECK", value_parser = parse_program)]
    pub health_check: Option<PathBuf>,

    /// How long an activation is watched by --health-check.
    #[arg(help_heading = "Hooks", long, env = "PACKD_HEALTH_WINDOW", default_value = "30s", value_parser = parse_duration)]
    pub health_window: Duration,

    /// Time between two runs of --health-check in the window.
    #[arg(help_heading = "Hooks", long, env = "PACKD_HEALTH_INTERVAL", default_value = "5s", value_parser = parse_positive_duration)]
    pub health_interval: Duration,

    /// How long one run of --health-check may take (then it failed).
    #[arg(help_heading = "Hooks", long, env = "PACKD_HEALTH_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub health_timeout: Duration,

    /// A publisher key to trust (repeatable): the base64 line of a minisign
    /// public key, or the path of its `.pub` file. With one or more, every
    /// source must carry a signature by one of them, for its package's name
    /// and version, and every download checks it.
    #[arg(help_heading = "Downloads and trust", long = "trusted-key", env = "PACKD_TRUSTED_KEYS", value_delimiter = ',', value_parser = parse_trusted_key)]
    pub trusted_keys: Vec<crate::trust::TrustedKey>,

    /// Accept `file://` URLs as package sources. Off: a client with the
    /// write role could otherwise make packd read any file it may read.
    #[arg(
        help_heading = "Downloads and trust",
        long,
        env = "PACKD_ALLOW_FILE_SOURCES"
    )]
    pub allow_file_sources: bool,

    /// Open HTTP connections from one client address at most; past it a new
    /// one from that address gets 503 and is closed. 0: no cap (behind a
    /// reverse proxy every client has the proxy's address).
    #[arg(
        help_heading = "Serving",
        long,
        env = "PACKD_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64
    )]
    pub max_connections_per_client: usize,

    /// How long a client may take to send a request's headers; an idle
    /// keep-alive connection is closed after it too.
    #[arg(help_heading = "Serving", long, env = "PACKD_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// Also serve HTTP/2 over cleartext (prior knowledge). Off by default:
    /// HTTP/1.1 is all the API needs, and HTTP/2 lets one connection carry
    /// many requests at once (it runs with at most 32 streams a connection).
    #[arg(help_heading = "Serving", long, env = "PACKD_HTTP2")]
    pub http2: bool,

    /// Long polls (`GET /v1/operations/{id}?wait=`) waiting at once at most;
    /// past it a request that would wait gets 503.
    #[arg(
        help_heading = "Serving",
        long,
        env = "PACKD_MAX_WAITING",
        default_value_t = 256
    )]
    pub max_waiting: usize,

    /// Requests per second each API key may make (its `rate_limit` overrides
    /// it); unset: no limit. Over it: 429 with Retry-After.
    #[arg(help_heading = "Limits", long, env = "PACKD_RATE_LIMIT")]
    pub rate_limit: Option<u32>,

    /// Failed authentications a client address may make before its requests
    /// get 429 (it regains one a second); 0 turns the throttle off.
    #[arg(
        help_heading = "Limits",
        long,
        env = "PACKD_AUTH_FAILURE_BURST",
        default_value_t = 20
    )]
    pub auth_failure_burst: u32,

    /// Size of the database page cache, in MiB.
    #[arg(
        help_heading = "Storage",
        long,
        env = "PACKD_CACHE_MB",
        default_value_t = 64
    )]
    pub cache_mb: usize,
}

pub(crate) fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("a share from 0 to 1, such as 0.3".into()),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 3s, 2m)"))
}

/// A hook: an absolute path (the service's working directory is nobody's
/// business) to an executable file, checked at start rather than at the
/// first activation.
pub(crate) fn parse_program(s: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let path = PathBuf::from(s);
    if !path.is_absolute() {
        return Err("must be an absolute path (hooks run without a shell)".into());
    }
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot use {s}: {e}"))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{s} is not an executable file"));
    }
    Ok(path)
}

pub(crate) fn parse_heartbeat(s: &str) -> Result<Duration, String> {
    match parse_positive_duration(s)? {
        d if d > Duration::from_secs(15) => Err("must be at most 15s".into()),
        d => Ok(d),
    }
}

pub(crate) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

pub(crate) fn parse_trusted_key(s: &str) -> Result<crate::trust::TrustedKey, String> {
    crate::trust::TrustedKey::parse(s)
}

fn parse_proxy(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(s.to_string()),
        "http" | "https" => Err("names no host".into()),
        other => Err(format!(
            "{other}:// is not a proxy packd can use (http or https)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_packd_is_serve_with_defaults() {
        let cli = Cli::try_parse_from(["packd"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cli.serve.db, PathBuf::from("./packd.redb"));
    }

    #[test]
    fn a_proxy_is_an_http_or_https_url_with_a_host() {
        assert!(parse_proxy("http://proxy.internal:3128").is_ok());
        assert!(parse_proxy("https://10.0.0.1").is_ok());
        for bad in [
            "socks5://proxy:1080",
            "proxy:3128",
            "http://",
            "file:///tmp/p",
        ] {
            assert!(parse_proxy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_human() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").unwrap_err().contains("examples"));
    }
}
