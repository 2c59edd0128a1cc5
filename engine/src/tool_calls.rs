//! A chat choice's output read as tool calls, streamed as OpenAI streams them: a call's
//! `index`, `id`, `type` and function `name` first, its `arguments` in later deltas, as the
//! model writes them.
//!
//! How the text becomes calls depends on the request's `tool_choice` (see
//! `protocol::openai::tools`): a named function's arguments are the whole (constrained) text;
//! `required`'s JSON array of calls and `auto`'s Hermes `<tool_call>` blocks are read as they
//! arrive (`protocol::openai::calls`). A forced choice's text is never message content; a call
//! cut by `max_tokens` keeps its name and the arguments it has, with `finish_reason: "length"`.

use protocol::openai::calls::{CallEvent, CallLayout, CallReader};
use protocol::openai::response::{FunctionDelta, ToolCallDelta};
use protocol::openai::tools::{ToolCall, ToolChoice, Tools, CALL_OPEN};
use std::sync::Arc;

/// What one piece of a choice's text gives the client: message text and call deltas.
#[derive(Debug, Default, PartialEq)]
pub struct Emit {
    /// Text of the assistant message (`content`).
    pub content: String,
    /// Tool-call deltas, in order.
    pub calls: Vec<ToolCallDelta>,
}

/// How one chat choice's text is read.
#[derive(Clone, Debug, Default)]
pub enum ToolOutput {
    /// No tools: the text is the message.
    #[default]
    Text,
    /// A named function: the text is its arguments.
    Named {
        /// The call, its arguments growing with the text.
        call: ToolCall,
        /// Whether the call's first delta (id and name) went out.
        started: bool,
    },
    /// `required`: the text is a JSON array of `{"name", "arguments"}`.
    Required(CallReader),
    /// `auto`: text until a `<tool_call>` tag, calls from there.
    Auto {
        /// The request's tools.
        tools: Arc<Tools>,
        /// Text held back because it may be the start of the tag.
        held: String,
        /// From the tag on, once seen: the text, and its calls as read so far.
        calls: Option<(String, CallReader)>,
    },
}

impl ToolOutput {
    /// The reading for a choice of a request with `tools`.
    pub fn new(tools: Option<&Arc<Tools>>) -> Self {
        match tools {
            None => ToolOutput::Text,
            Some(t) => match &t.choice {
                ToolChoice::Function(name) => ToolOutput::Named {
                    call: ToolCall::new(name.clone(), String::new()),
                    started: false,
                },
                ToolChoice::Required => {
                    ToolOutput::Required(CallReader::new(CallLayout::Array, vec![], false))
                }
                ToolChoice::Auto => ToolOutput::Auto {
                    tools: t.clone(),
                    held: String::new(),
                    calls: None,
                },
            },
        }
    }

    /// The part of a choice's whole `text` that was message content: all of it without
    /// tools; for `auto`, all of it unless the choice ended in calls (`has_calls`), then what
    /// came before the first tag; nothing for a forced choice, whose text is calls.
    pub fn content<'a>(&self, text: &'a str, has_calls: bool) -> &'a str {
        match self {
            ToolOutput::Text => text,
            ToolOutput::Auto { .. } if has_calls => {
                text.find(CALL_OPEN).map_or(text, |at| &text[..at])
            }
            ToolOutput::Auto { .. } => text,
            ToolOutput::Named { .. } | ToolOutput::Required(_) => "",
        }
    }

    /// Read the next piece of text.
    pub fn feed(&mut self, text: &str) -> Emit {
        match self {
            ToolOutput::Text => content(text.to_string()),
            ToolOutput::Named { call, started } => {
                call.function.arguments.push_str(text);
                let mut calls = Vec::with_capacity(2);
                if !std::mem::replace(started, true) {
                    calls.push(first_delta(0, call));
                }
                if !text.is_empty() {
                    calls.push(arguments_delta(0, text));
                }
                Emit {
                    content: String::new(),
                    calls,
                }
            }
            ToolOutput::Required(reader) => deltas(reader.feed(text)),
            ToolOutput::Auto { tools, held, calls } => {
                if let Some((raw, reader)) = calls {
                    raw.push_str(text);
                    return deltas(reader.feed(text));
                }
                held.push_str(text);
                if let Some(at) = held.find(CALL_OPEN) {
                    let names = tools.functions.iter().map(|f| f.name.clone()).collect();
                    let mut reader = CallReader::new(CallLayout::Hermes, names, !tools.parallel);
                    let raw = held[at..].to_string();
                    let mut emit = deltas(reader.feed(&raw));
                    emit.content = held[..at].to_string();
                    *calls = Some((raw, reader));
                    held.clear();
                    return emit;
                }
                // Keep back the longest tail that the tag starts with.
                let keep = (1..CALL_OPEN.len().min(held.len() + 1))
                    .rev()
                    .find(|&n| held.ends_with(&CALL_OPEN[..n]))
                    .unwrap_or(0);
                content(held.drain(..held.len() - keep).collect())
            }
        }
    }

    /// The choice ended with `reason`: what is left to emit, the final finish reason
    /// (`tool_calls` when the answer is calls, unless cut by its length), and the calls of
    /// the final message.
    pub fn end(&mut self, reason: String) -> (Emit, String, Vec<ToolCall>) {
        let finish = |calls: &[ToolCall]| match reason.as_str() {
            "stop" if !calls.is_empty() => "tool_calls".to_string(),
            _ => reason.clone(),
        };
        match self {
            ToolOutput::Text => (Emit::default(), reason, vec![]),
            ToolOutput::Named { call, started } => {
                // A call that produced no text yet still goes out, name first.
                let calls = if std::mem::replace(started, true) {
                    vec![]
                } else {
                    vec![first_delta(0, call)]
                };
                let done = vec![call.clone()];
                let emit = Emit {
                    content: String::new(),
                    calls,
                };
                (emit, finish(&done), done)
            }
            ToolOutput::Required(reader) => {
                let calls = reader.calls().to_vec();
                (Emit::default(), finish(&calls), calls)
            }
            ToolOutput::Auto { held, calls, .. } => {
                let left = std::mem::take(held);
                match calls {
                    Some((_, reader)) if !reader.calls().is_empty() => {
                        let calls = reader.calls().to_vec();
                        (content(left), finish(&calls), calls)
                    }
                    // Not calls after all: the text from the tag on is the answer's.
                    other => {
                        let tail = other.as_ref().map_or("", |(raw, _)| raw.as_str());
                        (content(left + tail), reason, vec![])
                    }
                }
            }
        }
    }
}

fn content(text: String) -> Emit {
    Emit {
        content: text,
        calls: vec![],
    }
}

/// The deltas of what a call reader told.
fn deltas(events: Vec<CallEvent>) -> Emit {
    Emit {
        content: String::new(),
        calls: events
            .into_iter()
            .map(|e| match e {
                CallEvent::Start { index, call } => first_delta(index, &call),
                CallEvent::Arguments { index, text } => arguments_delta(index, &text),
            })
            .collect(),
    }
}

fn first_delta(index: usize, call: &ToolCall) -> ToolCallDelta {
    ToolCallDelta {
        index,
        id: Some(call.id.clone()),
        kind: Some("function".into()),
        function: FunctionDelta {
            name: Some(call.function.name.clone()),
            arguments: String::new(),
        },
    }
}

fn arguments_delta(index: usize, arguments: &str) -> ToolCallDelta {
    ToolCallDelta {
        index,
        id: None,
        kind: None,
        function: FunctionDelta {
            name: None,
            arguments: arguments.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::openai::tools::Function;

    fn tools(choice: ToolChoice, parallel: bool) -> Arc<Tools> {
        let f = |name: &str| Function {
            name: name.into(),
            description: None,
            parameters: None,
        };
        Arc::new(Tools {
            functions: vec![f("a"), f("b")],
            choice,
            parallel,
        })
    }

    /// Feed every piece; the content and call deltas emitted, then the end's.
    fn run(t: &mut ToolOutput, pieces: &[&str], reason: &str) -> (Emit, String, Vec<ToolCall>) {
        let mut all = Emit::default();
        for p in pieces {
            let e = t.feed(p);
            all.content += &e.content;
            all.calls.extend(e.calls);
        }
        let (last, reason, calls) = t.end(reason.into());
        all.content += &last.content;
        all.calls.extend(last.calls);
        (all, reason, calls)
    }

    #[test]
    fn a_named_call_streams_name_first_then_arguments() {
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Function("b".into()), true)));
        let e1 = t.feed("{\"x\":");
        assert_eq!(e1.calls[0].function.name.as_deref(), Some("b"));
        assert_eq!(e1.calls[1].function.arguments, "{\"x\":");
        let e2 = t.feed("1}");
        assert_eq!(e2.calls.len(), 1);
        assert!(e2.calls[0].id.is_none());
        let (_, reason, calls) = t.end("stop".into());
        assert_eq!(reason, "tool_calls");
        assert_eq!(calls[0].function.arguments, "{\"x\":1}");
    }

    #[test]
    fn auto_keeps_text_and_streams_tagged_calls() {
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Auto, false)));
        assert_eq!(
            t.feed("Sure. <tool").content,
            "Sure. ",
            "a possible tag is held back"
        );
        let e = t.feed("_call>{\"name\": \"a\", \"arguments\": {\"k\":");
        assert_eq!(
            e.calls[0].function.name.as_deref(),
            Some("a"),
            "the name before the end"
        );
        let (emit, reason, calls) = run(
            &mut t,
            &[
                " 1}}</tool_call>",
                "<tool_call>{\"name\": \"b\", \"arguments\": {}}",
            ],
            "stop",
        );
        assert_eq!(emit.content, "");
        assert_eq!(reason, "tool_calls");
        assert_eq!(calls.len(), 1, "parallel_tool_calls: false keeps the first");
        assert_eq!(calls[0].function.arguments, "{\"k\": 1}");
        // Not a call after all: the text is the answer.
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Auto, true)));
        let (emit, reason, calls) = run(&mut t, &["<tool_call>{\"name\": \"zz\""], "length");
        assert_eq!(emit.content, "<tool_call>{\"name\": \"zz\"");
        assert_eq!((reason.as_str(), calls.len()), ("length", 0));
    }

    #[test]
    fn required_streams_each_call_as_it_is_written() {
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Required, true)));
        let e = t.feed("[{\"name\":\"a\",\"arguments\":{}},");
        assert_eq!(
            e.calls.len(),
            2,
            "name, then arguments, before the array ends"
        );
        let (emit, reason, calls) = run(
            &mut t,
            &["{\"name\":\"b\",\"arguments\":{\"k\":2}}]"],
            "stop",
        );
        assert_eq!(reason, "tool_calls");
        assert_eq!(calls[1].function.arguments, "{\"k\":2}");
        assert_eq!(
            emit.calls.iter().map(|d| d.index).collect::<Vec<_>>(),
            [1, 1]
        );
        assert_eq!(
            t.content("[...]", true),
            "",
            "a forced choice's text is not content"
        );
    }

    #[test]
    fn required_cut_by_its_length_is_still_a_call() {
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Required, true)));
        let (emit, reason, calls) = run(
            &mut t,
            &["[{\"name\": \"b\", \"argu", "ments\": {\"k\": \"lo"],
            "length",
        );
        assert_eq!(reason, "length");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function.arguments, "{\"k\": \"lo");
        assert_eq!(emit.content, "", "never raw JSON as content");
        assert_eq!(emit.calls[0].id.as_deref(), Some(calls[0].id.as_str()));
        // Cut before its name: no call, and no content either.
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Required, true)));
        let (emit, reason, calls) = run(&mut t, &["[{\"na"], "length");
        assert_eq!(
            (emit, reason.as_str(), calls.len()),
            (Emit::default(), "length", 0)
        );
    }
}
