//! The configuration file (`--config`, `PACKD_CONFIG`): TOML whose keys are
//! the `serve` flags' long names with `_` for `-` (`data_dir`,
//! `trusted_keys = [..]`). It ranks under the command line and the
//! environment: its values are handed to clap as arguments for exactly the
//! flags that neither of those set, so every value goes through the one
//! parser the flag has, and flags, then environment, then the file, then
//! the defaults hold without a second source of truth. An unknown key or a
//! bad value is refused naming the file, the line and the key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use super::Cli;

/// The process's own command line, kept for a reload (SIGHUP) to merge
/// the file again under the same flags.
static PROCESS_ARGV: std::sync::OnceLock<Vec<OsString>> = std::sync::OnceLock::new();

pub fn remember_argv(argv: Vec<OsString>) {
    let _ = PROCESS_ARGV.set(argv);
}

/// The `serve` settings as the command line, the environment and the file
/// say now (for SIGHUP), with each flag's raw values by id (to tell what
/// changed without printing a secret); `None` when the process was not
/// started from a command line (a test's server in process).
pub fn reread() -> Option<Result<Settings, String>> {
    let argv = PROCESS_ARGV.get()?.clone();
    Some(merge(argv).and_then(|merged| settings(&merged.argv)))
}

/// A serve command line read: the settings and their raw values by id.
pub struct Settings {
    pub serve: super::ServeArgs,
    pub raw: BTreeMap<String, Vec<OsString>>,
}

fn settings(argv: &[OsString]) -> Result<Settings, String> {
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| first_line(&e.to_string()).to_string())?;
    let (part, _) = serve_part(&matches, argv).ok_or("not a serve command line")?;
    let command = Cli::command();
    let serve_command = command
        .find_subcommand("serve")
        .expect("the serve subcommand");
    // Arguments only: clap also lists the group a flattened struct makes.
    let raw = part
        .ids()
        .filter(|id| serve_command.get_arguments().any(|a| a.get_id() == *id))
        .map(|id| {
            let values = part
                .get_raw(id.as_str())
                .map(|v| v.map(ToOwned::to_owned).collect())
                .unwrap_or_default();
            (id.to_string(), values)
        })
        .collect();
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
        .map_err(|e| first_line(&e.to_string()).to_string())?;
    let serve = match cli.command {
        None => cli.serve,
        Some(super::Command::Serve(serve)) => *serve,
        Some(_) => return Err("not a serve command line".into()),
    };
    Ok(Settings { serve, raw })
}

/// The settings the process started with, for a reload to compare with.
pub fn started_with() -> Option<Settings> {
    let argv = PROCESS_ARGV.get()?.clone();
    merge(argv).and_then(|merged| settings(&merged.argv)).ok()
}

/// Most bytes of a configuration file (a full one is about 4 KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A command line with the file's settings in it.
#[derive(Debug, Clone)]
pub struct Merged {
    pub argv: Vec<OsString>,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// The flags (by id) whose value came from the file.
    pub from_file: Vec<String>,
}

/// The `serve` settings' place in a command line: `packd [FLAGS]`,
/// `packd serve [FLAGS]` or `packd config check [FLAGS]`.
fn serve_part(matches: &ArgMatches, argv: &[OsString]) -> Option<(ArgMatches, usize)> {
    let after = |word: &str| {
        argv.iter()
            .position(|a| a == word)
            .map(|i| i + 1)
            .unwrap_or(argv.len())
    };
    match matches.subcommand() {
        None => Some((matches.clone(), 1.min(argv.len()))),
        Some(("serve", sub)) => Some((sub.clone(), after("serve"))),
        Some(("config", sub)) => match sub.subcommand() {
            Some(("check", check)) => Some((check.clone(), after("check"))),
            _ => None,
        },
        Some(_) => None,
    }
}

/// Reads the file `--config` names (if the command runs the service or
/// checks its settings) and returns the command line with its settings
/// in. A command line clap refuses comes back as it is, for clap to say
/// why.
pub fn merge(argv: Vec<OsString>) -> Result<Merged, String> {
    let unchanged = |argv| Merged {
        argv,
        file: None,
        from_file: Vec::new(),
    };
    let Ok(matches) = Cli::command().try_get_matches_from(&argv) else {
        return Ok(unchanged(argv));
    };
    let Some((serve, at)) = serve_part(&matches, &argv) else {
        return Ok(unchanged(argv));
    };
    let Some(path) = serve.get_one::<PathBuf>("config").cloned() else {
        return Ok(unchanged(argv));
    };
    let text = read(&path)?;
    let (args, from_file) = file_args(&path, &text, &serve)?;
    let mut merged = argv;
    merged.splice(at..at, args);
    Ok(Merged {
        argv: merged,
        file: Some(path),
        from_file,
    })
}

fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "the configuration file {} is over {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(text)
}

/// The arguments the file's settings become, for the flags the command
/// line and the environment left alone, and those flags' ids.
fn file_args(
    path: &Path,
    text: &str,
    serve: &ArgMatches,
) -> Result<(Vec<OsString>, Vec<String>), String> {
    let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> = toml::from_str(text)
        .map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        format!("{}:{line}: {}", path.display(), e.message())
    })?;
    let command = Cli::command();
    let serve_command = command
        .find_subcommand("serve")
        .expect("the serve subcommand");
    let mut args = Vec::new();
    let mut from_file = Vec::new();
    for (key, value) in &table {
        let line = line_of(text, key.span().start);
        let at = |message: String| format!("{}:{line}: {message}", path.display());
        let name = key.get_ref();
        let arg = serve_command
            .get_arguments()
            .filter(|a| a.get_id() != "config" && a.get_long().is_some())
            .find(|a| {
                a.get_id().as_str() == name.as_str()
                    || a.get_long() == Some(name.replace('_', "-").as_str())
            })
            .ok_or_else(|| {
                at(format!(
                    "unknown key `{name}` (the keys are the serve flags' long names with _ for -, \
                     e.g. data_dir; `packd serve --help` lists them)"
                ))
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            serve.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue; // the command line and the environment rank above
        }
        let long = arg.get_long().expect("filtered on");
        let flag = !arg.get_action().takes_values();
        let repeats = matches!(arg.get_action(), clap::ArgAction::Append);
        let values: Vec<&toml::Value> = match value.get_ref() {
            toml::Value::Array(items) if repeats => items.iter().collect(),
            toml::Value::Array(_) => return Err(at(format!("`{name}` takes one value"))),
            one => vec![one],
        };
        for v in values {
            let text = match v {
                toml::Value::Boolean(on) if flag => {
                    if *on {
                        args.push(OsString::from(format!("--{long}")));
                    }
                    continue;
                }
                _ if flag => return Err(at(format!("`{name}` is true or false"))),
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(at(format!("`{name}` takes a string or a number"))),
            };
            // Checked by the flag's own parser here, so the error can name
            // the line; clap checks it again on the merged command line.
            let one = OsString::from(format!("--{long}={text}"));
            serve_command
                .clone()
                .try_get_matches_from([OsString::from("serve"), one.clone()])
                .map_err(|e| at(format!("`{name}`: {}", first_line(&e.to_string()))))?;
            args.push(one);
        }
        from_file.push(id.to_string());
    }
    Ok((args, from_file))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn first_line(s: &str) -> &str {
    s.trim_start_matches("error: ").lines().next().unwrap_or("")
}

/// `packd config check`: the effective settings, one `key = value` line
/// each with where it came from, secrets masked.
pub fn describe(merged: &Merged) -> Result<String, String> {
    let matches = Cli::command()
        .try_get_matches_from(&merged.argv)
        .map_err(|e| first_line(&e.to_string()).to_string())?;
    let (serve, _) = serve_part(&matches, &merged.argv).ok_or("not a serve command line")?;
    let command = Cli::command();
    let serve_command = command
        .find_subcommand("serve")
        .expect("the serve subcommand");
    let mut out = String::new();
    if let Some(file) = &merged.file {
        out.push_str(&format!("# configuration file: {}\n", file.display()));
    }
    for arg in serve_command.get_arguments() {
        let id = arg.get_id().as_str();
        if ["help", "version"].contains(&id) || arg.get_long().is_none() {
            continue;
        }
        let values: Vec<String> = serve
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let secret = arg.is_hide_env_values_set();
        let shown = match values.as_slice() {
            [] if !arg.get_action().takes_values() => "false".to_string(),
            [one] if !arg.get_action().takes_values() => one.clone(),
            [] => "(unset)".to_string(),
            _ if secret => "\"********\"".to_string(),
            [one] if !matches!(arg.get_action(), clap::ArgAction::Append) => format!("{one:?}"),
            many => format!("{many:?}"),
        };
        let from = if merged.from_file.iter().any(|f| f == id) {
            "file"
        } else {
            match serve.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "environment",
                _ => "default",
            }
        };
        out.push_str(&format!("{id} = {shown}  # {from}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("packd")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("packd.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path.to_str().unwrap().to_string())
    }

    #[test]
    fn the_file_fills_what_flags_leave_and_keys_are_checked() {
        let (_dir, path) = file(
            "# comment\nlisten = \"127.0.0.1:9999\"\nworkers = 7\nprivate_files = true\n\
             trusted_keys = []\nhook_timeout = \"5s\"\n",
        );
        let merged = merge(argv(&["serve", "--config", &path, "--workers", "2"])).unwrap();
        let cli = <Cli as clap::Parser>::try_parse_from(&merged.argv).unwrap();
        let Some(super::super::Command::Serve(serve)) = cli.command else {
            panic!("serve");
        };
        assert_eq!(serve.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(serve.workers, 2, "the flag ranks above the file");
        assert!(serve.private_files);
        assert_eq!(serve.hook_timeout, std::time::Duration::from_secs(5));
        assert!(merged.from_file.contains(&"listen".to_string()));
        assert!(!merged.from_file.contains(&"workers".to_string()));

        let (_dir, path) = file("listen = \"127.0.0.1:1\"\n\n  bogus_key = 1\n");
        let e = merge(argv(&["--config", &path])).unwrap_err();
        assert!(e.contains("packd.toml:3: unknown key `bogus_key`"), "{e}");
        let (_dir, path) = file("workers = \"many\"\n");
        let e = merge(argv(&["--config", &path])).unwrap_err();
        assert!(e.contains(":1: `workers`"), "{e}");
        let (_dir, path) = file("listen = [\n");
        let e = merge(argv(&["--config", &path])).unwrap_err();
        assert!(e.contains("packd.toml:"), "{e}");
    }

    /// The commented file the .deb installs names only real keys, each
    /// with a value its flag takes.
    #[test]
    fn the_shipped_file_parses_and_every_commented_key_is_real() {
        let shipped = include_str!("../../packaging/packd.toml");
        let settings: Vec<&str> = shipped
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .collect();
        // Files the examples name do not exist here: those keys are only
        // checked to be keys.
        let names_a_file = [
            "hook_activate",
            "hook_deactivate",
            "health_check",
            "trusted_keys",
            "ca_file",
        ];
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        let uncommented: String = settings
            .iter()
            .filter(|l| {
                let key = l.split(" = ").next().unwrap();
                assert!(serve.get_arguments().any(|a| a.get_id() == key), "{key}");
                !names_a_file.contains(&key)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.lines().count() > 25, "{uncommented}");
        let (_dir, path) = file(&uncommented);
        let merged = merge(argv(&["serve", "--config", &path])).unwrap();
        assert!(merged.from_file.len() > 25, "{:?}", merged.from_file);
        let (_dir, path) = file(shipped);
        assert!(
            merge(argv(&["serve", "--config", &path]))
                .unwrap()
                .from_file
                .is_empty()
        );
    }

    #[test]
    fn check_shows_each_setting_and_where_it_came_from_with_secrets_masked() {
        let (_dir, path) = file("bootstrap_key = \"a-secret-that-must-not-show-0123456789\"\n");
        let merged = merge(argv(&[
            "config",
            "check",
            "--config",
            &path,
            "--workers",
            "3",
        ]))
        .unwrap();
        let shown = describe(&merged).unwrap();
        assert!(shown.contains("workers = \"3\"  # flag"), "{shown}");
        assert!(
            shown.contains("bootstrap_key = \"********\"  # file"),
            "{shown}"
        );
        assert!(!shown.contains("a-secret"), "{shown}");
        assert!(
            shown.contains("listen = \"127.0.0.1:8080\"  # default"),
            "{shown}"
        );
    }
}
