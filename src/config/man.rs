//! The manual pages, made from the command definitions: packd(1) and one
//! page per subcommand (packd-serve(1), packd-pkg-create(1), …), which the
//! pages' SUBCOMMANDS sections name. clap_mangen writes the parts it knows
//! (name, synopsis, description, options, subcommands, version); the
//! sections a reader of a manual page looks for and clap cannot know,
//! ENVIRONMENT, EXIT STATUS and SEE ALSO, are written here.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Command, CommandFactory};
use roff::{Roff, bold, roman};

use super::Cli;

/// Where `packd man` writes.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write packd.1 and one page per subcommand into this directory
    /// (which must exist) instead of printing packd(1).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `packd man`: packd(1) on standard output, or every page into a directory.
pub fn run(args: &ManArgs) -> std::io::Result<()> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    match &args.dir {
        None => page(&command, &mut std::io::stdout().lock()),
        Some(dir) => {
            for path in write_pages(&command, dir)? {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}

/// Writes the page of `command` and of each of its visible subcommands,
/// depth first, and returns the files written.
fn write_pages(command: &Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.extend(write_pages(sub, dir)?);
    }
    let path = dir.join(format!("{}.1", page_name(command)));
    let mut buffer = Vec::new();
    page(command, &mut buffer)?;
    std::fs::write(&path, buffer)?;
    written.push(path);
    Ok(written)
}

/// `packd-pkg-create` for `packd pkg create` (clap's display name, set by
/// `build`).
fn page_name(command: &Command) -> String {
    command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_string()
}

fn page(command: &Command, out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command.clone()).title(page_name(command));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if command.has_subcommands() {
        man.render_subcommands_section(out)?;
    }
    let mut roff = Roff::new();
    environment(command, &mut roff);
    exit_status(&page_name(command), &mut roff);
    see_also(command, &mut roff);
    roff.to_writer(out)?;
    // Only the top page has a version (clap_mangen's section unwraps it).
    if command.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// Every `PACKD_*` variable the command reads, with its flag's help.
fn environment(command: &Command, roff: &mut Roff) {
    let mut variables: Vec<(String, String)> = command
        .get_arguments()
        .filter_map(|a| {
            let name = a.get_env()?.to_string_lossy().into_owned();
            let help = a.get_help().map(ToString::to_string).unwrap_or_default();
            let flag = a
                .get_long()
                .filter(|_| !a.is_hide_set())
                .map(|l| format!(" (the same as --{l})"))
                .unwrap_or_default();
            Some((name, format!("{help}{flag}")))
        })
        .collect();
    if page_name(command) == "packd-serve" || page_name(command) == "packd" {
        variables.push((
            "PACKD_BOOTSTRAP_KEY".into(),
            "At least 32 characters: becomes the admin key `bootstrap` when the database \
             has no active admin key. Read from the environment or the configuration file \
             only, never from the command line (ps shows it to every user)."
                .into(),
        ));
        variables.push((
            "PACKD_CONFIG".into(),
            "The configuration file (TOML, keyed by the serve flags' long names), ranked \
             below flags and the environment (the same as --config)."
                .into(),
        ));
    }
    variables.sort();
    variables.dedup_by(|a, b| a.0 == b.0);
    if variables.is_empty() {
        return;
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, help) in variables {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(help)]);
    }
}

/// What the exit status says, for the command's kind: the client commands
/// share one table (README, "Try it"), the others have their own.
fn exit_status(name: &str, roff: &mut Roff) {
    const CLIENT: &[(&str, &str)] = &[
        ("0", "done"),
        (
            "1",
            "the operation failed or was cancelled (its error is printed)",
        ),
        (
            "2",
            "usage error (a bad flag, a REF that is neither an id nor NAME@VERSION)",
        ),
        ("3", "the server cannot be reached"),
        (
            "4",
            "the key is missing, unknown, inactive, expired or lacks the role (401, 403)",
        ),
        (
            "5",
            "any other problem the API answered (404, 409, 422, ...)",
        ),
    ];
    let statuses: &[(&str, &str)] = match name {
        n if [
            "packd-pkg",
            "packd-op",
            "packd-keys",
            "packd-channel",
            "packd-backup",
        ]
        .iter()
        .any(|c| n == *c || n.starts_with(&format!("{c}-"))) =>
        {
            CLIENT
        }
        "packd-check" => &[
            ("0", "the file is intact"),
            ("1", "the file is damaged"),
            (
                "2",
                "the file cannot be checked: missing, in use, not a packd file",
            ),
        ],
        "packd-healthcheck" => &[
            ("0", "/healthz answered 200"),
            ("1", "anything else, or no answer in time"),
        ],
        "packd" | "packd-serve" => &[
            (
                "0",
                "stopped by SIGTERM or SIGINT, after the work in hand was saved",
            ),
            (
                "1",
                "could not start or serve (the database, the data directory, the port); the \
                 error is printed",
            ),
            (
                "2",
                "a usage or configuration error (a bad flag, value or configuration file)",
            ),
        ],
        _ => &[
            ("0", "done"),
            ("1", "it failed; the error is printed"),
            ("2", "a usage error"),
        ],
    };
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in statuses {
        roff.control("TP", []);
        roff.text([bold(*code)]);
        roff.text([roman(*meaning)]);
    }
}

fn see_also(command: &Command, roff: &mut Roff) {
    let name = page_name(command);
    let mut pages: Vec<String> = Vec::new();
    if let Some((parent, _)) = name.rsplit_once('-') {
        pages.push(format!("{parent}(1)"));
    }
    if name != "packd" && !pages.contains(&"packd(1)".to_string()) {
        pages.push("packd(1)".into());
    }
    if name == "packd" || name == "packd-serve" {
        pages.push("systemctl(1)".into());
        pages.push("journalctl(1)".into());
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(format!(
        "{}; the README (/usr/share/doc/packd/README.md) and the API's own description \
         at /docs of a running server.",
        pages.join(", ")
    ))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand a page names has a page, and each page has the
    /// sections a reader looks for.
    #[test]
    fn every_named_page_exists_with_its_sections() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Cli::command().disable_help_subcommand(true);
        command.build();
        let written = write_pages(&command, dir.path()).unwrap();
        assert!(written.len() > 20, "{written:?}");
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        for path in &written {
            let text = std::fs::read_to_string(path).unwrap();
            for section in ["NAME", "SYNOPSIS", "EXIT STATUS", "SEE ALSO"] {
                assert!(
                    text.contains(&format!(".SH \"{section}\""))
                        || text.contains(&format!(".SH {section}")),
                    "{path:?} lacks {section}"
                );
            }
            // A page named in another's text, as clap_mangen writes it
            // (`packd\-pkg(1)`), exists.
            for named in text.split("\\fB").filter_map(|s| s.split("(1)").next()) {
                let named = named.replace("\\-", "-");
                if named.starts_with("packd-") && !named.contains(' ') {
                    assert!(
                        names.contains(&named),
                        "{path:?} names {named}(1), which is missing"
                    );
                }
            }
        }
        let serve = std::fs::read_to_string(dir.path().join("packd-serve.1")).unwrap();
        assert!(serve.contains("ENVIRONMENT") && serve.contains("PACKD_DATA_DIR"));
        assert!(serve.contains("PACKD_BOOTSTRAP_KEY"));
        let create = std::fs::read_to_string(dir.path().join("packd-pkg-create.1")).unwrap();
        assert!(create.contains("usage error"), "{create}");
    }
}
