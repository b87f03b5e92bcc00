//! The command line of the client commands (`packd pkg`, `packd op`,
//! `packd keys`, `packd healthcheck`): their flags, each with its
//! `PACKD_*` twin, and how they reach the server and print its answers.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::{ServerAddress, parse_duration};

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The server's base URL (plain http), as everywhere else: `/healthz`
    /// is added when it names no path (a full URL is checked as it is).
    /// Without it, `/healthz` on the address the server is told to listen
    /// on (`PACKD_LISTEN`), through loopback when that address is a
    /// wildcard such as 0.0.0.0.
    #[arg(long, env = "PACKD_HEALTHCHECK_URL")]
    pub url: Option<String>,

    #[command(flatten)]
    pub server: ServerAddress,

    /// How long to wait for the whole answer.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Work offline on this database file instead of through the API (no
    /// server may hold it; create, list, deactivate, activate and delete).
    // Its own id: the top level's `--db` (serve's, with a default) must not
    // reach it.
    #[arg(long = "db", id = "keys_db", value_name = "DB", global = true)]
    pub db: Option<PathBuf>,

    #[command(flatten)]
    pub client: ClientOptions,

    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown this once).
    Create {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// read, write or admin.
        #[arg(long, value_parser = ["read", "write", "admin"])]
        role: String,
        /// Lifetime of the key (e.g. 90d); without it the key never expires
        /// (unless the server's --key-ttl says otherwise).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// List keys (never their secrets).
    List,
    /// Show one key.
    Get { id: uuid::Uuid },
    /// Deactivate a key.
    Deactivate { id: uuid::Uuid },
    /// Activate a key.
    Activate { id: uuid::Uuid },
    /// Give a key a new secret (printed once); the old one keeps working
    /// for --grace.
    Rotate {
        id: uuid::Uuid,
        /// How long the old secret keeps working (e.g. 10m; default: not at all).
        #[arg(long, value_parser = parse_duration)]
        grace: Option<Duration>,
    },
    /// Delete a key.
    Delete { id: uuid::Uuid },
}

/// How the client commands reach the server and print what it says.
#[derive(Debug, Clone, Args)]
pub struct ClientOptions {
    /// The server's base URL.
    #[arg(
        long,
        env = "PACKD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,

    #[command(flatten)]
    pub session: Session,
}

/// The key and the output format of a client command.
#[derive(Debug, Clone, Args)]
pub struct Session {
    /// The API key.
    #[arg(long, env = "PACKD_API_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,

    /// `table` for people, `json` (one document) for programs.
    #[arg(
        long,
        short = 'o',
        env = "PACKD_OUTPUT",
        value_enum,
        default_value = "table",
        global = true
    )]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PkgArgs {
    /// The server's base URL, before or after the subcommand (a package's
    /// source is `--source`).
    #[arg(
        long = "url",
        id = "server_url",
        env = "PACKD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,

    #[command(flatten)]
    pub session: Session,

    #[command(subcommand)]
    pub command: PkgCommand,
}

impl PkgArgs {
    pub fn client(&self) -> ClientOptions {
        ClientOptions {
            url: self.url.clone(),
            session: self.session.clone(),
        }
    }
}

/// A package's source, as `pkg create` and `pkg edit` take it.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Where its artifact is (http or https). `--url` is the server's,
    /// everywhere.
    #[arg(long, value_name = "URL", requires = "sha256")]
    pub source: Option<String>,
    /// The artifact's SHA-256: 64 hexadecimal digits, either case (as
    /// `sha256sum` or a vendor's page prints it).
    #[arg(long, requires = "source", value_parser = lower_hex)]
    pub sha256: Option<String>,
    /// The artifact's size in bytes, checked after the download.
    #[arg(long, requires = "source")]
    pub size: Option<u64>,
    /// The artifact's minisign signature: the path of its `.minisig`
    /// (required when the server trusts publisher keys).
    #[arg(long, requires = "source")]
    pub signature: Option<PathBuf>,
}

/// REF is a package id or NAME@VERSION (split at the last `@`).
#[derive(Debug, Subcommand)]
pub enum PkgCommand {
    /// List packages.
    List {
        /// Only packages with this status (created, downloaded, active).
        #[arg(long, value_parser = ["created", "downloaded", "active"])]
        status: Option<String>,
        /// Only packages with this name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one package.
    Get {
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Create a package, with a source (--source and --sha256) or without.
    Create {
        name: String,
        version: String,
        #[command(flatten)]
        from: SourceArgs,
    },
    /// Change a package's name, version or source.
    Edit {
        #[arg(value_name = "REF")]
        reference: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// A new source.
        #[command(flatten)]
        from: SourceArgs,
        /// Remove the source.
        #[arg(long, conflicts_with = "source")]
        no_source: bool,
    },
    /// Delete a package and its files.
    Delete {
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Pin a package: retention never removes its files, and a channel
    /// never activates another version of its name over it.
    Pin {
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Unpin a package.
    Unpin {
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Download a package (created -> downloaded).
    Download(StartArgs),
    /// Activate a package (downloaded -> active).
    Activate(StartArgs),
    /// Deactivate a package (active -> downloaded).
    Deactivate(StartArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Follow the operation until it ends: a progress bar on a terminal,
    /// plain lines otherwise. Exit 1 if it fails or is cancelled.
    #[arg(long)]
    pub wait: bool,
    /// Makes a retried command safe: the same key returns the same operation.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct OpArgs {
    #[command(flatten)]
    pub client: ClientOptions,

    #[command(subcommand)]
    pub command: OpCommand,
}

#[derive(Debug, Subcommand)]
pub enum OpCommand {
    /// List operations, newest last.
    List {
        /// Only operations in this state.
        #[arg(long, value_parser = ["queued", "running", "succeeded", "failed", "cancelled"])]
        state: Option<String>,
        /// Only the operations of this package (an id or NAME@VERSION).
        #[arg(long, value_name = "REF")]
        package: Option<String>,
    },
    /// Show one operation.
    Get { id: uuid::Uuid },
    /// Follow an operation until it ends (exit 1 if it fails or is cancelled).
    Wait { id: uuid::Uuid },
    /// Cancel an operation.
    Cancel { id: uuid::Uuid },
}

/// A SHA-256 as the API spells it: upper-case digits are brought to lower
/// case here, so a digest pasted from anywhere is taken.
fn lower_hex(s: &str) -> Result<String, String> {
    let lower = s.trim().to_ascii_lowercase();
    if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(lower)
    } else {
        Err(format!(
            "a SHA-256 is 64 hexadecimal digits, got {} characters",
            s.chars().count()
        ))
    }
}

#[derive(Debug, Args)]
pub struct ChannelArgs {
    #[command(flatten)]
    pub client: ClientOptions,

    #[command(subcommand)]
    pub command: ChannelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Follow a channel: its document at URL, signed at URL.minisig by a
    /// key the server trusts (admin key).
    Add {
        /// The document's http or https URL.
        #[arg(value_name = "URL")]
        document: String,
        /// `auto` activates the version the document marks active once it
        /// is downloaded; `manual` (the default) only downloads.
        #[arg(long, value_parser = ["manual", "auto"])]
        activate: Option<String>,
        /// Time between syncs, 1s to 7d (default 5m), each spread by ±10 %.
        #[arg(long)]
        interval: Option<String>,
    },
    /// List the channels followed.
    List,
    /// Show one channel.
    Get { id: uuid::Uuid },
    /// Change how a channel is followed.
    Edit {
        id: uuid::Uuid,
        #[arg(long, value_parser = ["manual", "auto"])]
        activate: Option<String>,
        #[arg(long)]
        interval: Option<String>,
    },
    /// Sync a channel now.
    Sync {
        id: uuid::Uuid,
        /// Follow the sync until it ends (exit 1 if it fails).
        #[arg(long)]
        wait: bool,
    },
    /// Stop following a channel; its packages stay, as ordinary packages.
    Remove { id: uuid::Uuid },
    /// The publisher's side, offline: write DIR/channel.json and its
    /// .minisig for the artifacts in DIR (each with the .minisig that
    /// `packd sign` made for it), ready for any static file server.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The directory of artifacts; the document is written there.
    pub dir: PathBuf,
    /// The channel's name (`stable`): the signature's trusted comment
    /// names it, and a packd following another name refuses the document.
    #[arg(long)]
    pub name: String,
    /// Must be above the sequence of the channel.json already in DIR:
    /// every packd refuses a lower one as a replay.
    #[arg(long)]
    pub sequence: u64,
    /// The publisher's secret key (packd keygen, or minisign -G).
    #[arg(long)]
    pub secret_key: PathBuf,
    /// Read the secret key's password from this file (its first line).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Where the artifacts are served from; without it their URLs are
    /// relative to the document's.
    #[arg(long)]
    pub base_url: Option<String>,
    /// How long the document is valid: past it, every packd refuses it
    /// (a frozen mirror cannot hold a fleet back for longer).
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    pub expires: Duration,
    /// A version the fleet should run (repeatable, one per name).
    #[arg(long, value_name = "NAME@VERSION")]
    pub active: Vec<String>,
    /// The share of hosts that take a version, 0 to 100 (repeatable).
    #[arg(long, value_name = "NAME@VERSION=PERCENT")]
    pub rollout: Vec<String>,
}
