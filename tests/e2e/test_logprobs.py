"""Log probabilities through the official `openai` client: chat's `logprobs` + `top_logprobs`
and completions' `logprobs`, streamed and not, on `/v1` and on `/v2/{endpoint}/openai/v1`. The
token strings concatenate to the text; greedy decoding picks the most likely token."""

import math

import openai
import pytest

from conftest import MODEL
# Every engine backend runs these tests (conftest.BACKENDS): one conformance suite.
from conftest import conformance_server as server  # noqa: E402,F401

BASES = ["/v1", f"/v2/{MODEL}/openai/v1"]
ASK = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(params=BASES)
def client(server, request):
    return openai.OpenAI(base_url=server.base + request.param, api_key="unused", max_retries=0, timeout=120)


def check_entries(entries, text, top):
    assert "".join(e.token for e in entries) == text
    for e in entries:
        assert e.logprob <= 0 and math.isfinite(e.logprob), e
        assert len(e.top_logprobs) == top, e
        alts = [t.logprob for t in e.top_logprobs]
        assert alts == sorted(alts, reverse=True), e
        if top:
            # Greedy: the chosen token is the most likely one.
            assert e.logprob == pytest.approx(alts[0], abs=1e-3), e


def test_chat_logprobs_streamed_and_not_agree(client):
    kw = dict(model=MODEL, messages=ASK, max_tokens=24, temperature=0, logprobs=True, top_logprobs=3)
    r = client.chat.completions.create(**kw)
    text = r.choices[0].message.content
    check_entries(r.choices[0].logprobs.content, text, 3)
    streamed, entries = "", []
    for chunk in client.chat.completions.create(stream=True, **kw):
        for c in chunk.choices:
            streamed += c.delta.content or ""
            entries += c.logprobs.content if c.logprobs else []
    assert streamed == text
    check_entries(entries, text, 3)
    assert [e.token for e in entries] == [e.token for e in r.choices[0].logprobs.content]


def test_chat_without_alternatives_and_with_a_stop(client):
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=24, temperature=0, logprobs=True, stop=[","])
    check_entries(r.choices[0].logprobs.content, r.choices[0].message.content, 0)
    plain = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, temperature=0)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs(client):
    kw = dict(model=MODEL, prompt="The sky is", max_tokens=12, temperature=0, logprobs=2)
    r = client.completions.create(**kw)
    lp, text = r.choices[0].logprobs, r.choices[0].text
    assert "".join(lp.tokens) == text
    # Offsets count characters, as OpenAI's and vLLM's.
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    assert all(len(alts) <= 2 for alts in lp.top_logprobs)
    streamed = []
    for chunk in client.completions.create(stream=True, **kw):
        for c in chunk.choices:
            streamed += c.logprobs.tokens if c.logprobs else []
    assert streamed == lp.tokens


def test_sampled_choices_and_non_ascii_text(client):
    """Sampled (not greedy) choices, n=2, streamed: each choice's entries concatenate to its
    text, including characters split across tokens, and the probabilities are a distribution."""
    ask = [{"role": "user", "content": "Write the French words café, crème and été, then an emoji."}]
    kw = dict(model=MODEL, messages=ask, max_tokens=40, temperature=1.0, n=2, logprobs=True, top_logprobs=20)
    texts, entries = {}, {}
    for chunk in client.chat.completions.create(stream=True, **kw):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            entries.setdefault(c.index, []).extend(c.logprobs.content if c.logprobs else [])
    assert sorted(texts) == [0, 1]
    for i in texts:
        assert "".join(e.token for e in entries[i]) == texts[i]
        for e in entries[i]:
            assert bytes(e.bytes) == e.token.encode()
            assert sum(math.exp(t.logprob) for t in e.top_logprobs) <= 1.0001
            # Sampled tokens are not always the most likely, but never above it.
            assert e.logprob <= e.top_logprobs[0].logprob + 1e-4
    r = client.chat.completions.create(**{**kw, "n": 1, "temperature": 0})
    text = r.choices[0].message.content
    assert "".join(e.token for e in r.choices[0].logprobs.content) == text
    assert any(ord(ch) > 127 for ch in text), text


def test_bad_logprob_requests_are_refused(client):
    for kw, param in [
        (dict(top_logprobs=2), "top_logprobs"),
        (dict(logprobs=True, top_logprobs=21), "top_logprobs"),
    ]:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4, **kw)
        assert e.value.body["param"] == param, e.value.body
    # (`echo` with `logprobs` scores the prompt: test_vllm_params.py.)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="x", max_tokens=4, logprobs=2, best_of=2)
    assert e.value.body["param"] == "logprobs", e.value.body
