//! Reading a Server-Sent Events stream as the HTML standard defines it
//! (§9.2.6): lines end with CRLF, LF or CR; `data` lines of one event are
//! joined with LF; one space after the colon is dropped; lines starting
//! with a colon are comments; a blank line dispatches the event. What is
//! buffered is bounded: a line longer than `MAX_LINE` ends the stream.

/// The longest line kept; a longer one means the stream is not what packd
/// sends (its events are one JSON object each, a few KiB).
pub const MAX_LINE: usize = 1 << 20;

/// One dispatched event: its name (`message` by default) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// Why the stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Bytes in, events out (kept in order until taken).
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    ready: std::collections::VecDeque<Event>,
    name: String,
    data: Option<String>,
    /// The last line ended with CR: a LF at the start of what comes next
    /// belongs to it.
    after_cr: bool,
}

impl Reader {
    /// The next complete event, if the bytes so far hold one.
    pub fn next_event(&mut self) -> Option<Event> {
        self.ready.pop_front()
    }

    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), TooLong> {
        let mut bytes = bytes;
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(at) = self.buf[start..]
            .iter()
            .position(|b| matches!(b, b'\r' | b'\n'))
        {
            let end = start + at;
            let line = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
            let mut next = end + 1;
            if self.buf[end] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            start = next;
            if let Some(event) = self.line(&line) {
                self.ready.push_back(event);
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            return Err(TooLong);
        }
        Ok(())
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take()?;
            let name = std::mem::take(&mut self.name);
            return Some(Event {
                name: if name.is_empty() {
                    "message".into()
                } else {
                    name
                },
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = value.to_string(),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<Event> {
        let mut reader = Reader::default();
        let mut out = Vec::new();
        for c in chunks {
            reader.feed(c).unwrap();
            out.extend(std::iter::from_fn(|| reader.next_event()));
        }
        out
    }

    fn ev(name: &str, data: &str) -> Event {
        Event {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn lines_end_three_ways_and_data_lines_join() {
        assert_eq!(
            events(&[b"event: operation\r\ndata: {\"a\":\r\ndata:1}\r\n\r\n"]),
            vec![ev("operation", "{\"a\":\n1}")]
        );
        assert_eq!(
            events(&[b"data: x\rdata: y\r\r"]),
            vec![ev("message", "x\ny")]
        );
        // A CRLF split across two chunks is one line end, not two.
        assert_eq!(
            events(&[b"data: x\r", b"\n", b"\r", b"\ndata: y\n\n"]),
            vec![ev("message", "x"), ev("message", "y")]
        );
    }

    #[test]
    fn comments_and_blank_events_are_skipped_and_only_one_space_goes() {
        assert_eq!(
            events(&[b": heartbeat\n\nevent: lagged\ndata:  two spaces\n\n"]),
            vec![ev("lagged", " two spaces")]
        );
        assert_eq!(events(&[b"event: nothing\n\n"]), vec![]);
    }

    #[test]
    fn a_line_without_end_is_bounded() {
        let mut reader = Reader::default();
        let big = vec![b'a'; MAX_LINE + 1];
        assert_eq!(reader.feed(&big), Err(TooLong));
    }
}
