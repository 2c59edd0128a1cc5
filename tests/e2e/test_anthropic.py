"""Anthropic's Messages API through the official `anthropic` SDK: create, stream (its event
sequence), forced and `any` tool calls with a tool-result round trip, structured output,
count_tokens, and Anthropic-shaped errors. The answers are the chat route's, translated: the
same prompt gives the same greedy text through both."""

import json

import anthropic
import httpx
import jsonschema
import pytest

from conftest import MODEL

HELLO = [{"role": "user", "content": "Say hello."}]
GREEDY = {"extra_body": {"temperature": 0}}
WEATHER = {
    "name": "get_weather",
    "description": "The weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}}, "required": ["city"], "additionalProperties": False},
}


@pytest.fixture(scope="module")
def claude(default_server):
    return anthropic.Anthropic(base_url=default_server.base, api_key="unused", max_retries=0)


def test_create_and_stream_are_the_chat_answer_translated(claude, default_server):
    m = claude.messages.create(model=MODEL, max_tokens=12, messages=HELLO, system="Be brief.", **GREEDY)
    chat = httpx.post(f"{default_server.base}/v1/chat/completions", timeout=60, json={
        "model": MODEL, "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "system", "content": "Be brief."}, *HELLO]}).json()
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == chat["choices"][0]["message"]["content"]
    assert m.stop_reason == {"length": "max_tokens", "stop": "end_turn"}[chat["choices"][0]["finish_reason"]]
    assert (m.usage.input_tokens, m.usage.output_tokens) == (chat["usage"]["prompt_tokens"], chat["usage"]["completion_tokens"])
    # Streamed: Anthropic's event sequence, the same text and counts.
    with claude.messages.stream(model=MODEL, max_tokens=12, messages=HELLO, system="Be brief.", **GREEDY) as s:
        events = list(s)
        final = s.get_final_message()
    kinds = [e.type for e in events if e.type in ("message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop")]
    assert kinds == ["message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"]
    assert events[0].message.usage.input_tokens == m.usage.input_tokens
    assert final.content[0].text == m.content[0].text and final.stop_reason == m.stop_reason
    assert final.usage.output_tokens == m.usage.output_tokens
    # A stop sequence ends the turn, and the answer says which one (a word the answer has).
    full = claude.messages.create(model=MODEL, max_tokens=30, messages=HELLO, **GREEDY).content[0].text
    word = full.split()[1]
    stopped = claude.messages.create(model=MODEL, max_tokens=30, messages=HELLO, stop_sequences=["\u00a7", word], **GREEDY)
    assert stopped.content[0].text == full[: full.index(word)]
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", word)
    with claude.messages.stream(model=MODEL, max_tokens=30, messages=HELLO, stop_sequences=[word], **GREEDY) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", word)


def test_tool_calls_and_a_tool_result_round_trip(claude):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    forced = claude.messages.create(model=MODEL, max_tokens=200, messages=ask, tools=[WEATHER],
                                    tool_choice={"type": "tool", "name": "get_weather"}, **GREEDY)
    assert forced.stop_reason == "tool_use"
    [call] = [b for b in forced.content if b.type == "tool_use"]
    assert call.name == "get_weather"
    jsonschema.validate(call.input, WEATHER["input_schema"])
    # Streamed with `any` (one call or more): each call's input arrives as JSON pieces and parses whole.
    with claude.messages.stream(model=MODEL, max_tokens=200, messages=ask, tools=[WEATHER], tool_choice={"type": "any"}, **GREEDY) as s:
        final = s.get_final_message()
    streamed = [b for b in final.content if b.type == "tool_use"]
    assert streamed and len({b.id for b in streamed}) == len(streamed)
    for b in streamed:
        jsonschema.validate(b.input, WEATHER["input_schema"])
    assert final.stop_reason == "tool_use"
    # The result goes back in a user turn, as Claude Code sends it.
    history = ask + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}]},
    ]
    answer = claude.messages.create(model=MODEL, max_tokens=20, messages=history, tools=[WEATHER], **GREEDY)
    assert answer.content and answer.usage.input_tokens > forced.usage.input_tokens
    counted = claude.messages.count_tokens(model=MODEL, messages=history, tools=[WEATHER])
    assert counted.input_tokens == answer.usage.input_tokens


def test_structured_output_follows_its_schema(claude):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    m = claude.messages.create(model=MODEL, max_tokens=200, messages=[{"role": "user", "content": "Invent a person."}],
                               output_config={"format": {"type": "json_schema", "schema": schema}})
    assert m.stop_reason == "end_turn", m
    jsonschema.validate(json.loads(m.content[0].text), schema)


def test_errors_are_anthropic_shaped_and_name_what_is_refused(claude, default_server):
    cases = [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, anthropic.BadRequestError, "thinking"),
        ({"output_config": {"effort": "low"}}, anthropic.BadRequestError, "output_config.effort"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search", "input_schema": {}}]}, anthropic.BadRequestError, "tools[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}]},
         anthropic.BadRequestError, "messages[0].content"),
        ({"model": "nope"}, anthropic.NotFoundError, "nope"),
        ({"max_tokens": 0}, anthropic.BadRequestError, "max_tokens"),
    ]
    for extra, error, named in cases:
        body = {"model": MODEL, "max_tokens": 8, "messages": HELLO, **extra}
        with pytest.raises(error) as e:
            claude.messages.create(**body)
        assert e.value.body["type"] == "error" and named in e.value.body["error"]["message"], e.value.body
    bad = httpx.post(f"{default_server.base}/v1/messages", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
