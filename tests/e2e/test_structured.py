"""Structured outputs through the official `openai` client: `response_format` (`json_schema`,
`json_object`) and vLLM's `guided_json`, enforced by the engine's constrained decoding, so even
the tiny default model's output parses and validates (checked with the `jsonschema` library),
streamed and not, on `/v1` and on the queue's `/v2/{endpoint}/openai/v1`; schemas the engine
cannot enforce are refused before they are queued."""

import json

import jsonschema
import openai
import pydantic
import pytest

from conftest import MODEL
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
