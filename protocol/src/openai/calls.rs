//! Tool calls read from a model's text as it arrives, so they stream as OpenAI streams them:
//! a call's id and name as soon as its name is complete, then its arguments piece by piece.
//! The text is a run of call objects `{"name": ..., "arguments": {...}}` (`"parameters"` is
//! read as `"arguments"`), either a JSON array (`tool_choice: "required"`, constrained to
//! [`super::tools::Tools::forced_schema`]) or Hermes blocks (`<tool_call>{...}</tool_call>`,
//! what `auto` reads). A call cut off (by `max_tokens`) keeps what it has: its name and its
//! arguments so far.
//!
//! The reader scans with loops over the text it holds, never recursion; each call object is
//! scanned again from its start as text arrives, which a call's length bounds.

use super::tools::{ToolCall, CALL_CLOSE, CALL_OPEN};

/// How the calls are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallLayout {
    /// `[call, call, ...]`.
    Array,
    /// `<tool_call>call</tool_call> <tool_call>call</tool_call> ...`.
    Hermes,
}

/// What the reader tells as text arrives.
#[derive(Clone, Debug, PartialEq)]
pub enum CallEvent {
    /// Call `index` begins: its id and name.
    Start {
        /// The call's place among the calls, from 0.
        index: usize,
        /// The call, with no arguments yet.
        call: ToolCall,
    },
    /// More of call `index`'s arguments (JSON text; the pieces concatenate to them).
    Arguments {
        /// The call's place.
        index: usize,
        /// The next piece.
        text: String,
    },
}

/// Reads the calls of one choice (see the module's text).
#[derive(Clone, Debug)]
pub struct CallReader {
    layout: CallLayout,
    /// Names a call may have (others end the reading); empty: any.
    names: Vec<String>,
    /// At most one call (`parallel_tool_calls: false`).
    single: bool,
    text: String,
    /// Where the current call object starts, or where separators are read from.
    at: usize,
    /// The calls started so far, each with its arguments so far.
    calls: Vec<ToolCall>,
    /// The current call object: started, and how much of its arguments was told.
    current: Option<(bool, usize)>,
    /// The text stopped being calls: the rest is ignored.
    stopped: bool,
}

/// How far a call object has been read (offsets within it).
#[derive(Debug, Default, PartialEq)]
struct Scan {
    name: Option<String>,
    /// Where the arguments' value starts, where the text read of it ends, and whether it is
    /// whole.
    args: Option<(usize, usize, bool)>,
    /// Just past the object's closing brace, once read.
    end: Option<usize>,
    /// The text is not a call object.
    invalid: bool,
}

impl CallReader {
    /// A reader of calls laid out as `layout`, whose names must be among `names` (none: any),
    /// at most one if `single`.
    pub fn new(layout: CallLayout, names: Vec<String>, single: bool) -> Self {
        CallReader {
            layout,
            names,
            single,
            text: String::new(),
            at: 0,
            calls: Vec::new(),
            current: None,
            stopped: false,
        }
    }

    /// The calls started so far (a cut one with the arguments it has).
    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// Read the next `piece` of text; returns what it tells.
    pub fn feed(&mut self, piece: &str) -> Vec<CallEvent> {
        self.text.push_str(piece);
        let mut events = Vec::new();
        while !self.stopped {
            if self.current.is_none() {
                match self.skip_separators() {
                    Some(true) => self.current = Some((false, 0)),
                    Some(false) => break,
                    None => {
                        self.stopped = true;
                        break;
                    }
                }
            }
            let scan = scan_call(&self.text[self.at..]);
            if !self.tell(&scan, &mut events) {
                self.stopped = true;
                break;
            }
            let Some(end) = scan.end else { break };
            self.at += end;
            self.current = None;
            if self.single && !self.calls.is_empty() {
                self.stopped = true;
            }
        }
        events
    }

    /// Turn what `scan` read of the current call into events; `false` when it is no call.
    fn tell(&mut self, scan: &Scan, events: &mut Vec<CallEvent>) -> bool {
        let Some((started, told)) = self.current.as_mut() else {
            return true;
        };
        if scan.invalid {
            return false;
        }
        let args_begun = scan.args.filter(|&(s, e, _)| e > s);
        if !*started {
            let Some(name) = &scan.name else {
                return scan.end.is_none();
            };
            let object_args =
                args_begun.is_some_and(|(s, ..)| self.text[self.at + s..].starts_with('{'));
            let named_ok = self.names.is_empty() || self.names.contains(name);
            if !named_ok || (args_begun.is_some() && !object_args) {
                return false;
            }
            // Hermes calls are free text: wait for the arguments to begin, to see they are an
            // object. A constrained array's are, so its calls start with their names.
            let wait = self.layout == CallLayout::Hermes && args_begun.is_none();
            if wait && scan.end.is_none() {
                return true;
            }
            *started = true;
            let call = ToolCall::new(name.clone(), String::new());
            events.push(CallEvent::Start {
                index: self.calls.len(),
                call: call.clone(),
            });
            self.calls.push(call);
        }
        let index = self.calls.len() - 1;
        let piece = match scan.args {
            Some((s, e, _)) if e > s + *told => {
                let piece = self.text[self.at + s + *told..self.at + e].to_string();
                *told = e - s;
                piece
            }
            // A call with no arguments written has none.
            None if scan.end.is_some() && *told == 0 => {
                *told = 2;
                "{}".to_string()
            }
            _ => return true,
        };
        self.calls[index].function.arguments.push_str(&piece);
        events.push(CallEvent::Arguments { index, text: piece });
        true
    }

    /// Skip what lies between calls. `Some(true)`: a call object starts at `at`; `Some(false)`:
    /// more text is needed; `None`: the text is no longer calls.
    fn skip_separators(&mut self) -> Option<bool> {
        loop {
            let rest = &self.text[self.at..];
            let trimmed = rest.trim_start();
            self.at += rest.len() - trimmed.len();
            if trimmed.is_empty() {
                return Some(false);
            }
            if trimmed.starts_with('{') {
                return Some(true);
            }
            let seps: &[&str] = match self.layout {
                CallLayout::Array => &["[", ","],
                CallLayout::Hermes => &[CALL_OPEN, CALL_CLOSE],
            };
            match seps.iter().find(|s| trimmed.starts_with(**s)) {
                Some(s) => self.at += s.len(),
                // A separator still arriving.
                None if seps.iter().any(|s| s.starts_with(trimmed)) => return Some(false),
                None => return None,
            }
        }
    }
}

/// Read as much of the call object at the start of `t` as is there.
fn scan_call(t: &str) -> Scan {
    let b = t.as_bytes();
    let mut scan = Scan::default();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        scan.invalid = i < b.len();
        return scan;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            None => return scan,
            Some(b'}') => {
                scan.end = Some(i + 1);
                return scan;
            }
            Some(b',') => {
                i += 1;
                continue;
            }
            Some(b'"') => {}
            Some(_) => {
                scan.invalid = true;
                return scan;
            }
        }
        let Some(key_end) = string_end(b, i) else {
            return scan;
        };
        let key: Option<String> = serde_json::from_str(&t[i..key_end]).ok();
        i = skip_ws(b, key_end);
        match b.get(i) {
            None => return scan,
            Some(b':') => i = skip_ws(b, i + 1),
            Some(_) => {
                scan.invalid = true;
                return scan;
            }
        }
        if i >= b.len() {
            return scan;
        }
        let value_end = value_end(b, i);
        match key.as_deref() {
            Some("name") => match value_end {
                Some(e) if b[i] == b'"' => scan.name = serde_json::from_str(&t[i..e]).ok(),
                Some(_) => scan.invalid = true,
                None => return scan,
            },
            Some("arguments" | "parameters") => {
                scan.args = Some((i, value_end.unwrap_or(b.len()), value_end.is_some()));
            }
            _ => {}
        }
        match value_end {
            Some(e) if !scan.invalid => i = e,
            _ => return scan,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Just past the string starting at `b[i]` (a quote), or `None` if it is not closed yet.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Just past the JSON value starting at `b[i]`, or `None` if it is not complete yet (a scalar
/// at the end of the text may still grow). Nesting is counted, not recursed into.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b[i] {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let end = (i..b.len())
                .find(|&j| matches!(b[j], b',' | b'}' | b']') || b[j].is_ascii_whitespace())?;
            Some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `text` in pieces of `step` bytes (at char boundaries); the events and calls.
    fn read(reader: &mut CallReader, text: &str, step: usize) -> Vec<CallEvent> {
        let mut events = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + step).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            events.extend(reader.feed(&text[at..end]));
            at = end;
        }
        events
    }

    /// Each call's arguments as the events tell them, in order.
    fn told_arguments(events: &[CallEvent]) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        for e in events {
            match e {
                CallEvent::Start { index, .. } => {
                    assert_eq!(*index, args.len(), "calls start in order");
                    args.push(String::new());
                }
                CallEvent::Arguments { index, text } => args[*index].push_str(text),
            }
        }
        args
    }

    #[test]
    fn arrays_stream_name_first_then_arguments_in_pieces_whatever_the_cut() {
        let text = r#"[{"name": "get_weather", "arguments": {"city": "Oslo \"N\"", "days": [1, 2]}}, {"name":"now","arguments":{}}]"#;
        for step in [1, 3, 7, 200] {
            let mut r = CallReader::new(CallLayout::Array, vec![], false);
            let events = read(&mut r, text, step);
            assert_eq!(
                told_arguments(&events),
                [r#"{"city": "Oslo \"N\"", "days": [1, 2]}"#, "{}"],
                "step {step}"
            );
            assert_eq!(r.calls()[0].function.name, "get_weather");
            let pieces = events
                .iter()
                .filter(|e| matches!(e, CallEvent::Arguments { index: 0, .. }))
                .count();
            assert!(step > 50 || pieces > 1, "arguments come in pieces");
        }
    }

    #[test]
    fn a_cut_call_keeps_its_name_and_arguments_so_far() {
        let mut r = CallReader::new(CallLayout::Array, vec![], false);
        let events = r.feed(r#"[{"name": "get_weather", "arguments": {"city": "Os"#);
        assert!(
            matches!(&events[0], CallEvent::Start { call, .. } if call.function.name == "get_weather")
        );
        assert_eq!(r.calls()[0].function.arguments, r#"{"city": "Os"#);
        // Cut right after the name: a call with no arguments yet.
        let mut r = CallReader::new(CallLayout::Array, vec![], false);
        assert_eq!(r.feed(r#"[{"name": "a", "argu"#).len(), 1);
        assert_eq!(r.calls()[0].function.arguments, "");
        // Cut before the name is whole: no call.
        let mut r = CallReader::new(CallLayout::Array, vec![], false);
        assert!(r.feed(r#"[{"name": "get_we"#).is_empty() && r.calls().is_empty());
    }

    #[test]
    fn hermes_blocks_name_checks_and_single_calls() {
        let text = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>{\"arguments\": {}, \"name\": \"b\"}</tool_call>";
        let names = vec!["a".to_string(), "b".to_string()];
        for step in [1, 5, 100] {
            let mut r = CallReader::new(CallLayout::Hermes, names.clone(), false);
            let events = read(&mut r, text, step);
            assert_eq!(
                told_arguments(&events),
                [r#"{"x": 1}"#, "{}"],
                "step {step}"
            );
        }
        let mut r = CallReader::new(CallLayout::Hermes, names.clone(), true);
        read(&mut r, text, 4);
        assert_eq!(
            r.calls().len(),
            1,
            "parallel_tool_calls: false keeps the first"
        );
        // A name not offered, arguments that are no object, or no call object: nothing read.
        for bad in [
            "<tool_call>{\"name\": \"rm\", \"arguments\": {}}",
            "<tool_call>{\"name\": \"a\", \"arguments\": \"x\"}",
            "<tool_call>not json",
        ] {
            let mut r = CallReader::new(CallLayout::Hermes, names.clone(), false);
            assert!(
                read(&mut r, bad, 3).is_empty() && r.calls().is_empty(),
                "{bad}"
            );
        }
        // A call without arguments has `{}`; `parameters` reads as arguments.
        let mut r = CallReader::new(CallLayout::Hermes, names.clone(), false);
        read(&mut r, "<tool_call>{\"name\": \"a\"}</tool_call><tool_call>{\"name\": \"b\", \"parameters\": {\"k\": true}}", 2);
        let args: Vec<&str> = r
            .calls()
            .iter()
            .map(|c| c.function.arguments.as_str())
            .collect();
        assert_eq!(args, ["{}", r#"{"k": true}"#]);
    }

    #[test]
    fn deep_arguments_are_counted_not_recursed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!("[{{\"name\": \"a\", \"arguments\": {{\"x\": {deep}}}}}]");
        let mut r = CallReader::new(CallLayout::Array, vec![], false);
        r.feed(&text);
        assert_eq!(r.calls()[0].function.arguments.len(), deep.len() + 7);
    }
}
