"""Structured outputs through the official `openai` client: `response_format` (`json_schema`,
`json_object`) and vLLM's `guided_json`, enforced by the engine's constrained decoding, so even
the tiny default model's output parses and validates (checked with the `jsonschema` library),
streamed and not, on `/v1` and on the queue's `/v2/{endpoint}/openai/v1`; schemas the engine
cannot enforce are refused before they are queued."""

import io
import json
import urllib.request

import jsonschema
import openai
import pydantic
import pytest

from conftest import MODEL
# Every engine backend runs these tests (conftest.BACKENDS): one conformance suite.
from conftest import conformance_server as server  # noqa: E402,F401
from test_openai import raw_post

BASES = ["/v1", f"/v2/{MODEL}/openai/v1"]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "color": {"enum": ["red", "green", "blue"]},
    },
    "required": ["name", "age", "color"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Describe a person as JSON: name, age and favourite color."}]


@pytest.fixture(params=BASES)
def client(server, request):
    return openai.OpenAI(base_url=server.base + request.param, api_key="unused", max_retries=0, timeout=120)


def content_of(client, stream: bool, **kw):
    """The message text and finish reason, from one streamed or non-streamed chat request."""
    if not stream:
        r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=120, **kw)
        return r.choices[0].message.content, r.choices[0].finish_reason
    text, finish = "", None
    for chunk in client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=120, stream=True, **kw):
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    return text, finish


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_validates(client, stream):
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for temperature in (0, 1):
        text, finish = content_of(client, stream, response_format=rf, temperature=temperature)
        assert finish == "stop", (finish, text)
        jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize("stream", [False, True])
def test_json_object_output_is_an_object(client, stream):
    text, finish = content_of(client, stream, response_format={"type": "json_object"}, temperature=0)
    if finish == "stop":
        assert isinstance(json.loads(text), dict), text
    else:
        # Cut at max_tokens: still the beginning of an object.
        assert finish == "length" and text.lstrip().startswith("{"), (finish, text)


def test_the_sdks_parse_helper_gets_its_pydantic_model(client):
    class Pet(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=12)
        legs: int = pydantic.Field(ge=0, le=8)

    r = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Invent a pet."}],
        response_format=Pet,
        max_tokens=80,
        temperature=0,
    )
    pet = r.choices[0].message.parsed
    assert isinstance(pet, Pet) and 0 <= pet.legs <= 8, r


def test_guided_json_on_the_openai_route_and_in_a_worker_vllm_job(server, client):
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=120, temperature=0, extra_body={"guided_json": PERSON}
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)
    job = {"input": {"messages": ASK, "sampling_params": {"max_tokens": 120, "temperature": 0, "guided_json": PERSON}}}
    status, view = raw_post(f"{server.base}/v2/{MODEL}/runsync", json.dumps(job).encode(), timeout=120)
    assert status == 200 and view["status"] == "COMPLETED", view
    text = view["output"][0]["choices"][0]["tokens"][0]
    jsonschema.validate(json.loads(text), PERSON)


def test_schemas_the_engine_cannot_enforce_are_refused_with_the_part_named(client):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frobnicate"}}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, response_format=bad)
    err = e.value.body
    assert err["param"] == "response_format.json_schema.schema" and "frobnicate" in err["message"], err
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=8, response_format={"type": "json_schema", "json_schema": {"name": "no spaces"}}
        )
    assert e.value.body["param"] == "response_format.json_schema.name", e.value.body


# Hostile schemas and bodies (public reports against vLLM, llama.cpp and Ollama, tried here):
# a `$ref` chain of 800 definitions (27 KB) overflowed the gateway's stack and took every
# endpoint down; in a `/v2` job it crashed worker after worker.


def ref_chain(links):
    defs = {f"a{i}": {"$ref": f"#/$defs/a{i + 1}"} for i in range(links)}
    defs[f"a{links}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/a0"}


def nested(levels, inner="1"):
    return "[" * levels + inner + "]" * levels


def alive(server):
    return urllib.request.urlopen(f"{server.base}/health", timeout=5).status == 200


def test_a_ref_chain_is_refused_on_every_route_and_form_and_nothing_falls(server):
    chain = ref_chain(800)
    assert len(json.dumps(chain)) < 30_000
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": chain}}
    for route in ["/v1", f"/v2/{MODEL}/openai/v1"]:
        body = {"model": MODEL, "messages": ASK, "max_tokens": 8, "response_format": rf}
        status, err = raw_post(f"{server.base}{route}/chat/completions", json.dumps(body).encode())
        assert status == 400 and err["error"]["param"] == "response_format.json_schema.schema", err
        assert "256" in err["error"]["message"], err
    # `$ref`s that only alias each other in a cycle match nothing: named, not a failed job
    # with the engine's internal state in its message.
    for cycle in [{"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
                  {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}]:
        body = {"model": MODEL, "messages": ASK, "max_tokens": 8,
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": cycle}}}
        status, err = raw_post(f"{server.base}/v1/chat/completions", json.dumps(body).encode())
        assert status == 400 and "cycle" in err["error"]["message"], err
    # A worker-vllm job's guided_json is checked before it is queued, as text or not.
    for guided in [chain, json.dumps(chain)]:
        job = {"input": {"prompt": "x", "sampling_params": {"max_tokens": 8, "guided_json": guided}}}
        status, err = raw_post(f"{server.base}/v2/{MODEL}/run", json.dumps(job).encode())
        assert status == 400 and "guided_json" in err["error"] and "256" in err["error"], err
    # The same line in a batch input file.
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": ASK, "max_tokens": 8, "response_format": rf}}
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=("x.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    assert "256" in str(e.value.body), e.value.body
    # A tool's parameters.
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", **chain}}}]
    status, err = raw_post(f"{server.base}/v1/chat/completions",
                           json.dumps({"model": MODEL, "messages": ASK, "tools": tools}).encode())
    assert status == 400 and err["error"]["param"] == "tools[0].function.parameters", err
    assert alive(server)


def test_one_depth_limit_for_every_body_and_what_passes_is_served(server):
    status, err = raw_post(f"{server.base}/v1/completions",
                           f'{{"model": "{MODEL}", "prompt": "x", "x": {nested(64)}}}'.encode())
    assert status == 400 and "64 levels" in err["error"]["message"], err
    # Valid JSON nested 200 deep is named for its depth, not called invalid.
    status, err = raw_post(f"{server.base}/v2/{MODEL}/run", f'{{"input": {{"x": {nested(200)}}}}}'.encode())
    assert status == 400 and "64 levels" in err["error"] and "valid JSON" not in err["error"], err
    # A request at the limit (its schema nests the body 64 deep) is decoded and run by a worker.
    schema = {"type": "string"}
    for _ in range(30):
        schema = {"type": "object", "properties": {"a": schema}}
    body = json.dumps({"model": MODEL, "messages": ASK, "max_tokens": 60, "temperature": 0,
                       "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    depth = max(body[:i].count("{") - body[:i].count("}") for i in range(len(body)))
    assert depth == 64, depth
    status, r = raw_post(f"{server.base}/v1/chat/completions", body.encode(), timeout=120)
    assert status == 200 and r["choices"][0]["finish_reason"] in ("stop", "length"), r
