"""The OpenAI API of `sluice serve`, driven by the official `openai` package, against the real
SmolLM2-135M-Instruct running in mistral.rs. Slow-ish (real generation on CPU): the whole file
takes about a minute on 2 cores."""

import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

from conftest import MODEL, get_json
# Every engine backend runs these tests (conftest.BACKENDS): one conformance suite.
from conftest import conformance_server as server  # noqa: E402,F401

HELLO = [{"role": "user", "content": "Name three colors."}]


def raw_post(url: str, body: bytes, timeout: float = 30):
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def assert_openai_error(body, status_type="invalid_request_error"):
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["message"] and err["type"] == status_type


def test_models_list(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL]


def test_chat_non_streamed(client):
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=40, temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content.strip()
    u = r.usage
    assert u.prompt_tokens > 5 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert r.choices[0].finish_reason in ("stop", "length")


def test_an_answer_sent_back_as_history_is_taken_with_its_null_fields(client):
    # What agent loops do: the SDK's dump of the answer's message writes `refusal`, `audio`,
    # `function_call`, `tool_calls`, `annotations` as null, which count as absent.
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    answer = r.choices[0].message.model_dump()
    assert answer["refusal"] is None and "function_call" in answer, answer
    again = client.chat.completions.create(
        model=MODEL, messages=[*HELLO, answer, {"role": "user", "content": "Again."}], max_tokens=8)
    assert again.usage.prompt_tokens > r.usage.prompt_tokens + 2


def test_chat_stream_equals_non_streamed(client):
    args = dict(model=MODEL, messages=HELLO, max_tokens=32, temperature=0, seed=7)
    whole = client.chat.completions.create(**args)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args))
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([t for t in texts if t]) >= 3, "expected several content chunks"
    assert "".join(texts) == whole.choices[0].message.content
    # The usage chunk comes last, with no choices, and agrees with the non-streamed usage.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_without_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5, temperature=0, stream=True))
    assert chunks and all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_completions(client):
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text.strip()
    assert r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    streamed = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == r.choices[0].text


def test_echo_puts_the_prompt_first_streamed_and_not(client):
    args = dict(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0, n=2)
    plain = client.completions.create(**args).choices[0].text
    r = client.completions.create(echo=True, **args)
    assert [c.text for c in r.choices] == ["The capital of France is" + plain] * 2
    streamed = ["", ""]
    for chunk in client.completions.create(echo=True, stream=True, **args):
        for c in chunk.choices:
            streamed[c.index] += c.text
    assert streamed == [c.text for c in r.choices]


def vocab() -> dict:
    """The served model's vocabulary (token text -> id), from the tokenizer the pull wrote."""
    home = Path(os.environ.get("SLUICE_HOME", Path.home() / ".cache/sluice"))
    tok = json.loads((home / "models" / MODEL / "tokenizer" / "tokenizer.json").read_text())
    return tok["model"]["vocab"]


def test_logit_bias_changes_what_is_sampled(client):
    args = dict(model=MODEL, messages=HELLO, max_tokens=1, temperature=0)
    first = client.chat.completions.create(**args).choices[0].message.content
    ids = vocab()
    assert first in ids, first
    # -100 on the greedy choice: something else comes first.
    banned = client.chat.completions.create(logit_bias={str(ids[first]): -100}, **args)
    assert banned.choices[0].message.content != first
    # +100 on an unlikely token: it comes first.
    forced = client.chat.completions.create(logit_bias={str(ids["Blue"]): 100}, **args)
    assert forced.choices[0].message.content == "Blue"


def test_stop_sequence_is_honoured(client):
    args = dict(model=MODEL, messages=HELLO, max_tokens=40, temperature=0)
    full = client.chat.completions.create(**args).choices[0].message.content
    words = full.split()
    assert len(words) >= 4, full
    stop = words[len(words) // 2]
    cut = client.chat.completions.create(stop=[stop], **args).choices[0]
    assert stop not in cut.message.content
    assert full.startswith(cut.message.content)
    assert cut.finish_reason == "stop"


def test_max_tokens_one_gives_exactly_one_token(client):
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1, temperature=0)
    assert r.usage.completion_tokens == 1
    assert r.choices[0].finish_reason == "length"
    c = client.completions.create(model=MODEL, prompt="Hello", max_tokens=1, temperature=0)
    assert c.usage.completion_tokens == 1


def test_n_choices(client):
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0, n=2)
    assert [c.index for c in r.choices] == [0, 1]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert e.value.status_code == 404
    assert e.value.body["code"] == "model_not_found"


def test_malformed_json_is_400(server):
    status, body = raw_post(f"{server.base}/v1/chat/completions", b'{"model": "x", "messages": [')
    assert status == 400
    assert_openai_error(body)


def test_unsupported_parameter_is_named(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=MODEL, messages=HELLO, functions=[{"name": "f", "parameters": {}}]
        )
    assert e.value.body["param"] == "functions"


def test_a_seed_repeats_a_sampled_answer(client):
    # Sampled, not greedy: each request draws from its own generator, seeded by `seed`.
    # A request running alone repeats exactly; sequences batched with others (`n` > 1 on
    # mistral.rs) may not, as in vLLM: the logits' last bits depend on the batch.
    args = dict(model=MODEL, messages=HELLO, max_tokens=16, temperature=1.0, seed=11)
    a, b = (client.chat.completions.create(**args).choices[0].message.content for _ in range(2))
    assert a == b
    two = client.chat.completions.create(**args, n=2)
    assert two.choices[0].message.content != two.choices[1].message.content, "choice i draws from seed + i"


def test_prompt_over_context_is_rejected(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello " * 9000}])
    assert e.value.body["code"] == "context_length_exceeded"
    assert "2048" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="hi", max_tokens=9000)
    assert e.value.body["code"] == "context_length_exceeded"


def test_body_over_limit_is_413(server):
    body = json.dumps({"model": MODEL, "prompt": "x" * (11 * 1024 * 1024)}).encode()
    status, resp = raw_post(f"{server.base}/v1/completions", body)
    assert status == 413
    assert_openai_error(resp)


def test_eight_concurrent_streams(client):
    results, errors = {}, []

    def one(i):
        try:
            msgs = [{"role": "user", "content": f"Count from {i} to {i + 5}."}]
            stream = client.chat.completions.create(
                model=MODEL, messages=msgs, max_tokens=24, temperature=0, stream=True,
                stream_options={"include_usage": True},
            )
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            results[i] = (text, chunks[-1].usage, {c.id for c in chunks})
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert sorted(results) == list(range(8))
    ids = set()
    for text, usage, chunk_ids in results.values():
        assert text.strip()
        assert usage.completion_tokens > 0
        assert len(chunk_ids) == 1
        ids |= chunk_ids
    assert len(ids) == 8, "each request is its own job"


def test_client_disconnect_cancels_the_job(server):
    body = json.dumps(
        {"model": MODEL, "messages": HELLO, "max_tokens": 1800, "temperature": 0, "stream": True}
    ).encode()
    req = urllib.request.Request(
        f"{server.base}/v1/chat/completions", data=body, headers={"content-type": "application/json"}
    )
    resp = urllib.request.urlopen(req, timeout=30)
    job = resp.headers["x-sluice-job-id"]
    assert job
    resp.readline()  # the first event arrives: the job is running
    resp.close()
    deadline = time.time() + 30
    status = None
    while time.time() < deadline:
        _, view = get_json(f"{server.base}/v2/{MODEL}/status/{job}")
        status = view["status"]
        if status == "CANCELLED":
            break
        time.sleep(0.2)
    assert status == "CANCELLED"
