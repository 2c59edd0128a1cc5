"""OpenAI's Responses API through the official `openai` SDK (`responses.create`, streamed and
not, function tools, a function-call round trip, `text.format`, stored responses read, listed,
deleted and continued with `previous_response_id`) and the `openai-agents` SDK on its default
API; what it cannot do refused by name."""

import asyncio
import json

import httpx
import jsonschema
import openai
import pytest

from conftest import MODEL

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}}, "required": ["city"], "additionalProperties": False},
}


def test_create_and_stream_are_the_chat_answer_translated(client, default_server):
    r = client.responses.create(model=MODEL, input="Say hello.", instructions="Be brief.", max_output_tokens=12, temperature=0)
    chat = client.chat.completions.create(model=MODEL, max_tokens=12, temperature=0, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}])
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.output_text == chat.choices[0].message.content
    assert r.status == {"length": "incomplete", "stop": "completed"}[chat.choices[0].finish_reason]
    assert (r.usage.input_tokens, r.usage.output_tokens) == (chat.usage.prompt_tokens, chat.usage.completion_tokens)
    assert r.max_output_tokens == 12 and r.instructions == "Be brief."
    # Streamed: the event sequence, numbered, ending with the whole response.
    events = list(client.responses.create(model=MODEL, input="Say hello.", instructions="Be brief.",
                                          max_output_tokens=12, temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == r.output_text == events[-1].response.output_text
    assert events[-1].response.usage.output_tokens == r.usage.output_tokens
    # The SDK's stream helper reads it too (it needs a completed answer, not a cut one).
    with client.responses.stream(model=MODEL, input="Say hello.", max_output_tokens=300, temperature=0) as s:
        final = s.get_final_response()
    assert final.status == "completed" and final.output_text


def test_function_calls_and_their_outputs(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.responses.create(model=MODEL, input=ask, tools=[WEATHER],
                                tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=200, temperature=0)
    [call] = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    # The call and its output go back as input items, as agent loops send them.
    follow = ask + [call.model_dump(exclude_none=True), {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}]
    answer = client.responses.create(model=MODEL, input=follow, tools=[WEATHER], max_output_tokens=20, temperature=0)
    assert answer.output and answer.usage.input_tokens > r.usage.input_tokens
    # Streamed, the arguments arrive in pieces that add up to the call.
    events = list(client.responses.create(model=MODEL, input=ask, tools=[WEATHER], max_output_tokens=200, temperature=0,
                                          tool_choice={"type": "function", "name": "get_weather"}, stream=True))
    assert events[-1].type == "response.completed", events[-1]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and all(jsonschema.validate(json.loads(d.arguments), WEATHER["parameters"]) is None for d in done)
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert pieces == "".join(d.arguments for d in done)


def test_text_format_json_schema(client):
    # Bounded strings: the tiny model may otherwise write one string until max_output_tokens.
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16}}, "required": ["name"], "additionalProperties": False}
    r = client.responses.create(model=MODEL, input="Invent a person.", max_output_tokens=200, temperature=0,
                                text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}})
    assert r.status == "completed", r
    jsonschema.validate(json.loads(r.output_text), schema)


def test_what_cannot_be_honoured_is_refused_by_name(client, default_server):
    for extra, param in [
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"background": True}, "background"),
    ]:
        with pytest.raises(openai.BadRequestError) as e:
            client.responses.create(model=MODEL, input="x", **extra)
        assert e.value.body["param"] == param, e.value.body
    assert httpx.get(f"{default_server.base}/v1/responses/resp_x").status_code == 404


def test_stored_responses_are_read_listed_deleted_and_continued(client):
    first = client.responses.create(model=MODEL, input="My name is Ada.", instructions="Be brief.",
                                    max_output_tokens=8, temperature=0)
    assert first.store is True
    assert client.responses.retrieve(first.id).model_dump() == first.model_dump()
    # A continuation is the stored conversation (without its instructions) and the new input:
    # the same greedy answer and prompt as sending the whole conversation again.
    follow = client.responses.create(model=MODEL, previous_response_id=first.id, input="What is my name?",
                                     max_output_tokens=8, temperature=0)
    whole = [{"role": "user", "content": "My name is Ada."}, *[o.model_dump(exclude_none=True) for o in first.output],
             {"role": "user", "content": "What is my name?"}]
    explicit = client.responses.create(model=MODEL, input=whole, store=False, max_output_tokens=8, temperature=0)
    assert follow.previous_response_id == first.id and explicit.store is False
    assert (follow.output_text, follow.usage.input_tokens) == (explicit.output_text, explicit.usage.input_tokens)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(explicit.id)
    # Streamed answers are kept before the last event arrives.
    events = list(client.responses.create(model=MODEL, input="Say hi.", max_output_tokens=6, temperature=0, stream=True))
    assert client.responses.retrieve(events[-1].response.id).output_text == events[-1].response.output_text
    # Input items: the last first unless `order=asc`, a page at a time.
    items = client.responses.input_items.list(follow.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "What is my name?")]
    two = client.responses.create(model=MODEL, input=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
                                  max_output_tokens=1)
    texts = lambda page: [i.content[0].text for i in page.data]  # noqa: E731
    assert texts(client.responses.input_items.list(two.id)) == ["b", "a"]
    page = client.responses.input_items.list(two.id, order="asc", limit=1)
    assert texts(page) == ["a"] and page.has_more
    assert texts(client.responses.input_items.list(two.id, order="asc", after=page.last_id)) == ["b"]
    # Deleted: gone, and nothing continues from it.
    client.responses.delete(first.id)
    for gone in (lambda: client.responses.retrieve(first.id), lambda: client.responses.delete(first.id)):
        with pytest.raises(openai.NotFoundError):
            gone()
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, previous_response_id=first.id, input="x", max_output_tokens=1)
    assert e.value.body["param"] == "previous_response_id"


def test_openai_agents_on_its_default_api(default_server):
    agents = pytest.importorskip("agents")
    from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    calls = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        calls.append(city)
        return "Sunny"

    model = OpenAIResponsesModel(model=MODEL, openai_client=AsyncOpenAI(base_url=f"{default_server.base}/v1", api_key="unused"))
    settings = agents.ModelSettings(tool_choice="get_weather", max_tokens=300, temperature=0)
    agent = Agent(name="weather", instructions="Answer briefly.", tools=[get_weather], model=model, model_settings=settings,
                  tool_use_behavior="stop_on_first_tool")
    plain = Agent(name="plain", instructions="Be brief.", model=model, model_settings=agents.ModelSettings(max_tokens=300, temperature=0))

    async def runs():
        # One event loop for every run: the async client's connections belong to it.
        result = await Runner.run(agent, "Weather in Paris?", run_config=RunConfig(tracing_disabled=True))
        run = Runner.run_streamed(plain, "Say hello.")
        events = [e async for e in run.stream_events()]
        # A conversation the server keeps: the second turn sends only its own input.
        first = await Runner.run(plain, "My name is Ada.")
        second = await Runner.run(plain, "What is my name?", previous_response_id=first.last_response_id)
        return result, events, run, (first, second)

    result, events, run, (first, second) = asyncio.run(runs())
    assert calls and result.final_output == "Sunny"
    assert events and run.final_output
    kept = httpx.get(f"{default_server.base}/v1/responses/{second.last_response_id}", timeout=30).json()
    assert kept["previous_response_id"] == first.last_response_id, kept
    turn = lambda r: r.raw_responses[-1].usage  # noqa: E731
    assert turn(second).input_tokens > turn(first).input_tokens + turn(first).output_tokens, "the first turn was read again"
