//! The layering of ARCHITECTURE.md, held by reading the source: which
//! module may use what, and that `files/` does no blocking file work on
//! the async threads. Comments and string literals are left out, so a
//! word in a message or a doc comment is never mistaken for a use.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, relative to it, with its code (comments
/// and string literals blanked).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).unwrap().display().to_string();
            (rel, code_of(&std::fs::read_to_string(&p).unwrap()))
        })
        .collect()
}

/// The text with comments and the insides of string and char literals
/// replaced by spaces (line structure kept). Raw strings are handled for
/// the `r"…"` and `r#"…"#` forms the code uses.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: u8| if c == b'\n' { '\n' } else { ' ' };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(' ');
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            while i < b.len() && !b[i..].starts_with(b"*/") {
                out.push(blank(b[i]));
                i += 1;
            }
        } else if b[i..].starts_with(b"r#\"") || b[i..].starts_with(b"r\"") {
            let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            out.push_str("\"\"");
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                out.push(blank(b[i]));
                i += 1;
            }
            i += close.len();
        } else if b[i] == b'"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if b[i] == b'\''
            && i + 2 < b.len()
            && (b[i + 2] == b'\'' || (b[i + 1] == b'\\' && b.get(i + 3) == Some(&b'\'')))
        {
            // A char literal ('x' or '\n'); a lifetime has no closing quote.
            let len = if b[i + 1] == b'\\' { 4 } else { 3 };
            out.push_str("' '");
            out.extend(std::iter::repeat_n(' ', len - 3));
            i += len;
        } else {
            out.push(char::from(b[i]));
            i += 1;
        }
    }
    out
}

/// Lines of `code` that use `needle`, as "file:line".
fn uses(file: &str, code: &str, needle: &str) -> Vec<String> {
    code.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(n, _)| format!("{file}:{}", n + 1))
        .collect()
}

/// A path that only some files may name, and which files those are.
type Rule<'a> = (&'a str, &'a dyn Fn(&str) -> bool);

/// Where each crate or module may be named.
#[test]
fn each_layer_uses_only_what_it_may() {
    let rules: &[Rule] = &[
        // Only the store knows the database and the byte encoding.
        ("redb::", &|f| f.starts_with("store/")),
        ("postcard::", &|f| f.starts_with("store/")),
        // Only the API knows HTTP serving.
        ("poem::", &|f| f.starts_with("api/")),
        ("poem_openapi::", &|f| f.starts_with("api/")),
        ("hyper::", &|f| f.starts_with("api/")),
        // The domain does no I/O and knows no other layer; the files
        // layer does not know the store (what it needs of the catalogue
        // comes through `remove::Claims` and plain values).
        ("crate::store", &|f| {
            !f.starts_with("files/") && !f.starts_with("domain/")
        }),
        ("crate::files", &|f| {
            !f.starts_with("domain/") && !f.starts_with("store/")
        }),
        ("crate::api", &|f| {
            !f.starts_with("files/") && !f.starts_with("domain/")
        }),
        // The API hands work to the queue through the store; it does not
        // drive the workers (readiness reads `liveness`).
        ("crate::worker", &|f| !f.starts_with("api/")),
        // Touching the file system: the data directory is `files/`'s, the
        // database file and backups `store/`'s (and `durable.rs`'s), the
        // backup answer `api/backup.rs`'s; besides those, only the check
        // that a hook program exists and the configuration file (config),
        // /proc (metrics), and the
        // key files of `--trusted-key`, `packd keygen` and `packd sign`
        // (trust: at start or in a command, never on a request), the
        // `.minisig` a client command names (client), and the publisher's
        // directory of `packd channel publish` (publish, a command).
        ("std::fs", &|f| {
            f.starts_with("files/")
                || f.starts_with("store/")
                || f.starts_with("config/")
                || [
                    "durable.rs",
                    "api/backup.rs",
                    "metrics/process.rs",
                    "trust.rs",
                    "client/mod.rs",
                    "publish.rs",
                ]
                .contains(&f)
        }),
        ("tokio::fs", &|f| f == "api/backup.rs"),
    ];
    let mut broken = Vec::new();
    for (file, code) in sources() {
        for (needle, allowed) in rules {
            if !allowed(&file) {
                for at in uses(&file, &code, needle) {
                    broken.push(format!("{at}: {needle}"));
                }
            }
        }
        // `use crate::{a, b}` would hide a layer from the needles above.
        for at in uses(&file, &code, "crate::{") {
            broken.push(format!("{at}: a grouped crate import"));
        }
        // The domain is pure: no I/O of any kind.
        if file.starts_with("domain/") {
            for needle in ["std::fs", "std::net", "std::process", "tokio::"] {
                for at in uses(&file, &code, needle) {
                    broken.push(format!("{at}: {needle} in the domain"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

/// In `files/`, file system calls in an `async fn` happen only inside a
/// `spawn_blocking` or `run_blocking` call: the async threads never wait on
/// the disk (a FIFO, a slow volume or a million files would stop the server).
#[test]
fn files_does_no_blocking_file_work_on_the_async_threads() {
    const BLOCKING: [&str; 6] = [
        "std::fs::",
        "File::open",
        "File::create",
        "OpenOptions",
        ".set_len(",
        ".sync_all(",
    ];
    let mut broken = Vec::new();
    for (file, code) in sources()
        .into_iter()
        .filter(|(f, _)| f.starts_with("files/"))
    {
        let code = code.split("#[cfg(test)]").next().unwrap_or("").to_string();
        // Brace depth where the async fn body began, and paren depth where
        // an allowed blocking call began.
        let mut depth = 0i32;
        let mut parens = 0i32;
        let mut async_body: Option<i32> = None;
        let mut pending_async = false;
        let mut allowed_from: Vec<i32> = Vec::new();
        for (n, line) in code.lines().enumerate() {
            if line.contains("async fn ") {
                pending_async = true;
            }
            let mut rest = line;
            while !rest.is_empty() {
                if rest.starts_with("spawn_blocking(") || rest.starts_with("run_blocking(") {
                    allowed_from.push(parens + 1);
                }
                if async_body.is_some()
                    && allowed_from.is_empty()
                    && BLOCKING.iter().any(|b| rest.starts_with(b))
                {
                    broken.push(format!("{file}:{}: {}", n + 1, line.trim()));
                }
                let c = rest.chars().next().unwrap();
                match c {
                    '{' => {
                        depth += 1;
                        if pending_async && async_body.is_none() {
                            async_body = Some(depth);
                            pending_async = false;
                        }
                    }
                    '}' => {
                        if async_body == Some(depth) {
                            async_body = None;
                        }
                        depth -= 1;
                    }
                    '(' => parens += 1,
                    ')' => {
                        if allowed_from.last() == Some(&parens) {
                            allowed_from.pop();
                        }
                        parens -= 1;
                    }
                    ';' if async_body.is_none() => pending_async = false,
                    _ => {}
                }
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    assert!(
        broken.is_empty(),
        "blocking file work on an async thread:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_reader_of_the_source_sees_code_only() {
    let code = code_of(
        "let a = \"std::fs\"; // std::fs\nlet b = r#\"redb::\"#; let c = '\"'; std::fs::read(x);",
    );
    assert_eq!(uses("x", &code, "std::fs").len(), 1);
    assert!(!code.contains("redb::"));
}

/// No file of `src/` holds more than 600 lines of code (blank lines,
/// comments and tests aside: a test module, or a `tests.rs`): past that, a file does several
/// jobs and should be split along them.
#[test]
fn no_source_file_is_over_600_lines_of_code() {
    let mut long = Vec::new();
    for (file, code) in sources() {
        if file.ends_with("/tests.rs") {
            continue;
        }
        let code = match code.find("#[cfg(test)]\nmod tests") {
            Some(at) => &code[..at],
            None => &code[..],
        };
        let lines = code.lines().filter(|l| !l.trim().is_empty()).count();
        if lines > 600 {
            long.push(format!("{file}: {lines}"));
        }
    }
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
}
