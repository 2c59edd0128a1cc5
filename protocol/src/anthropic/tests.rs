use super::reply::{message, EventStream};
use super::*;

fn request(extra: Value) -> Result<Value, Refused> {
    let mut body =
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    parse::<MessagesRequest>(body)?.to_chat()
}

#[test]
fn a_tool_conversation_becomes_the_chat_it_means() {
    let chat = request(json!({
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "text", "text": "And so?"}]},
        ],
        "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["\n\n"], "top_k": 5, "stream": true,
    }))
    .unwrap();
    let roles: Vec<&str> = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
    assert_eq!(chat["messages"][0]["content"], "Be brief.");
    assert_eq!(
        chat["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(
        chat["messages"][3],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"})
    );
    assert_eq!(
        chat["tools"][0]["function"]["parameters"],
        json!({"type": "object"})
    );
    assert_eq!(
        (&chat["tool_choice"], &chat["parallel_tool_calls"]),
        (&json!("required"), &json!(false))
    );
    assert_eq!(chat["stop"], json!(["\n\n"]));
    assert_eq!(chat["stream_options"]["continuous_usage_stats"], true);
    // The chat route's own parser takes it.
    crate::openai::ChatRequest::parse(chat).unwrap();
}

#[test]
fn what_cannot_be_honoured_is_refused_by_its_path() {
    let field = |extra: Value| request(extra).unwrap_err().field;
    assert_eq!(field(json!({"thinking": {"type": "enabled"}})), "thinking");
    let e = request(json!({"thinking": {"type": "enabled"}})).unwrap_err();
    assert!(e.message.contains("thinking"), "{e:?}");
    let image =
        json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]});
    assert!(field(image).starts_with("messages[0].content"));
    let server = json!({"tools": [{"type": "web_search_20250305", "name": "web_search", "input_schema": {}}]});
    assert_eq!(field(server), "tools[0].type");
    let misplaced = json!({"messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "x", "name": "f", "input": {}}]}]});
    assert_eq!(field(misplaced), "messages[0].content[0]");
    assert_eq!(field(json!({"max_tokens": "many"})), "max_tokens");
}

#[test]
fn a_completion_becomes_a_message() {
    let m = message(json!({
        "id": "chatcmpl-abc", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": "Calling.", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }))
    .unwrap();
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["id"], "msg_abc");
    assert_eq!(v["content"][0], json!({"type": "text", "text": "Calling."}));
    assert_eq!(
        v["content"][1],
        json!({"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}})
    );
    assert_eq!(
        (&v["stop_reason"], &v["usage"]),
        (
            &json!("tool_use"),
            &json!({"input_tokens": 7, "output_tokens": 3})
        )
    );
}

#[test]
fn a_chunk_stream_becomes_anthropic_events() {
    let chunk = |delta: Value, finish: Value, done: usize| {
        json!({"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": done, "total_tokens": 5 + done}})
    };
    let mut s = EventStream::default();
    let mut events = Vec::new();
    events.extend(s.chunk(&chunk(
        json!({"role": "assistant", "content": "He"}),
        Value::Null,
        1,
    )));
    events.extend(s.chunk(&chunk(json!({"content": "llo"}), Value::Null, 2)));
    let call = json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]});
    events.extend(s.chunk(&chunk(call, Value::Null, 3)));
    let args = json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]});
    events.extend(s.chunk(&chunk(args, json!("tool_calls"), 4)));
    events.extend(s.end());
    let names: Vec<&str> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 5);
    assert_eq!(events[5].1["index"], 1);
    assert_eq!(
        events[6].1["delta"],
        json!({"type": "input_json_delta", "partial_json": "{}"})
    );
    assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[8].1["usage"]["output_tokens"], 4);
}
