"""Tool calls through the official `openai` client, streamed and not, on `/v1` and on the queue's
`/v2/{endpoint}/openai/v1`: a named function and `required` are enforced by constrained decoding
(the arguments validate against the function's schema with the `jsonschema` library even on the
tiny default model); `auto` reads the Hermes `<tool_call>` format; conversations carrying
assistant `tool_calls` and `tool` results are accepted; bad tool requests are refused with a
400 naming the part."""

import json

import jsonschema
import openai
import pytest

from conftest import MODEL
# Every engine backend runs these tests (conftest.BACKENDS): one conformance suite.
from conftest import conformance_server as server  # noqa: E402,F401

BASES = ["/v1", f"/v2/{MODEL}/openai/v1"]

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "unit": {"enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "maxLength": 20}},
    "required": ["timezone"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "Time in a timezone", "parameters": TIME}},
]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(params=BASES)
def client(server, request):
    return openai.OpenAI(base_url=server.base + request.param, api_key="unused", max_retries=0, timeout=120)


def streamed(client, **kw):
    """Accumulate a streamed answer as the SDK's users do: calls by index, name from the first
    piece, arguments concatenated. Returns (content, calls, finish_reason, first pieces)."""
    content, calls, finish, firsts = "", {}, None, {}
    for chunk in client.chat.completions.create(stream=True, **kw):
        for c in chunk.choices:
            content += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if d.index not in firsts:
                    firsts[d.index] = d
                if d.id:
                    call["id"] = d.id
                if d.function and d.function.name:
                    call["name"] = d.function.name
                call["arguments"] += (d.function.arguments or "") if d.function else ""
            finish = c.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish, firsts


def check_call(name, arguments):
    assert name in SCHEMAS, name
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def test_named_function_is_valid_streamed_and_not(client):
    kw = dict(model=MODEL, messages=ASK, max_tokens=80, temperature=0, tools=TOOLS,
              tool_choice={"type": "function", "function": {"name": "get_weather"}})
    r = client.chat.completions.create(**kw)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    check_call(call.function.name, call.function.arguments)
    content, calls, finish, firsts = streamed(client, **kw)
    assert content == "" and finish == "tool_calls"
    assert firsts[0].id and firsts[0].function.name == "get_weather", "id and name come first"
    assert [c["arguments"] for c in calls] == [call.function.arguments], "greedy: streamed == not"
    # With a typed output as well (agent frameworks send both): OpenAI's meaning, the call's
    # arguments follow the function's schema.
    typed = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}
    both = client.chat.completions.create(response_format=typed, **kw).choices[0]
    assert both.finish_reason == "tool_calls" and both.message.content is None
    assert both.message.tool_calls[0].function.arguments == call.function.arguments


@pytest.mark.parametrize("parallel", [False, True])
def test_required_calls_offered_functions_with_valid_arguments(client, parallel):
    kw = dict(model=MODEL, messages=ASK, max_tokens=160, temperature=0, tools=TOOLS,
              tool_choice="required", parallel_tool_calls=parallel)
    r = client.chat.completions.create(**kw)
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    assert 1 <= len(calls) and (parallel or len(calls) == 1)
    assert len({c.id for c in calls}) == len(calls), "ids are unique"
    for c in calls:
        check_call(c.function.name, c.function.arguments)
    _, scalls, finish, firsts = streamed(client, **kw)
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for c in scalls] == [(c.function.name, c.function.arguments) for c in calls]
    assert all(firsts[i].function.name for i in firsts), "each call's first piece names it"


def test_auto_answers_in_text_or_valid_calls_the_same_streamed(client):
    """`auto` leaves the choice to the model, so either shape is right; whichever the greedy
    model takes, the answer is well formed and the stream says the same."""
    kw = dict(model=MODEL, messages=ASK, max_tokens=80, temperature=0, tools=TOOLS)
    r = client.chat.completions.create(**kw)
    m, finish = r.choices[0].message, r.choices[0].finish_reason
    if m.tool_calls:
        assert finish == "tool_calls"
        for c in m.tool_calls:
            check_call(c.function.name, c.function.arguments)
    else:
        assert finish in ("stop", "length") and m.content
    content, calls, sfinish, _ = streamed(client, **kw)
    assert sfinish == finish
    assert (content or None) == (m.content or None)
    assert [(c["name"], c["arguments"]) for c in calls] == [(c.function.name, c.function.arguments) for c in m.tool_calls or []]


def test_a_conversation_with_calls_and_results_continues(client):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "celsius"})}}
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
    ]
    for choice in ["auto", "none"]:
        r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0, tools=TOOLS, tool_choice=choice)
        assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
        assert r.usage.prompt_tokens > 0
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0, tools=TOOLS, tool_choice="none")
    assert r.choices[0].message.content and not r.choices[0].message.tool_calls
    # The tool descriptions are part of the prompt the model reads (and the usage counts them).
    plain = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=1, temperature=0)
    with_tools = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=1, temperature=0, tools=TOOLS)
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 50


@pytest.mark.parametrize("kw,param", [
    (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
    (dict(tool_choice="required"), "tool_choice"),
    (dict(tools=[{"type": "function", "function": {"name": "has space"}}]), "tools[0].function.name"),
    (dict(tools=[{"type": "retrieval"}]), "tools[0].type"),
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]), "tools[0].function.parameters"),
    (dict(tools=TOOLS, logprobs=True), "logprobs"),
    (dict(messages=ASK + [{"role": "tool", "content": "x"}]), "messages[1].tool_call_id"),
])
def test_bad_tool_requests_name_the_part(client, kw, param):
    args = dict(model=MODEL, messages=ASK, max_tokens=4)
    args.update(kw)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**args)
    assert e.value.body["param"] == param, e.value.body


def test_required_streams_calls_as_written_and_a_cut_call_stays_a_call(client):
    kw = dict(model=MODEL, messages=ASK, temperature=0, tools=TOOLS, tool_choice="required")
    # Streamed: the name first, then the arguments in pieces as the model writes them.
    pieces = 0
    for chunk in client.chat.completions.create(stream=True, max_tokens=160, **kw):
        for c in chunk.choices:
            pieces += sum(1 for d in c.delta.tool_calls or [] if d.index == 0 and d.function.arguments)
    assert pieces >= 3, pieces
    # Cut by max_tokens: still a call, with its name and the arguments it has (vllm#47903
    # answered raw JSON as content); streamed and not alike.
    r = client.chat.completions.create(max_tokens=24, **kw)
    ch = r.choices[0]
    assert ch.finish_reason == "length" and not ch.message.content, ch
    [call] = ch.message.tool_calls
    assert call.function.name in SCHEMAS and call.function.arguments.startswith("{"), call
    content, calls, finish, _ = streamed(client, max_tokens=24, **kw)
    assert (content, finish) == ("", "length")
    assert [(c["name"], c["arguments"]) for c in calls] == [(call.function.name, call.function.arguments)]


def test_a_forced_function_without_parameters_gets_empty_arguments(client):
    tools = TOOLS + [{"type": "function", "function": {"name": "ping", "description": "Ping the service"}}]
    kw = dict(model=MODEL, messages=ASK, max_tokens=30, temperature=0, tools=tools,
              tool_choice={"type": "function", "function": {"name": "ping"}})
    r = client.chat.completions.create(**kw)
    [call] = r.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("ping", {}), call
    assert r.choices[0].finish_reason == "tool_calls"
    _, calls, finish, _ = streamed(client, **kw)
    assert finish == "tool_calls" and json.loads(calls[0]["arguments"]) == {}
