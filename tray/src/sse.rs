//! A reader of server-sent events (SSE, the `text/event-stream` format of the HTML standard,
//! §9.2), enough for tsunagid's `/v1/events`: `event:` and `data:` fields, comments (the
//! keep-alive), blank lines ending an event, `\n`, `\r\n` or `\r` line ends, and lines split
//! across chunks.
//!
//! Pure: bytes in, [`Item`]s out. A line longer than [`MAX_LINE`] is a protocol error rather
//! than memory without bound.

/// The longest line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// One thing read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A whole event: its name (`message` when none was given) and its data.
    Event {
        /// The `event:` field.
        name: String,
        /// The `data:` fields, joined with `\n`.
        data: String,
    },
    /// A comment line (tsunagid's keep-alive).
    Comment,
}

/// The stream broke the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line went on past [`MAX_LINE`].
    #[error("event stream line longer than {MAX_LINE} bytes")]
    LineTooLong,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// A `\r` ended the last line: a `\n` right after it belongs to that line end.
    after_cr: bool,
    name: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Feeds a chunk; returns what it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Item>, SseError> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(item) = self.line_done(&line) {
                        out.push(item);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_LINE {
                        return Err(SseError::LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Item> {
        if line.is_empty() {
            let data = self.data.take();
            let name = self.name.take();
            return data.map(|data| Item::Event {
                name: name.unwrap_or_else(|| "message".to_string()),
                data,
            });
        }
        if line[0] == b':' {
            return Some(Item::Comment);
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.name = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            // `id`, `retry` and unknown fields: nothing the tray uses.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(name: &str, data: &str) -> Item {
        Item::Event {
            name: name.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_comments_and_line_ends() {
        let mut p = Parser::default();
        let text = b"event: line\ndata: {\"kind\":\"line\"}\n\n:\n\nevent:resync\r\ndata:x\r\ndata: y\r\n\r\ndata: z\r\r";
        let items = p.feed(text).unwrap();
        assert_eq!(
            items,
            vec![
                event("line", "{\"kind\":\"line\"}"),
                Item::Comment,
                event("resync", "x\ny"),
                event("message", "z"),
            ]
        );
    }

    #[test]
    fn a_line_split_across_chunks_is_joined() {
        // It keeps the partial line and a `\r` at a chunk's end until the next chunk.
        let text = b"event: check_captured\r\ndata: {\"check_id\":\"01J\"}\r\n\r\n";
        for cut in 0..text.len() {
            let mut p = Parser::default();
            let mut items = p.feed(&text[..cut]).unwrap();
            items.extend(p.feed(&text[cut..]).unwrap());
            assert_eq!(
                items,
                vec![event("check_captured", "{\"check_id\":\"01J\"}")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = Parser::default();
        let long = vec![b'a'; MAX_LINE + 1];
        assert_eq!(p.feed(&long), Err(SseError::LineTooLong));
    }

    #[test]
    fn a_name_without_data_is_no_event() {
        let mut p = Parser::default();
        assert!(p.feed(b"event: line\n\n").unwrap().is_empty());
        assert_eq!(p.feed(b"data: a\n\n").unwrap(), vec![event("message", "a")]);
    }
}
