//! A chat choice's output read as tool calls, streamed as OpenAI streams them: a call's
//! `index`, `id`, `type` and function `name` first, its `arguments` in later deltas.
//!
//! How the text becomes calls depends on the request's `tool_choice` (see
//! `protocol::openai::tools`): a named function's arguments are the whole (constrained) text
//! and stream as they are generated; `required`'s JSON array of calls and `auto`'s Hermes
//! `<tool_call>` blocks are read when the choice ends, since a call's name and arguments are
//! only known once its JSON is complete.

use protocol::openai::response::{FunctionDelta, ToolCallDelta};
use protocol::openai::tools::{
    parse_hermes, parse_required, ToolCall, ToolChoice, Tools, CALL_OPEN,
};
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
    Required {
        /// The text so far.
        text: String,
    },
    /// `auto`: text until a `<tool_call>` tag, calls from there.
    Auto {
        /// The request's tools.
        tools: Arc<Tools>,
        /// Text held back because it may be the start of the tag.
        held: String,
        /// From the tag on, once seen.
        calls: Option<String>,
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
                ToolChoice::Required => ToolOutput::Required {
                    text: String::new(),
                },
                ToolChoice::Auto => ToolOutput::Auto {
                    tools: t.clone(),
                    held: String::new(),
                    calls: None,
                },
            },
        }
    }

    /// The part of a choice's whole `text` that was message content: all of it unless the
    /// choice ended in calls (`has_calls`), then what came before the first tag (`auto`) or
    /// nothing (a forced call, whose text was its arguments).
    pub fn content<'a>(&self, text: &'a str, has_calls: bool) -> &'a str {
        match self {
            _ if !has_calls => text,
            ToolOutput::Auto { .. } => text.find(CALL_OPEN).map_or(text, |at| &text[..at]),
            _ => "",
        }
    }

    /// Read the next piece of text.
    pub fn feed(&mut self, text: &str) -> Emit {
        match self {
            ToolOutput::Text => Emit {
                content: text.to_string(),
                calls: vec![],
            },
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
            ToolOutput::Required { text: all } => {
                all.push_str(text);
                Emit::default()
            }
            ToolOutput::Auto { held, calls, .. } => {
                if let Some(c) = calls {
                    c.push_str(text);
                    return Emit::default();
                }
                held.push_str(text);
                if let Some(at) = held.find(CALL_OPEN) {
                    *calls = Some(held[at..].to_string());
                    let content = held[..at].to_string();
                    held.clear();
                    return Emit {
                        content,
                        calls: vec![],
                    };
                }
                // Keep back the longest tail that the tag starts with.
                let keep = (1..CALL_OPEN.len().min(held.len() + 1))
                    .rev()
                    .find(|&n| held.ends_with(&CALL_OPEN[..n]))
                    .unwrap_or(0);
                let content: String = held.drain(..held.len() - keep).collect();
                Emit {
                    content,
                    calls: vec![],
                }
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
            ToolOutput::Required { text } => match parse_required(text) {
                Some(calls) => (whole_calls(&calls), finish(&calls), calls),
                // Cut by its length: the text is all there is.
                None => (content(std::mem::take(text)), reason, vec![]),
            },
            ToolOutput::Auto { tools, held, calls } => {
                let mut left = std::mem::take(held);
                let parsed = calls.as_deref().and_then(|c| parse_hermes(c, tools));
                match parsed {
                    Some(mut parsed) => {
                        if !tools.parallel {
                            parsed.truncate(1);
                        }
                        let mut emit = whole_calls(&parsed);
                        emit.content = left;
                        (emit, finish(&parsed), parsed)
                    }
                    None => {
                        left.push_str(calls.as_deref().unwrap_or(""));
                        (content(left), reason, vec![])
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

/// Each call as two deltas: index, id and name first, then its arguments.
fn whole_calls(calls: &[ToolCall]) -> Emit {
    Emit {
        content: String::new(),
        calls: calls
            .iter()
            .enumerate()
            .flat_map(|(i, c)| [first_delta(i, c), arguments_delta(i, &c.function.arguments)])
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
    fn auto_keeps_text_and_reads_tagged_calls() {
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Auto, false)));
        let mut content = t.feed("Sure. <tool").content;
        assert_eq!(content, "Sure. ", "a possible tag is held back");
        content += &t
            .feed("_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>")
            .content;
        content += &t
            .feed("<tool_call>{\"name\": \"b\", \"arguments\": {}}")
            .content;
        let (emit, reason, calls) = t.end("stop".into());
        assert_eq!(content + &emit.content, "Sure. ");
        assert_eq!(reason, "tool_calls");
        assert_eq!(calls.len(), 1, "parallel_tool_calls: false keeps the first");
        assert_eq!(emit.calls.len(), 2, "name delta, then arguments");
        // Not a call after all: the text is the answer.
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Auto, true)));
        let mut content = t.feed("<tool_call>{\"name\": \"zz\"").content;
        let (emit, reason, calls) = t.end("length".into());
        content += &emit.content;
        assert_eq!(content, "<tool_call>{\"name\": \"zz\"");
        assert_eq!((reason.as_str(), calls.len()), ("length", 0));
    }

    #[test]
    fn required_reads_the_array_at_the_end() {
        let mut t = ToolOutput::new(Some(&tools(ToolChoice::Required, true)));
        assert_eq!(
            t.feed("[{\"name\":\"a\",\"arguments\":{}},"),
            Emit::default()
        );
        t.feed("{\"name\":\"b\",\"arguments\":{\"k\":2}}]");
        let (emit, reason, calls) = t.end("stop".into());
        assert_eq!(reason, "tool_calls");
        assert_eq!(calls[1].function.arguments, "{\"k\":2}");
        assert_eq!(
            emit.calls.iter().map(|d| d.index).collect::<Vec<_>>(),
            [0, 0, 1, 1]
        );
    }
}
