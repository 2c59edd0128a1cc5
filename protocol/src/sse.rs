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
        self.buf.push_str(chunk);
        // Lines end with CRLF, LF or a lone CR (the SSE spec); all become LF here, except a CR
        // at the very end, which may be the first half of a CRLF split across chunks (found by
        // fuzzing, see the tests below).
        if self.buf.contains('\r') {
            let held = if self.buf.ends_with('\r') { 1 } else { 0 };
            let body = &self.buf[..self.buf.len() - held];
            let mut normal = body.replace("\r\n", "\n").replace('\r', "\n");
            normal.push_str(&"\r".repeat(held));
            self.buf = normal;
        }
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
    fn a_crlf_split_across_chunks_still_ends_the_event() {
        // fuzz/artifacts/sse/crash-9ed3da7c: the stream cut between `\r` and `\n`.
        let stream = "\ndata: \ndata:!\n\r\n";
        let mut p = Parser::new();
        let mut got = p.feed(&stream[..15]);
        got.extend(p.feed(&stream[15..]));
        assert_eq!(got, Parser::new().feed(stream));
        assert_eq!(got, vec!["\n!"]);
    }

    #[test]
    fn lone_carriage_returns_end_lines_wherever_the_stream_is_cut() {
        // fuzz/artifacts/sse/crash-…: `\r\r\n` is two line ends, however it arrives.
        let stream = "data: a\r\r\ndata: b\r\rdata: c\n\n";
        let whole = Parser::new().feed(stream);
        assert_eq!(whole, vec!["a", "b", "c"]);
        for cut in 0..stream.len() {
            let mut p = Parser::new();
            let mut got = p.feed(&stream[..cut]);
            got.extend(p.feed(&stream[cut..]));
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn parser_ignores_comments_and_crlf() {
        let mut p = Parser::new();
        assert_eq!(p.feed(": keep-alive\r\n\r\ndata: x\r\n\r\n"), vec!["x"]);
    }
}
