//! Tool calling: OpenAI's `tools`, `tool_choice` and `parallel_tool_calls`, the tool calls
//! of assistant messages and responses, and the JSON Schema that makes a forced call valid.
//!
//! sluice's contract (as vLLM's): `tool_choice: "required"` and a named function are enforced
//! by constrained decoding against the schema of [`Tools::forced_schema`], so their calls
//! always parse and match the function's `parameters`; `"auto"` lets the model choose and
//! reads the calls it writes in the Hermes format (`<tool_call>{"name", "arguments"}
//! </tool_call>`, the format of Qwen2.5, Hermes and SmolLM2's chat templates), which the
//! engine describes to the model in a system message; `"none"` leaves the tools out.

use super::wire::{ToolBody, ToolChoiceBody, ToolMode};
use super::{ChatMessage, InvalidRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Most functions one request may offer (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;

/// The tag pair a model writes a call between in the Hermes format that `auto` reads.
pub const CALL_OPEN: &str = "<tool_call>";
/// See [`CALL_OPEN`].
pub const CALL_CLOSE: &str = "</tool_call>";

/// A function the model may call: OpenAI's `tools[i].function`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Function {
    /// Its name: 1 to 64 of `a-z`, `A-Z`, `0-9`, `_` and `-` (OpenAI's rule); unique per
    /// request.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of its arguments (an object schema); `None`: it takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// OpenAI's `tool_choice`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model may answer in text or call tools (the default when tools are given).
    Auto,
    /// The model must call at least one tool.
    Required,
    /// The model must call this function, once.
    Function(String),
}

/// The tools of a chat request, validated. A request with no tools, or with
/// `tool_choice: "none"`, has none ([`super::ChatRequest::tools`] is `None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tools {
    /// The functions offered, in the request's order; at least one.
    pub functions: Vec<Function>,
    /// How the model must use them.
    pub choice: ToolChoice,
    /// OpenAI's `parallel_tool_calls` (default true): whether one answer may hold several
    /// calls.
    pub parallel: bool,
}

/// A call in an assistant message or a response: `{"id", "type": "function", "function":
/// {"name", "arguments"}}`, `arguments` being JSON text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCall {
    /// The call's id (`call_` + 24 hex digits from sluice's engine), quoted back by the
    /// `tool` message that answers it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What is called.
    pub function: FunctionCall,
}

/// The function and arguments of a [`ToolCall`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments as JSON text (an object).
    pub arguments: String,
}

impl ToolCall {
    /// A call of `name` with `arguments` (JSON text) and a fresh id.
    pub fn new(name: String, arguments: String) -> Self {
        ToolCall {
            id: format!("call_{:024x}", rand::random::<u128>() >> 32),
            kind: "function".into(),
            function: FunctionCall { name, arguments },
        }
    }
}

impl Tools {
    /// The JSON Schema a forced choice constrains the output to: a named function's
    /// `parameters` (the output is its arguments), or for `required` an array of
    /// `{"name", "arguments"}` objects, one per call (at most one without
    /// `parallel_tool_calls`). `None` for `auto`.
    pub fn forced_schema(&self) -> Option<Value> {
        match &self.choice {
            ToolChoice::Auto => None,
            ToolChoice::Function(name) => self
                .functions
                .iter()
                .find(|f| &f.name == name)
                .map(Function::arguments_schema),
            ToolChoice::Required => {
                let calls: Vec<Value> = self
                    .functions
                    .iter()
                    .map(|f| {
                        json!({
                            "type": "object",
                            "properties": {
                                "name": {"const": f.name},
                                "arguments": f.arguments_schema(),
                            },
                            "required": ["name", "arguments"],
                            "additionalProperties": false,
                        })
                    })
                    .collect();
                let mut schema = json!({"type": "array", "items": {"anyOf": calls}, "minItems": 1});
                if !self.parallel {
                    schema["maxItems"] = json!(1);
                }
                Some(schema)
            }
        }
    }

    /// The system text that tells the model about the tools and the Hermes call format.
    pub fn system_prompt(&self) -> String {
        let list: Vec<String> = self
            .functions
            .iter()
            .map(|f| json!({"type": "function", "function": f}).to_string())
            .collect();
        format!(
            "You may call one or more functions to answer the user. The functions are listed \
             in <tools></tools>:\n<tools>\n{}\n</tools>\nTo call a function, reply with a JSON \
             object of its name and arguments between {CALL_OPEN}{CALL_CLOSE} tags:\n\
             {CALL_OPEN}\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n\
             {CALL_CLOSE}",
            list.join("\n")
        )
    }

    /// Whether `name` is one of the functions offered.
    pub fn offers(&self, name: &str) -> bool {
        self.functions.iter().any(|f| f.name == name)
    }
}

impl Function {
    /// Its `parameters`; without them (OpenAI: the function takes none) only `{}`, so a
    /// forced call of it gets empty arguments instead of whatever object the model invents.
    fn arguments_schema(&self) -> Value {
        self.parameters.clone().unwrap_or_else(
            || json!({"type": "object", "properties": {}, "additionalProperties": false}),
        )
    }
}

/// The request's `tools`, `tool_choice` and `parallel_tool_calls`.
/// `None` when no tools are offered or `tool_choice` is `none`.
///
/// Errors: [`InvalidRequest`] naming the part at fault: a tool that is not a function, a bad
/// or repeated name, `parameters` that is not an object schema, more than [`MAX_TOOLS`],
/// a `tool_choice` naming no offered function, or a `tool_choice` other than `none` with no
/// tools.
pub(super) fn read_tools(
    raw: Option<Vec<ToolBody>>,
    choice: Option<ToolChoiceBody>,
    parallel: Option<bool>,
) -> Result<Option<Tools>> {
    let parallel = parallel.unwrap_or(true);
    let functions = raw
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| parse_tool(i, t))
        .collect::<Result<Vec<_>>>()?;
    if functions.len() > MAX_TOOLS {
        return Err(InvalidRequest::new(
            "tools",
            format!("at most {MAX_TOOLS} tools may be given"),
        ));
    }
    for (i, f) in functions.iter().enumerate() {
        if functions[..i].iter().any(|g| g.name == f.name) {
            return Err(InvalidRequest::new(
                format!("tools[{i}].function.name"),
                format!("function `{}` is given twice", f.name),
            ));
        }
    }
    // `none`: the tools are left out.
    let Some(choice) = choice
        .map(parse_choice)
        .transpose()?
        .unwrap_or(Some(ToolChoice::Auto))
    else {
        return Ok(None);
    };
    if functions.is_empty() {
        return match choice {
            ToolChoice::Auto => Ok(None),
            _ => Err(InvalidRequest::new(
                "tool_choice",
                "`tool_choice` needs `tools`",
            )),
        };
    }
    let tools = Tools {
        functions,
        choice,
        parallel,
    };
    if let ToolChoice::Function(name) = &tools.choice {
        if !tools.offers(name) {
            return Err(InvalidRequest::new(
                "tool_choice",
                format!("`tool_choice` names function `{name}`, which is not in `tools`"),
            ));
        }
    }
    Ok(Some(tools))
}

/// `tool_choice` as given; `None` for `none`.
fn parse_choice(v: ToolChoiceBody) -> Result<Option<ToolChoice>> {
    Ok(Some(match v {
        ToolChoiceBody::Mode(ToolMode::None) => return Ok(None),
        ToolChoiceBody::Mode(ToolMode::Auto) => ToolChoice::Auto,
        ToolChoiceBody::Mode(ToolMode::Required) => ToolChoice::Required,
        ToolChoiceBody::Named(named) => ToolChoice::Function(named.function.name),
    }))
}

fn parse_tool(i: usize, t: ToolBody) -> Result<Function> {
    let at = |field: &str| format!("tools[{i}]{field}");
    let mut f = t
        .function
        .ok_or_else(|| InvalidRequest::new(at(".function"), "`function` is required"))?;
    let name_ok = (1..=64).contains(&f.name.len())
        && f.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(InvalidRequest::new(
            at(".function.name"),
            "a function name is 1 to 64 of a-z, A-Z, 0-9, `_` and `-`",
        ));
    }
    if f.parameters.as_ref().is_some_and(Value::is_null) {
        f.parameters = None;
    }
    if let Some(p) = f.parameters.take() {
        if !p.is_object() || p.get("type").is_some_and(|t| t != "object") {
            return Err(InvalidRequest::new(
                at(".function.parameters"),
                "`parameters` must be a JSON Schema of an object",
            ));
        }
        f.parameters = Some(super::format::bounded(p, &at(".function.parameters"))?);
    }
    Ok(f)
}

/// The conversation as a chat template without tool support reads it: plain `role` +
/// `content` messages. With `tools`, a system message describing them comes first (added to
/// the conversation's own system message); an assistant message's calls are written after
/// its text in the Hermes format; the results of `tool` messages in a row become one `user`
/// message of `<tool_response>` blocks (as Qwen2.5's template renders them), so roles still
/// alternate for strict templates. The gateway counts prompt tokens on this same rendering.
pub fn render(messages: &[ChatMessage], tools: Option<&Tools>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if let Some(t) = tools {
        out.push(ChatMessage {
            role: "system".into(),
            content: t.system_prompt(),
            ..Default::default()
        });
    }
    for m in messages {
        let mut content = m.content.clone();
        for c in &m.tool_calls {
            let args: Value = serde_json::from_str(&c.function.arguments)
                .unwrap_or_else(|_| Value::String(c.function.arguments.clone()));
            let call = json!({"name": c.function.name, "arguments": args});
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(&format!("{CALL_OPEN}\n{call}\n{CALL_CLOSE}"));
        }
        let only_tools_yet = tools.is_some() && out.len() == 1;
        match (m.role.as_str(), out.last_mut()) {
            ("tool", Some(prev))
                if prev.role == "user" && prev.content.ends_with("</tool_response>") =>
            {
                prev.content
                    .push_str(&format!("\n<tool_response>\n{content}\n</tool_response>"));
            }
            ("tool", _) => out.push(ChatMessage {
                role: "user".into(),
                content: format!("<tool_response>\n{content}\n</tool_response>"),
                ..Default::default()
            }),
            // The conversation's own system message follows the tools' description.
            ("system", Some(prev)) if only_tools_yet => {
                prev.content = format!("{content}\n\n{}", prev.content);
            }
            (role, _) => out.push(ChatMessage {
                role: role.to_string(),
                content,
                ..Default::default()
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::calls::{CallLayout, CallReader};

    /// The tools of a chat body's parameters `body`.
    fn read(body: Value) -> Result<Option<Tools>> {
        let p: crate::openai::body::ChatParams = crate::openai::body::typed(body)?;
        read_tools(p.tools, p.tool_choice, p.parallel_tool_calls)
    }

    fn tools(choice: Value) -> Result<Option<Tools>> {
        read(json!({
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now"}}],
            "tool_choice": choice,
        }))
    }

    #[test]
    fn choices_parse_and_bad_ones_name_the_part() {
        assert_eq!(
            tools(json!("auto")).unwrap().unwrap().choice,
            ToolChoice::Auto
        );
        assert!(tools(json!("none")).unwrap().is_none());
        let named = json!({"type": "function", "function": {"name": "now"}});
        let t = tools(named).unwrap().unwrap();
        assert_eq!(
            t.forced_schema(),
            Some(json!({"type": "object", "properties": {}, "additionalProperties": false}))
        );
        let missing = json!({"type": "function", "function": {"name": "nope"}});
        assert_eq!(
            tools(missing).unwrap_err().param.as_deref(),
            Some("tool_choice")
        );
        let err = read(json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tools[0].function.name"));
        assert_eq!(
            read(json!({"tool_choice": "required"}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("tool_choice")
        );
    }

    #[test]
    fn conversations_with_calls_render_as_plain_messages() {
        let t = tools(json!("auto")).unwrap().unwrap();
        let call = ToolCall::new("now".into(), "{}".into());
        let msgs = vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
                ..Default::default()
            },
            ChatMessage {
                role: "user".into(),
                content: "time?".into(),
                ..Default::default()
            },
            ChatMessage {
                role: "assistant".into(),
                tool_calls: vec![call.clone(), call.clone()],
                ..Default::default()
            },
            ChatMessage {
                role: "tool".into(),
                content: "12:00".into(),
                tool_call_id: Some(call.id.clone()),
                ..Default::default()
            },
            ChatMessage {
                role: "tool".into(),
                content: "12:01".into(),
                tool_call_id: Some(call.id),
                ..Default::default()
            },
        ];
        let r = render(&msgs, Some(&t));
        let roles: Vec<&str> = r.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert!(r[0].content.starts_with("Be brief.\n\n") && r[0].content.contains("get_weather"));
        assert_eq!(r[2].content.matches(CALL_OPEN).count(), 2);
        assert!(r[2].content.starts_with(CALL_OPEN), "{}", r[2].content);
        assert_eq!(r[3].content.matches("<tool_response>").count(), 2);
        assert_eq!(render(&msgs[1..2], None), msgs[1..2].to_vec());
    }

    #[test]
    fn required_is_an_array_of_calls_and_outputs_parse_back() {
        let t = tools(json!("required")).unwrap().unwrap();
        let s = t.forced_schema().unwrap();
        assert_eq!(s["minItems"], 1);
        assert_eq!(
            s["items"]["anyOf"][0]["properties"]["name"]["const"],
            "get_weather"
        );
        let mut reader = CallReader::new(CallLayout::Array, vec![], true);
        reader.feed(r#"[{"name":"now","arguments":{}}]"#);
        let calls = reader.calls();
        assert_eq!(calls[0].function.name, "now");
        assert!(calls[0].id.starts_with("call_") && calls[0].id.len() == 29);
    }
}
