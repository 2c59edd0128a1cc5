//! vLLM's chat-template options on `/v1/chat/completions`: `add_generation_prompt` (open the
//! assistant's turn, the default), `continue_final_message` (leave the last assistant message
//! open, so the model continues it) and `chat_template_kwargs` (extra variables for the
//! model's template, e.g. `enable_thinking`).

use super::body::ChatParams;
use super::{ChatMessage, InvalidRequest, Result};
use serde_json::{Map, Value};

/// Template variables sluice sets itself, which `chat_template_kwargs` may not replace.
const RESERVED: &[&str] = &[
    "messages",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
];

/// How a chat's messages are rendered with the model's template.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatTemplate {
    /// Open the assistant's turn after the messages (vLLM's default, `true`).
    pub add_generation_prompt: bool,
    /// End the prompt inside the last (assistant) message, with no end-of-turn after it.
    pub continue_final_message: bool,
    /// Extra variables passed to the template.
    pub kwargs: Map<String, Value>,
}

impl Default for ChatTemplate {
    fn default() -> Self {
        ChatTemplate {
            add_generation_prompt: true,
            continue_final_message: false,
            kwargs: Map::new(),
        }
    }
}

impl ChatTemplate {
    /// Whether these are the defaults (what every backend renders).
    pub fn is_default(&self) -> bool {
        *self == ChatTemplate::default()
    }
}

/// Read the options for `messages` (see the module's text); errors name the parameter.
pub(super) fn read_options(p: &mut ChatParams, messages: &[ChatMessage]) -> Result<ChatTemplate> {
    let add_generation_prompt = p.add_generation_prompt.unwrap_or(true);
    let continue_final_message = p.continue_final_message.unwrap_or(false);
    let kwargs = p.chat_template_kwargs.take().unwrap_or_default();
    if let Some(k) = kwargs.keys().find(|k| RESERVED.contains(&k.as_str())) {
        return Err(InvalidRequest::new(
            format!("chat_template_kwargs.{k}"),
            format!("`{k}` is set by the server, not by `chat_template_kwargs`"),
        ));
    }
    if continue_final_message {
        if add_generation_prompt {
            return Err(InvalidRequest::new(
                "continue_final_message",
                "`continue_final_message` needs `add_generation_prompt: false`",
            ));
        }
        if messages
            .last()
            .is_none_or(|m| m.role != "assistant" || m.content.is_empty())
        {
            return Err(InvalidRequest::new(
                "continue_final_message",
                "`continue_final_message` needs a last `assistant` message with content",
            ));
        }
    }
    Ok(ChatTemplate {
        add_generation_prompt,
        continue_final_message,
        kwargs,
    })
}

#[cfg(test)]
mod tests {
    use super::super::ChatRequest;
    use serde_json::json;

    fn chat(extra: serde_json::Value) -> super::Result<ChatRequest> {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hel"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ChatRequest::parse(body)
    }

    #[test]
    fn options_are_read_and_checked_as_vllm_does() {
        assert!(chat(json!({})).unwrap().template.is_default());
        let r = chat(
            json!({"add_generation_prompt": false, "continue_final_message": true,
            "chat_template_kwargs": {"enable_thinking": false}}),
        )
        .unwrap();
        assert!(r.template.continue_final_message && !r.template.add_generation_prompt);
        let param = |v| chat(v).unwrap_err().param;
        assert_eq!(
            param(json!({"continue_final_message": true})).as_deref(),
            Some("continue_final_message")
        );
        assert_eq!(
            param(json!({"chat_template_kwargs": {"messages": []}})).as_deref(),
            Some("chat_template_kwargs.messages")
        );
        assert_eq!(
            param(json!({"chat_template_kwargs": 1})).as_deref(),
            Some("chat_template_kwargs")
        );
    }
}
