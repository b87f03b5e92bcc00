//! `GET /v1/events` over a real socket: an operation's progress in order to
//! its final state, the filters, the heartbeat, the limit on open streams,
//! and a subscriber that never reads, which neither holds the others back
//! nor grows the server.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, TestServer, rss, wait_for};

/// One SSE event, or a comment line (`name` "comment").
#[derive(Debug)]
struct Sse {
    name: String,
    data: Value,
}

/// A subscriber: a thread reads the stream and hands over its events.
struct Stream {
    events: mpsc::Receiver<Sse>,
}

impl Stream {
    #[track_caller]
    fn open(s: &TestServer, query: &str) -> Stream {
        Self::try_open(s, query).expect("the stream opens with 200")
    }

    /// The stream, or `None` if the server answered anything but 200.
    fn try_open(s: &TestServer, query: &str) -> Option<Stream> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent
            .get(&s.url(&format!("/v1/events{query}")))
            .header("X-API-Key", ADMIN_KEY)
            .call()
            .expect("an answer");
        if response.status().as_u16() != 200 {
            return None;
        }
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(response.into_body().into_reader());
            let mut name = String::from("message");
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.strip_prefix("event: ") {
                    name = rest.to_string();
                } else if let Some(rest) = line.strip_prefix("data: ") {
                    let data = serde_json::from_str(rest).expect("JSON data");
                    if tx
                        .send(Sse {
                            name: name.clone(),
                            data,
                        })
                        .is_err()
                    {
                        return;
                    }
                } else if line.starts_with(':') {
                    let comment = Sse {
                        name: "comment".into(),
                        data: Value::Null,
                    };
                    if tx.send(comment).is_err() {
                        return;
                    }
                } else if line.is_empty() {
                    name = "message".into();
                }
            }
        });
        Some(Stream { events: rx })
    }

    /// The next event within `within`, comments skipped unless asked for.
    fn next(&self, within: Duration, comments: bool) -> Option<Sse> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(e) if e.name == "comment" && !comments => {}
                Ok(e) => return Some(e),
                Err(_) => return None,
            }
        }
    }
}

#[test]
fn an_operation_streams_its_progress_in_order_to_its_end_and_filters_hold() {
    let s = TestServer::in_process(&["--download-duration", "1s"]);
    let p = s.new_package("jq", "1.7");
    let other = s.new_package("curl", "8.0");
    let everything = Stream::open(&s, "");
    let mine = Stream::open(&s, &format!("?package_id={}", p.id));

    let op = s
        .send(
            "POST",
            &format!("/v1/packages/{}/download", p.id),
            &[],
            None,
        )
        .id();
    let one_op = Stream::open(&s, &format!("?operation_id={op}"));
    let mut progress = Vec::new();
    let mut states = Vec::new();
    loop {
        let e = one_op
            .next(Duration::from_secs(20), false)
            .expect("an event before the deadline");
        assert_eq!(e.name, "operation");
        assert_eq!(e.data["id"], op.as_str(), "only this operation");
        progress.push(e.data["progress"].as_u64().unwrap());
        states.push(e.data["state"].as_str().unwrap().to_string());
        if e.data["state"] == "succeeded" {
            break;
        }
    }
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(
        progress.len() >= 3,
        "steps saved along the way: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&100));

    // The package's stream saw the operation and the package change; the
    // last package event has the new status.
    let mut last_package = Value::Null;
    let mut kinds = std::collections::BTreeSet::new();
    while let Some(e) = mine.next(Duration::from_millis(500), false) {
        assert_eq!(
            e.data.get("package_id").unwrap_or(&e.data["id"]),
            p.id.as_str()
        );
        if e.name == "package" {
            last_package = e.data.clone();
        }
        kinds.insert(e.name);
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["operation", "package"]
    );
    assert_eq!(last_package["status"], "downloaded");

    // A deletion reaches the unfiltered stream, and nothing of `other`
    // reached the filtered ones.
    s.send("DELETE", &format!("/v1/packages/{}", other.id), &[], None)
        .assert_status(204);
    let deleted = wait_for("the deletion event", || {
        let e = everything.next(Duration::from_secs(5), false)?;
        (e.name == "package_deleted").then_some(e)
    });
    assert_eq!(deleted.data, json!({"id": other.id}));
    assert!(mine.next(Duration::from_millis(300), false).is_none());
}

#[test]
fn an_idle_stream_gets_heartbeats_and_open_streams_are_bounded() {
    let s = TestServer::start_with(
        &[
            "--event-heartbeat",
            "200ms",
            "--max-streams",
            "2",
            "--header-timeout",
            "1s",
        ],
        &[],
    );
    let first = Stream::open(&s, "");
    let second = Stream::open(&s, "");
    // The third is refused, with a problem saying why.
    let refused = s.get("/v1/events");
    let p = refused.assert_problem(503, "unavailable");
    assert!(
        p["detail"].as_str().unwrap().contains("event streams"),
        "{p}"
    );
    assert!(refused.header("retry-after").is_some());

    // Comments keep coming on a stream with nothing to say, past the
    // header deadline (which is for request heads, not streams).
    let started = Instant::now();
    let mut comments = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let e = first
            .next(Duration::from_secs(2), true)
            .expect("a heartbeat within 2 s");
        assert_eq!(e.name, "comment");
        comments += 1;
    }
    assert!(comments >= 5, "{comments} heartbeats in 1.5 s");

    let open = |s: &TestServer| s.metric("packd_event_streams_open ");
    assert_eq!(open(&s), 2);

    // A closed stream gives its place back.
    drop(second);
    wait_for("the gauge to count one stream", || {
        (open(&s) == 1).then_some(())
    });
    let _third = wait_for("a place among the streams", || Stream::try_open(&s, ""));
    // A malformed filter is refused before any stream opens.
    s.get("/v1/events?operation_id=nope")
        .assert_problem(400, "bad_request");
    // Without a key, a stream is refused like any /v1 call.
    s.send_as(None, "GET", "/v1/events", &[], None)
        .assert_problem(401, "unauthorized");
}

#[test]
fn a_subscriber_that_never_reads_holds_back_no_one() {
    let s = TestServer::start();
    // A client that opens a stream and never reads it.
    let mut silent = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    use std::io::Write;
    write!(
        silent,
        "GET /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {ADMIN_KEY}\r\n\r\n"
    )
    .unwrap();
    let reader = Stream::open(&s, "");
    let before = rss(s.pid());
    // 8 writers make 4,000 packages (4,000 events, about 1.6 MB of stream).
    std::thread::scope(|scope| {
        for w in 0..8 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..500 {
                    s.create_package(&format!("p{w}-{i}"), "1");
                }
            });
        }
    });
    // The reader got every one of them, in commit order per writer.
    let mut seen = 0;
    while seen < 4000 {
        let e = reader
            .next(Duration::from_secs(10), false)
            .unwrap_or_else(|| panic!("only {seen} of 4000 events arrived"));
        match e.name.as_str() {
            "package" => seen += 1,
            "lagged" => panic!("a reading subscriber lagged: {:?}", e.data),
            _ => {}
        }
    }
    let grown = rss(s.pid()).saturating_sub(before);
    assert!(grown < 32 << 20, "RSS grew by {grown} bytes");
    drop(silent);
}

/// A channel's changes reach the stream: made, its sync (an operation
/// with `channel_id`), its outcome recorded, its removal.
#[test]
fn a_channel_streams_its_changes_and_its_removal() {
    let keys = tempfile::tempdir().unwrap();
    let prefix = keys.path().join("publisher");
    let out = crate::helpers::run_packd(&["keygen", "--output", prefix.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{out:?}");
    let public = keys.path().join("publisher.pub");
    let s = TestServer::in_process(&["--trusted-key", public.to_str().unwrap()]);
    let stream = Stream::open(&s, "");
    // Nobody serves this document: the sync fails, and says so.
    let r = s.json(
        "POST",
        "/v1/channels",
        &json!({"url": "http://127.0.0.1:9/stable/channel.json", "interval": "1h"}),
    );
    r.assert_status(201);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let next = |name: &str, check: &dyn Fn(&Value) -> bool| loop {
        let e = stream
            .next(crate::helpers::DEADLINE, false)
            .unwrap_or_else(|| panic!("no {name} event"));
        if e.name == name && check(&e.data) {
            return e.data;
        }
    };
    next("channel", &|c| c["id"] == id.as_str());
    next("operation", &|o| {
        o["kind"] == "sync" && o["channel_id"] == id.as_str()
    });
    let failed = next("channel", &|c| {
        c["id"] == id.as_str() && !c["last_error"].is_null()
    });
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{failed}"
    );
    s.send("DELETE", &format!("/v1/channels/{id}"), &[], None)
        .assert_status(204);
    next("channel_deleted", &|d| d["id"] == id.as_str());
}
