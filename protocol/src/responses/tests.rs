use super::reply::{response, EventStream};
use super::*;

fn request(extra: Value) -> Result<Value, Refused> {
    let mut body = json!({"model": "m", "input": "hi"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    parse::<ResponsesRequest>(body)?.to_chat(&[])
}

#[test]
fn an_agent_turn_becomes_the_chat_it_means() {
    let chat = request(json!({
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "Looking.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather", "arguments": "{}", "status": "completed"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"role": "developer", "content": [{"type": "input_text", "text": "Answer now."}]},
        ],
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": "required", "max_output_tokens": 9, "include": [], "reasoning": null,
        "text": {"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}, "strict": true}},
    }))
    .unwrap();
    let roles: Vec<&str> = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "system"]);
    assert_eq!(chat["messages"][2]["content"], "Looking.");
    assert_eq!(chat["messages"][2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(chat["response_format"]["json_schema"]["name"], "o");
    assert_eq!(chat["max_tokens"], 9);
    crate::openai::ChatRequest::parse(chat).unwrap();
}

#[test]
fn what_cannot_be_honoured_is_refused_by_name() {
    let field = |extra: Value| request(extra).unwrap_err().field;
    assert_eq!(field(json!({"reasoning": {"effort": "high"}})), "reasoning");
    assert_eq!(field(json!({"background": true})), "background");
    assert_eq!(
        field(json!({"tools": [{"type": "web_search"}]})),
        "tools[0].type"
    );
    assert_eq!(
        field(json!({"input": [{"type": "reasoning", "summary": []}]})),
        "input[0].type"
    );
    assert_eq!(
        field(
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]})
        ),
        "input[0].content[0].type"
    );
    assert_eq!(field(json!({"conversation": "c"})), "conversation");
}

#[test]
fn a_completion_and_its_stream_give_the_same_response() {
    let echo =
        parse::<ResponsesRequest>(json!({"model": "m", "input": "x", "max_output_tokens": 4}))
            .unwrap()
            .echo(false);
    let r = response(&echo, json!({
        "id": "chatcmpl-ab", "object": "chat.completion", "created": 5, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hello"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }))
    .unwrap();
    assert_eq!(
        (&r["id"], &r["status"]),
        (&json!("resp_ab"), &json!("incomplete"))
    );
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(r["usage"]["total_tokens"], 7);
    assert_eq!(r["max_output_tokens"], 4);
    let chunk = |delta: Value, finish: Value, usage: Value| {
        json!({"id": "chatcmpl-ab", "object": "chat.completion.chunk",
        "created": 5, "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage})
    };
    let mut s = EventStream::new(echo);
    let mut events = s.chunk(&chunk(
        json!({"role": "assistant", "content": "Hel"}),
        Value::Null,
        Value::Null,
    ));
    events.extend(s.chunk(&chunk(
        json!({"content": "lo"}),
        json!("length"),
        Value::Null,
    )));
    events.extend(s.chunk(
        &json!({"id": "chatcmpl-ab", "object": "chat.completion.chunk", "created": 5, "model": "m",
        "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
    ));
    events.extend(s.end());
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete"
        ]
    );
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..10).collect::<Vec<_>>());
    let last = &events[9]["response"];
    assert_eq!(
        (&last["output"], &last["usage"], &last["id"]),
        (&r["output"], &r["usage"], &r["id"])
    );
}

#[test]
fn a_stored_response_continues_as_its_whole_conversation_without_its_instructions() {
    use super::stored::Keep;
    let first: ResponsesRequest = parse(json!({"model": "m", "input": "Weather?",
        "instructions": "Be brief."}))
    .unwrap();
    let chat = first.to_chat(&[]).unwrap();
    let keep = Keep::new(&first, &chat, Some("t1".into()));
    let answer = json!({"id": "resp_ab", "output": [
        {"type": "message", "id": "msg_ab_0", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Looking.", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_ab_1", "call_id": "call_1", "name": "weather",
         "arguments": "{}", "status": "completed"}]});
    let stored = keep.record(answer.clone());
    assert_eq!(stored.tenant.as_deref(), Some("t1"));
    assert_eq!(stored.response, answer);
    assert_eq!(
        stored.input_items,
        [
            json!({"type": "message", "role": "user", "id": "msg_ab_in0",
            "content": [{"type": "input_text", "text": "Weather?"}]})
        ]
    );
    let next: ResponsesRequest = parse(json!({"model": "m", "previous_response_id": "resp_ab",
        "instructions": "Be kind.",
        "input": [{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]}))
    .unwrap();
    let chat = next.to_chat(&stored.conversation).unwrap();
    assert_eq!(
        chat["messages"],
        json!([
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Looking.", "tool_calls": [{"id": "call_1",
                "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ])
    );
    crate::openai::ChatRequest::parse(chat).unwrap();
    let echo = next.echo(true);
    assert_eq!(
        (&echo["store"], &echo["previous_response_id"]),
        (&json!(true), &json!("resp_ab"))
    );
}
