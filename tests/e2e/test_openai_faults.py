"""Faults that public bug reports of vLLM, llama.cpp, TGI, LiteLLM and Ollama describe, tried
against sluice's OpenAI routes (`/v1` and the queue's `/v2/{endpoint}/openai/v1`) with the
official `openai` client and the real model: generations that end inside a multi-byte
character, usage with `n > 1`, the completions route's default `max_tokens`, `usage: null` on
streamed chunks, and cancels that must free the engine (its CPU, not just the job's state)."""

import json
import os
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from conftest import MODEL, get_json, wait_for, worker_pids
# Every engine backend runs these tests (conftest.BACKENDS): one conformance suite.
from conftest import conformance_server as server  # noqa: E402,F401

BASES = ["/v1", f"/v2/{MODEL}/openai/v1"]
EMOJI = "Emoji list: 🍎🍌🍇"
# A prompt the model continues without end (greedy).
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"


@pytest.fixture(params=BASES)
def api(server, request):
    return openai.OpenAI(base_url=server.base + request.param, api_key="unused", max_retries=0, timeout=120)


def joined(chunks, kind):
    """Texts and finish reasons per choice index, and the usage, of a streamed response."""
    texts, reasons, usage = {}, {}, None
    for c in chunks:
        if c.usage is not None:
            usage = c.usage
        for ch in c.choices:
            piece = ch.delta.content if kind == "chat" else ch.text
            texts[ch.index] = texts.get(ch.index, "") + (piece or "")
            if ch.finish_reason is not None:
                assert ch.index not in reasons, "one finish reason per choice"
                reasons[ch.index] = ch.finish_reason
    return texts, reasons, usage


def both_ways(api, kind, **req):
    """The same request non-streamed and streamed (with usage)."""
    create = api.chat.completions.create if kind == "chat" else api.completions.create
    whole = create(model=MODEL, **req)
    chunks = list(create(model=MODEL, stream=True, stream_options={"include_usage": True}, **req))
    return whole, joined(chunks, kind)


def text_of(choice, kind):
    return choice.message.content if kind == "chat" else choice.text


@pytest.mark.parametrize(
    "kind,req",
    [
        ("completion", {"prompt": EMOJI}),
        ("chat", {"messages": [{"role": "user", "content": f"Continue this text: {EMOJI}"}]}),
    ],
)
def test_a_generation_ending_inside_a_character_says_length_and_counts_every_token(api, kind, req):
    for max_tokens in (1, 2, 3, 4):
        whole, (texts, reasons, usage) = both_ways(api, kind, max_tokens=max_tokens, temperature=0, **req)
        choice = whole.choices[0]
        where = f"{kind}, max_tokens {max_tokens}: {choice}"
        assert choice.finish_reason == "length", where
        assert whole.usage.completion_tokens == max_tokens, where
        assert reasons == {0: "length"}, f"the stream ends its choice with a finish reason ({where})"
        assert usage.completion_tokens == max_tokens, where
        assert texts[0] == text_of(choice, kind), "joined deltas equal the non-streamed text"
        assert "\ufffd" not in texts[0], "dangling bytes of a cut character are dropped, not shown"


def test_usage_counts_every_choice(api):
    messages = [{"role": "user", "content": "Count from 1 to 100, comma separated."}]
    whole, (texts, reasons, usage) = both_ways(api, "chat", messages=messages, n=3, max_tokens=12, temperature=0)
    assert [c.finish_reason for c in whole.choices] == ["length"] * 3
    assert whole.usage.completion_tokens == 36 and usage.completion_tokens == 36
    assert reasons == {0: "length", 1: "length", 2: "length"}
    assert [texts[i] for i in range(3)] == [c.message.content for c in whole.choices]
    whole, (_, _, usage) = both_ways(api, "completion", prompt=COUNTING, n=2, max_tokens=8, temperature=0)
    assert whole.usage.completion_tokens == 16 and usage.completion_tokens == 16
    # best_of: 3 candidates generated (and counted, as OpenAI bills them), the best one returned.
    r = api.completions.create(model=MODEL, prompt=COUNTING, best_of=3, n=1, max_tokens=8, temperature=0)
    assert len(r.choices) == 1 and r.usage.completion_tokens == 24


def test_completions_without_max_tokens_stop_at_openais_default_of_16(api):
    r = api.completions.create(model=MODEL, prompt=COUNTING, temperature=0)
    assert (r.usage.completion_tokens, r.choices[0].finish_reason) == (16, "length")
    r = api.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=None)
    assert r.usage.completion_tokens == 16


def test_streamed_chunks_carry_usage_null_when_usage_is_asked(server):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 5,
            "stream": True, "stream_options": {"include_usage": True}}
    req = urllib.request.Request(f"{server.base}/v1/chat/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        events = [json.loads(line[6:]) for line in r.read().decode().splitlines()
                  if line.startswith("data: {")]
    assert all("usage" in e for e in events), "every chunk has the key"
    assert all(e["usage"] is None for e in events[:-1])
    assert events[-1]["usage"]["completion_tokens"] == 5 and events[-1]["choices"] == []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, seconds (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def workers_cpu(server) -> float:
    """CPU seconds used by all of the server's engine workers so far."""
    return sum(cpu_seconds(p) for p in worker_pids(server.port))


def assert_engine_idle_after(server, what):
    """The workers stop using CPU once a cancel reached them (not only the job's state)."""
    time.sleep(1.0)
    before = workers_cpu(server)
    time.sleep(2.0)
    used = workers_cpu(server) - before
    assert used < 0.3, f"after {what} the workers still used {used:.2f} CPU-s in 2 s: the engine kept generating"


def busy_worker(server):
    """Wait until a worker is generating (using CPU)."""
    def busy():
        t = workers_cpu(server)
        time.sleep(0.5)
        return workers_cpu(server) - t > 0.3
    wait_for(busy, 60, "a worker to generate")


def test_a_client_that_gives_up_on_a_non_streamed_completion_frees_the_engine(server):
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0, timeout=3)
    with pytest.raises(openai.APITimeoutError):
        client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=1800, temperature=0)
    assert_engine_idle_after(server, "a non-streamed completion's client left")


def test_a_disconnected_stream_frees_the_engine(server):
    body = {"model": MODEL, "prompt": COUNTING, "max_tokens": 1800, "temperature": 0, "stream": True}
    req = urllib.request.Request(f"{server.base}/v1/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    resp = urllib.request.urlopen(req, timeout=60)
    resp.readline()
    busy_worker(server)
    resp.close()
    assert_engine_idle_after(server, "a streamed completion's client left")


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("how", ["cancel", "execution timeout"])
def test_queue_cancels_and_timeouts_free_the_engine(server, how):
    job_input = {"openai_route": "/v1/completions",
                 "openai_input": {"model": MODEL, "prompt": COUNTING, "max_tokens": 1800, "temperature": 0}}
    body = {"input": job_input}
    if how == "execution timeout":
        body["policy"] = {"executionTimeout": 4000}
    job = post(f"{server.base}/v2/{MODEL}/run", body)["id"]
    busy_worker(server)
    if how == "cancel":
        post(f"{server.base}/v2/{MODEL}/cancel/{job}", {})
    final = {"cancel": "CANCELLED", "execution timeout": "TIMED_OUT"}[how]
    wait_for(lambda: get_json(f"{server.base}/v2/{MODEL}/status/{job}")[1]["status"] == final, 30, final)
    assert_engine_idle_after(server, how)
