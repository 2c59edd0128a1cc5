//! Server-sent events framing, as OpenAI streams use it: `data: <json>\n\n` per event and a
//! final `data: [DONE]\n\n`. The writer is used by the gateway, the parser by clients
//! (the load tester) and tests.

/// The terminating sentinel OpenAI clients wait for.
pub const DONE: &str = "[DONE]";

/// Frame one `data:` event. Multi-line payloads get one `data:` line per line, as the SSE
/// spec requires (JSON from serde never contains raw newlines, but text might).
pub fn frame(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 8);
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Incremental parser: feed bytes as they arrive, get complete events' data back.
#[derive(Default, Debug)]
pub struct Parser {
    buf: String,
}

impl Parser {
    /// A parser at the start of a stream, holding nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `chunk` and return the data of every event it completed.
    pub fn feed(&mut self, chunk: &str) -> Vec<String> {
        self.buf.push_str(&chunk.replace("\r\n", "\n"));
        let mut events = Vec::new();
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_single_and_multiline() {
        assert_eq!(frame("{\"a\":1}"), "data: {\"a\":1}\n\n");
        assert_eq!(frame("x\ny"), "data: x\ndata: y\n\n");
        assert_eq!(frame(DONE), "data: [DONE]\n\n");
    }

    #[test]
    fn parser_round_trips_across_arbitrary_splits() {
        let stream = format!("{}{}{}", frame("one"), frame("t\nwo"), frame(DONE));
        for split in 0..stream.len() {
            let mut p = Parser::new();
            let mut got = p.feed(&stream[..split]);
            got.extend(p.feed(&stream[split..]));
            assert_eq!(got, vec!["one", "t\nwo", DONE], "split at {split}");
        }
    }

    #[test]
    fn parser_ignores_comments_and_crlf() {
        let mut p = Parser::new();
        assert_eq!(p.feed(": keep-alive\r\n\r\ndata: x\r\n\r\n"), vec!["x"]);
    }
}
