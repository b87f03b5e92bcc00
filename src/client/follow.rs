//! Following an operation to its end: the event stream
//! (`/v1/events?operation_id=`) says each saved step, a progress bar on a
//! terminal shows it (bytes and rate for a download), plain lines on
//! standard error otherwise. Without a stream (the server's limit reached,
//! a proxy that cuts it) it falls back to long polls.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::sse;
use uuid::Uuid;

use super::answers::Operation;
use super::http::{Api, Failure, read};

/// The stream promises a line every 15 s; silence for longer means it is gone.
const SILENCE: Duration = Duration::from_secs(45);

/// Waits for the operation to finish; returns it finished.
pub async fn to_the_end(api: &Api, id: Uuid, label: &str) -> Result<Operation, Failure> {
    let mut view = View::new(label);
    // Subscribed before the first read, so no change falls between the two.
    let stream = api
        .request("GET", &format!("/v1/events?operation_id={id}"))?
        .send()
        .await
        .map_err(|e| api.unreachable(&e))?;
    let mut stream = if stream.status().is_success() {
        Some(stream)
    } else {
        // Not worth failing for: long polls do the same job.
        let _ = read(stream).await;
        None
    };
    let mut op: Operation = api
        .get_as("GET", &format!("/v1/operations/{id}"), None, &[])
        .await?;
    let mut reader = sse::Reader::default();
    // Ctrl-C stops the waiting, not the operation: say so, and how to
    // follow it again.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        view.show(&op);
        if op.is_finished() {
            view.finish(&op);
            return Ok(op);
        }
        let next = async {
            match stream.as_mut() {
                Some(s) => next_operation(s, &mut reader).await,
                None => None,
            }
        };
        let next = tokio::select! {
            next = next => next,
            _ = &mut interrupted => {
                view.abandon();
                eprintln!(
                    "packd: stopped waiting; the operation goes on on the server \
                     (packd op wait {id} follows it again, packd op cancel {id} stops it)"
                );
                std::process::exit(130);
            }
        };
        op = match next {
            Some(newer) => newer,
            None => {
                stream = None;
                api.get_as("GET", &format!("/v1/operations/{id}?wait=30"), None, &[])
                    .await?
            }
        };
    }
}

/// The next `operation` event of the stream; `None` when the stream ended,
/// fell silent or fell behind (the caller reads the state instead).
async fn next_operation(
    stream: &mut reqwest::Response,
    reader: &mut sse::Reader,
) -> Option<Operation> {
    loop {
        while let Some(event) = reader.next_event() {
            match event.name.as_str() {
                "operation" => return serde_json::from_str(&event.data).ok(),
                "lagged" => return None,
                _ => {}
            }
        }
        let chunk = tokio::time::timeout(SILENCE, stream.chunk()).await;
        match chunk {
            Ok(Ok(Some(bytes))) => reader.feed(&bytes).ok()?,
            _ => return None,
        }
    }
}

/// How progress is shown: a bar on a terminal, lines elsewhere.
enum View {
    Bar {
        bar: ProgressBar,
        bytes: bool,
        attempts: u32,
        window: Window,
    },
    Lines {
        label: String,
        last: String,
        attempts: u32,
        window: Window,
    },
}

/// The health window of an activation, as the client sees it pass: the
/// worker moves the progress from 50 to 99 in proportion to the window's
/// time, so two steps give the rate and the time left, which the server
/// does not send.
#[derive(Default)]
struct Window {
    first: Option<(std::time::Instant, u8)>,
}

impl Window {
    /// `checking health, about 12 s left` while an activation is in its
    /// window; nothing otherwise.
    fn note(&mut self, op: &Operation) -> Option<String> {
        if op.kind != "activate" || op.state != "running" || !(50..100).contains(&op.progress) {
            return None;
        }
        let now = std::time::Instant::now();
        let (since, from) = *self.first.get_or_insert((now, op.progress));
        let gained = op.progress.saturating_sub(from);
        let seconds = now.duration_since(since).as_secs_f64();
        if gained == 0 || seconds <= 0.0 {
            return Some("checking health".into());
        }
        let left = f64::from(99 - op.progress) * seconds / f64::from(gained);
        Some(format!(
            "checking health, about {} s left",
            left.ceil() as u64
        ))
    }
}

/// A terminal that draws a bar: `TERM=dumb` or no `TERM` gets lines, as a
/// pipe does (the bar would draw nothing there).
fn draws_bars() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
}

impl View {
    fn new(label: &str) -> Self {
        if draws_bars() {
            let bar = ProgressBar::new(100);
            bar.set_style(percent_style());
            bar.set_prefix(label.to_string());
            Self::Bar {
                bar,
                bytes: false,
                attempts: 0,
                window: Window::default(),
            }
        } else {
            Self::Lines {
                label: label.to_string(),
                last: String::new(),
                attempts: 0,
                window: Window::default(),
            }
        }
    }

    /// A new attempt after a failed one: a line saying which, and why the
    /// last one failed.
    fn retry_line(label: &str, seen: &mut u32, op: &Operation) -> Option<String> {
        let line = (*seen > 0 && op.attempts > *seen).then(|| {
            format!(
                "{label}: attempt {}{}",
                op.attempts,
                op.error
                    .as_deref()
                    .map(|e| format!(" (the last one failed: {e})"))
                    .unwrap_or_default()
            )
        });
        *seen = (*seen).max(op.attempts);
        line
    }

    fn abandon(&self) {
        if let View::Bar { bar, .. } = self {
            bar.abandon();
        }
    }

    fn show(&mut self, op: &Operation) {
        let state = op.state.as_str();
        let progress = u64::from(op.progress);
        let (done, total) = (op.bytes_done, op.bytes_total);
        match self {
            View::Bar {
                bar,
                bytes,
                attempts,
                window,
            } => {
                if let Some(line) = View::retry_line(&bar.prefix(), attempts, op) {
                    bar.println(line);
                }
                if let (Some(done), Some(total)) = (done, total) {
                    bar.set_position(done);
                    if !*bytes {
                        bar.set_style(bytes_style());
                        bar.set_length(total);
                        // The rate and the time left count from here: the
                        // bytes fetched before this command began are not
                        // this second's.
                        bar.reset_eta();
                        *bytes = true;
                    }
                } else if !*bytes {
                    bar.set_position(progress);
                }
                bar.set_message(match window.note(op) {
                    Some(note) => format!("{state}: {note}"),
                    None => state.to_string(),
                });
            }
            View::Lines {
                label,
                last,
                attempts,
                window,
            } => {
                if let Some(line) = View::retry_line(label, attempts, op) {
                    eprintln!("{line}");
                }
                let mut line = format!("{label}: {state} {progress}%");
                if let Some(done) = done {
                    line.push_str(&format!(" ({}", HumanBytes(done)));
                    if let Some(total) = total {
                        line.push_str(&format!(" of {}", HumanBytes(total)));
                    }
                    line.push(')');
                }
                if let Some(note) = window.note(op) {
                    line.push_str(&format!(" ({note})"));
                }
                if line != *last {
                    eprintln!("{line}");
                    *last = line;
                }
            }
        }
    }

    fn finish(&mut self, op: &Operation) {
        if let View::Bar { bar, .. } = self {
            bar.set_message(op.state.clone());
            if op.state == "succeeded" {
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}

fn percent_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:30}] {pos:>3}% {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}
