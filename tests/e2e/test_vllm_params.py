"""vLLM's extension parameters that load testers and clients send, honoured by every backend:
`ignore_eos`, `min_tokens`, `stop_token_ids`, `include_stop_str_in_output` and
`stream_options.continuous_usage_stats`; the request bodies of `vllm bench serve` and guidellm
replayed as their source writes them; eval-grade completions (prompt forms, `echo` with
`logprobs`, lm-evaluation-harness itself) and vLLM's tokenizer routes."""

import json
import os
import subprocess

import httpx
import pytest

from conftest import MODEL, ROOT
from conftest import conformance_server as server  # noqa: F401
from test_openai import vocab

# A prompt the default model answers in a few tokens and then ends (greedy).
SHORT = [{"role": "user", "content": "Say hello."}]


def backend(request) -> str:
    return request.node.callspec.params["engine_server"]


def stream(base: str, route: str, body: dict) -> list[dict]:
    """The JSON chunks of a streamed request (status 200 asserted)."""
    with httpx.stream("POST", f"{base}{route}", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def chat(base: str, **body) -> dict:
    r = httpx.post(f"{base}/v1/chat/completions", json={"model": MODEL, **body}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_ignore_eos_generates_max_tokens_as_vllm_bench_serve_asks(server):
    # Without it the model ends early, so the test shows the parameter at work.
    natural = chat(server.base, messages=SHORT, max_tokens=48, temperature=0)
    assert natural["choices"][0]["finish_reason"] == "stop", natural
    assert natural["usage"]["completion_tokens"] < 48
    # vllm/benchmarks/lib/endpoint_request_func.py: async_request_openai_chat_completions and
    # async_request_openai_completions, with `--ignore-eos` (on by default for random data).
    chat_body = {
        "model": MODEL, "messages": SHORT, "temperature": 0.0, "max_completion_tokens": 48,
        "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True,
    }
    completion_body = {
        "model": MODEL, "prompt": "Hello", "temperature": 0.0, "repetition_penalty": 1.0,
        "max_tokens": 48, "logprobs": None, "stream": True,
        "stream_options": {"include_usage": True}, "ignore_eos": True,
    }
    for route, body in [("/v1/chat/completions", chat_body), ("/v1/completions", completion_body)]:
        chunks = stream(server.base, route, body)
        assert chunks[-1]["usage"]["completion_tokens"] == 48, (route, chunks[-1])
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finish[-1] == "length", route


def test_guidellm_requests_get_usage_on_every_chunk(server):
    # guidellm's OpenAIHTTPBackend body: stop null, ignore_eos, continuous usage stats.
    body = {
        "model": MODEL, "messages": SHORT, "max_tokens": 12, "max_completion_tokens": 12,
        "stop": None, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    chunks = stream(server.base, "/v1/chat/completions", body)
    with_choices = [c for c in chunks if c["choices"]]
    counts = [c["usage"]["completion_tokens"] for c in with_choices]
    assert all(c["usage"]["prompt_tokens"] > 0 for c in with_choices)
    assert counts == sorted(counts) and counts[-1] <= 12, counts
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    # Without the option, chunks carry `null` as OpenAI's do.
    body["stream_options"] = {"include_usage": True}
    assert all(c["usage"] is None for c in stream(server.base, "/v1/chat/completions", body)[:-1])


def test_min_tokens_keeps_the_end_away(server):
    natural = chat(server.base, messages=SHORT, max_tokens=48, temperature=0)["usage"]
    least = natural["completion_tokens"] + 5
    r = chat(server.base, messages=SHORT, max_tokens=48, temperature=0, min_tokens=least)
    assert r["usage"]["completion_tokens"] >= least, r
    bad = httpx.post(
        f"{server.base}/v1/chat/completions",
        json={"model": MODEL, "messages": SHORT, "max_tokens": 4, "min_tokens": 5},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "min_tokens", bad.text


def test_stop_token_ids_end_the_choice_without_their_text(server, request):
    full = chat(server.base, messages=SHORT, max_tokens=48, temperature=0)
    text = full["choices"][0]["message"]["content"]
    words = text.split()
    assert len(words) >= 3, text
    ids = vocab()
    word = next(w for w in words[1:] if "Ġ" + w in ids)
    stop_id = ids["Ġ" + word]
    cut = chat(server.base, messages=SHORT, max_tokens=48, temperature=0, stop_token_ids=[stop_id])
    choice = cut["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == text[: text.index(" " + word)], (choice, word)
    # vLLM's `stop_reason` names the token (mistral.rs ends on it as on its end-of-sequence
    # token, so there it is left out, as after an end-of-sequence token).
    assert choice.get("stop_reason") == (stop_id if backend(request) == "llamacpp" else None), choice
    assert cut["usage"]["completion_tokens"] < full["usage"]["completion_tokens"]
    if backend(request) == "llamacpp":  # mistral.rs 0.8.1 drops a stop token's text itself
        kept = chat(server.base, messages=SHORT, max_tokens=48, temperature=0,
                    stop_token_ids=[stop_id], include_stop_str_in_output=True)
        assert kept["choices"][0]["message"]["content"] == text[: text.index(" " + word)] + " " + word


def test_include_stop_str_in_output_keeps_the_stop_string(server):
    text = chat(server.base, messages=SHORT, max_tokens=48, temperature=0)["choices"][0]["message"]["content"]
    stop = text.split()[1]
    cut = chat(server.base, messages=SHORT, max_tokens=48, temperature=0, stop=[stop],
               include_stop_str_in_output=True)["choices"][0]
    assert cut["message"]["content"] == text[: text.index(stop) + len(stop)]
    assert (cut["finish_reason"], cut["stop_reason"]) == ("stop", stop)
    # Streamed, the choice's last chunk says it too; an answer that ran out says nothing.
    with httpx.stream("POST", f"{server.base}/v1/chat/completions", timeout=60, json={
            "model": MODEL, "messages": SHORT, "max_tokens": 48, "temperature": 0, "stop": [stop], "stream": True}) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    ends = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [(e["finish_reason"], e.get("stop_reason")) for e in ends] == [("stop", stop)], ends
    assert "stop_reason" not in chat(server.base, messages=SHORT, max_tokens=1)["choices"][0]


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
def test_runpod_sampling_params_take_them_too(server, route):
    form = {"messages": SHORT} if "chat" in route else {"prompt": "Hello"}
    job = {"input": {**form, "sampling_params": {"max_tokens": 20, "temperature": 0, "ignore_eos": True}}}
    r = httpx.post(f"{server.base}/v2/{MODEL}/runsync", json=job, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "COMPLETED", out
    usage = out["output"][-1]["usage"]
    assert usage["output"] == 20, out


def test_tokenize_and_detokenize_as_vllm_answers(default_server):
    base = default_server.base
    post = lambda route, body: httpx.post(f"{base}{route}", json=body, timeout=60)  # noqa: E731
    r = post("/tokenize", {"model": MODEL, "prompt": "Hello world", "return_token_strs": True}).json()
    ids = vocab()
    assert r["tokens"] == [ids["Hello"], ids["Ġworld"]] and r["count"] == 2, r
    assert r["token_strs"] == ["Hello", "Ġworld"] and r["max_model_len"] >= 2048
    assert post("/detokenize", {"model": MODEL, "tokens": r["tokens"]}).json() == {"prompt": "Hello world"}
    # Messages are rendered as the engine renders them: the count is the chat's prompt_tokens.
    msgs = {"messages": SHORT}  # no model: the only one served
    counted = post("/tokenize", msgs).json()
    usage = chat(base, messages=SHORT, max_tokens=1)["usage"]
    assert counted["count"] == usage["prompt_tokens"], (counted, usage)
    assert counted["token_strs"] is None
    bare = post("/tokenize", {**msgs, "add_generation_prompt": False}).json()
    assert bare["count"] < counted["count"]
    for route, body, status, param in [
        ("/tokenize", {"prompt": "x", "messages": SHORT}, 400, "prompt"),
        ("/tokenize", {"prompt": "x", "truncate": 1}, 400, None),
        ("/tokenize", {"model": "nope", "prompt": "x"}, 404, "model"),
        ("/detokenize", {"tokens": [10**9]}, 400, "tokens"),
        ("/detokenize", {"tokens": "x"}, 400, None),
    ]:
        bad = post(route, body)
        assert bad.status_code == status and bad.json()["error"]["param"] == param, (body, bad.text)


def completion(base: str, **body) -> dict:
    r = httpx.post(f"{base}/v1/completions", json={"model": MODEL, "temperature": 0, **body}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_prompts_as_lists_and_token_ids_as_openai_numbers_them(server, request):
    base = server.base
    one = {p: completion(base, prompt=p, max_tokens=6) for p in ["Once upon", "The sky is"]}
    both = completion(base, prompt=["Once upon", "The sky is"], n=2, max_tokens=6)
    assert [c["index"] for c in both["choices"]] == [0, 1, 2, 3]
    assert both["usage"]["prompt_tokens"] == sum(r["usage"]["prompt_tokens"] for r in one.values())
    # The prompts run at once, as a batch. mistral.rs 0.8.1's greedy text changes when
    # sequences of different lengths share its batch (seen here: "the scene of the past," alone,
    # "the scene,, a-" batched), so only llama.cpp's must equal the prompts run alone.
    if backend(request) == "llamacpp":
        texts = [c["text"] for c in both["choices"]]
        alone = [one[p]["choices"][0]["text"] for p in ["Once upon", "The sky is"]]
        assert texts == [alone[0]] * 2 + [alone[1]] * 2
        assert both["usage"]["completion_tokens"] == 2 * sum(r["usage"]["completion_tokens"] for r in one.values())
    # Token ids (lm-evaluation-harness' default form) are the same prompt as their text.
    ids = httpx.post(f"{base}/tokenize", json={"model": MODEL, "prompt": "The sky is"}).json()["tokens"]
    as_ids = completion(base, prompt=ids, max_tokens=6, echo=True)
    assert as_ids["choices"][0]["text"] == "The sky is" + one["The sky is"]["choices"][0]["text"]
    lists = completion(base, prompt=[ids, ids[:1]], max_tokens=2)
    assert [c["index"] for c in lists["choices"]] == [0, 1]
    # Streamed: one id, every prompt's choices, one usage chunk at the end.
    chunks = stream(base, "/v1/completions", {"model": MODEL, "prompt": ["Once upon", "The sky is"],
                    "max_tokens": 6, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    assert len({c["id"] for c in chunks}) == 1
    streamed = ["", ""]
    for c in chunks[:-1]:
        assert c["usage"] is None
        for choice in c["choices"]:
            streamed[choice["index"]] += choice["text"]
    # Streamed prompts run one after the other: alone, so every backend repeats its text.
    assert streamed == [one[p]["choices"][0]["text"] for p in ["Once upon", "The sky is"]]
    assert chunks[-1]["usage"]["prompt_tokens"] == both["usage"]["prompt_tokens"]
    # An id outside the vocabulary is the client's error, found before the job is queued.
    bad = httpx.post(f"{base}/v1/completions", json={"model": MODEL, "prompt": [1, 10**8]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt", bad.text
    # So is a prompt of no tokens, streamed or not (once it came as an error event after 200).
    for body in [{"prompt": ""}, {"prompt": ["a", ""], "stream": True, "echo": True}]:
        bad = httpx.post(f"{base}/v1/completions", json={"model": MODEL, **body})
        assert bad.status_code == 400 and "empty" in bad.json()["error"]["message"], bad.text


def test_guided_choice_and_regex_hold_on_every_backend(server):
    import re
    ask = [{"role": "user", "content": "Is the sky green? Answer yes or no."}]
    for stream_it in [False, True]:
        body = {"model": MODEL, "messages": ask, "max_tokens": 10, "temperature": 1.0,
                "guided_choice": ["yes", "no", "maybe (unsure)"], "stream": stream_it}
        if stream_it:
            text = "".join(c["choices"][0]["delta"].get("content") or ""
                           for c in stream(server.base, "/v1/chat/completions", body) if c["choices"])
        else:
            text = chat(server.base, **{k: v for k, v in body.items() if k != "model"})["choices"][0]["message"]["content"]
        assert text in ["yes", "no", "maybe (unsure)"], text
    # vLLM's newer `structured_outputs` object means the same.
    r = completion(server.base, prompt="The sky is", max_tokens=8, temperature=1.0,
                   structured_outputs={"choice": ["blue", "green"]})
    assert r["choices"][0]["text"] in ["blue", "green"], r
    # (No leading space: mistral.rs strips a completion's leading whitespace.)
    r = completion(server.base, prompt="Call me at ", max_tokens=20, temperature=1.0,
                   guided_regex=r"[0-9]{3}-[0-9]{4}")
    assert re.fullmatch(r"[0-9]{3}-[0-9]{4}", r["choices"][0]["text"]), r
    assert r["choices"][0]["finish_reason"] == "stop"
    for extra, param in [
        ({"guided_regex": "(", "max_tokens": 4}, "guided_regex"),
        ({"guided_regex": r"\bx", "max_tokens": 4}, "guided_regex"),
        ({"guided_choice": [], "max_tokens": 4}, "guided_choice"),
        ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_choice"),
        ({"guided_choice": ["a"], "response_format": {"type": "json_object"}}, "guided_regex"),
    ]:
        bad = httpx.post(f"{server.base}/v1/completions", json={"model": MODEL, "prompt": "x", **extra})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, (extra, bad.text)


GREETING = 'start: greeting " " name\ngreeting: "hello" | "hi"\nname: /[a-z]{2,8}/\n'


def test_guided_grammar_in_lark_holds_on_every_backend(server):
    import re
    # Sampled, so the grammar, not the model's habits, shapes the text.
    r = completion(server.base, prompt="Say hello to someone:", max_tokens=20, temperature=1.0,
                   guided_grammar=GREETING)
    assert re.fullmatch("(hello|hi) [a-z]{2,8}", r["choices"][0]["text"]), r
    assert r["choices"][0]["finish_reason"] == "stop"
    # vLLM's newer spelling, streamed, and in a worker-vllm job's `sampling_params`.
    body = {"model": MODEL, "prompt": "Greet:", "max_tokens": 20, "temperature": 1.0,
            "structured_outputs": {"grammar": GREETING}, "stream": True}
    text = "".join(c["choices"][0]["text"] for c in stream(server.base, "/v1/completions", body) if c["choices"])
    assert re.fullmatch("(hello|hi) [a-z]{2,8}", text), text
    job = httpx.post(f"{server.base}/v2/{MODEL}/runsync", timeout=120, json={"input": {
        "prompt": "Greet:", "sampling_params": {"max_tokens": 20, "guided_grammar": GREETING}}})
    assert job.status_code == 200 and job.json()["status"] == "COMPLETED", job.text
    assert re.fullmatch("(hello|hi) [a-z]{2,8}", job.json()["output"][0]["choices"][0]["tokens"][0]), job.text
    # GBNF (xgrammar's syntax) is not Lark: refused before the job is queued, as a grammar
    # together with a pattern is.
    for extra in [{"guided_grammar": 'root ::= "yes" | "no"'},
                  {"guided_grammar": GREETING, "guided_regex": "a"}]:
        bad = httpx.post(f"{server.base}/v1/completions", json={"model": MODEL, "prompt": "x", **extra})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "guided_grammar", (extra, bad.text)


def test_bad_words_are_never_generated_on_every_backend(server):
    for prompt, word in [("The capital of France is", "Paris"), ("My favourite colour is", "blue")]:
        natural = completion(server.base, prompt=prompt, max_tokens=12)["choices"][0]["text"]
        assert word in natural, natural  # the model says it unless kept from it
        kept = completion(server.base, prompt=prompt, max_tokens=12, bad_words=[word, "New Haven"])
        assert word not in kept["choices"][0]["text"], kept
    job = httpx.post(f"{server.base}/v2/{MODEL}/runsync", timeout=120, json={"input": {
        "prompt": "The capital of France is",
        "sampling_params": {"max_tokens": 12, "temperature": 0, "bad_words": ["Paris"]}}})
    assert job.status_code == 200 and job.json()["status"] == "COMPLETED", job.text
    assert "Paris" not in job.json()["output"][0]["choices"][0]["tokens"][0], job.text
    bad = httpx.post(f"{server.base}/v1/completions", json={"model": MODEL, "prompt": "x", "bad_words": [" "]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "bad_words", bad.text


def test_prompt_logprobs_score_the_prompt_as_echo_does(server, request):
    body = {"model": MODEL, "prompt": "The sky is blue", "max_tokens": 2, "prompt_logprobs": 2}
    r = httpx.post(f"{server.base}/v1/completions", json=body, timeout=120)
    if backend(request) != "llamacpp":
        # mistral.rs 0.8.1 computes no prompt logits: a 400 naming the parameter and backend.
        assert r.status_code == 400 and "prompt_logprobs" in r.json()["error"]["message"], r.text
        return
    assert r.status_code == 200, r.text
    scores = r.json()["choices"][0]["prompt_logprobs"]
    assert len(scores) == r.json()["usage"]["prompt_tokens"] and scores[0] is None, scores
    # The same numbers as the echoed prompt's, which lm-eval reads (one computation).
    echo = completion(server.base, prompt="The sky is blue", max_tokens=0, echo=True, logprobs=2)
    echoed = echo["choices"][0]["logprobs"]
    for entry, token, lp in zip(scores[1:], echoed["tokens"][1:], echoed["token_logprobs"][1:]):
        mine = [e for e in entry.values() if e["decoded_token"] == token]
        assert mine and abs(mine[0]["logprob"] - lp) < 1e-4 and mine[0]["rank"] >= 1, (entry, token, lp)
        ranks = sorted(e["rank"] for e in entry.values())
        assert ranks[:2] == [1, 2] and 2 <= len(entry) <= 3, entry
    chat = httpx.post(f"{server.base}/v1/chat/completions", timeout=120, json={
        "model": MODEL, "messages": SHORT, "max_tokens": 2, "prompt_logprobs": 0}).json()
    assert len(chat["prompt_logprobs"]) == chat["usage"]["prompt_tokens"], chat
    assert all(len(e) == 1 for e in chat["prompt_logprobs"][1:]), "0 alternatives: the token alone"
    for extra in [{"stream": True}, {"best_of": 2}, {"prompt_logprobs": 21}]:
        bad = httpx.post(f"{server.base}/v1/completions", json={**body, **extra})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt_logprobs", bad.text


def test_allowed_token_ids_are_all_that_is_drawn(server):
    import re
    ids = vocab()
    r = completion(server.base, prompt="Answer:", max_tokens=5, temperature=1.0,
                   allowed_token_ids=[ids["yes"], ids["no"]])
    assert re.fullmatch("(yes|no)+", r["choices"][0]["text"]), r
    assert r["usage"]["completion_tokens"] == 5, "no end-of-sequence token was allowed"
    for ids_given in [[], [10**8]]:
        bad = httpx.post(f"{server.base}/v1/completions",
                         json={"model": MODEL, "prompt": "x", "allowed_token_ids": ids_given})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "allowed_token_ids", bad.text


def test_skip_special_tokens_false_writes_them(server, request):
    end = vocab()["<|im_end|>"]
    body = dict(prompt="Hi", max_tokens=3, ignore_eos=True, allowed_token_ids=[end])
    assert completion(server.base, **body)["choices"][0]["text"] == ""
    r = httpx.post(f"{server.base}/v1/completions",
                   json={"model": MODEL, "temperature": 0, "skip_special_tokens": False, **body}, timeout=60)
    if backend(request) == "llamacpp":
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == "<|im_end|>" * 3, r.text
    else:  # mistral.rs 0.8.1 decodes without special tokens, with no option
        assert r.status_code == 400 and "skip_special_tokens" in r.json()["error"]["message"], r.text


def test_chat_template_options(server, request):
    msgs = [{"role": "user", "content": "Write the word hello."}, {"role": "assistant", "content": "Hel"}]
    post = lambda **kw: httpx.post(f"{server.base}/v1/chat/completions",  # noqa: E731
                                   json={"model": MODEL, "messages": msgs, "max_tokens": 3, "temperature": 0, **kw},
                                   timeout=60)
    options = [{"add_generation_prompt": False},
               {"add_generation_prompt": False, "continue_final_message": True},
               {"chat_template_kwargs": {"enable_thinking": False}}]
    if backend(request) == "mistralrs":  # mistral.rs renders chats itself, without options
        for kw in options:
            r = post(**kw)
            assert r.status_code == 400 and "mistral.rs" in r.json()["error"]["message"], r.text
        return
    default = post().json()["usage"]["prompt_tokens"]
    bare, cont, kwargs = [post(**kw).json()["usage"]["prompt_tokens"] for kw in options]
    # No new assistant turn; continuing also leaves the last message's end-of-turn out.
    assert cont < bare < default, (cont, bare, default)
    assert kwargs == default, "the default template has no such variable"
    bad = post(continue_final_message=True)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "continue_final_message", bad.text


def test_truncate_prompt_tokens_keeps_the_last_ones(server, request):
    body = {"model": MODEL, "prompt": "word " * 3000, "max_tokens": 2, "temperature": 0,
            "truncate_prompt_tokens": 10}
    r = httpx.post(f"{server.base}/v1/completions", json=body, timeout=60)
    if backend(request) == "mistralrs":  # mistral.rs tokenizes prompts itself
        assert r.status_code == 400 and "truncate_prompt_tokens" in r.json()["error"]["message"], r.text
        return
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == 10, "over the context, yet served: only 10 are used"


def test_echo_with_logprobs_scores_the_prompt_as_lm_eval_reads_it(server, request):
    """lm-evaluation-harness' loglikelihood request (`local-completions`: token ids, `echo`,
    `logprobs: 1`, `max_tokens: 1`), read as lm-eval reads it. Each prompt token's score must
    equal the same number computed another way: the prompt up to it, one token generated with
    only that token allowed (raw log probabilities come before the mask, as vLLM's)."""
    base = server.base
    ids = httpx.post(f"{base}/tokenize", json={"model": MODEL, "prompt": "The capital of France is Paris"}).json()["tokens"]
    body = {"model": MODEL, "prompt": [ids], "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True}
    r = httpx.post(f"{base}/v1/completions", json=body, timeout=120)
    if backend(request) == "mistralrs":
        assert r.status_code == 400 and "mistral.rs" in r.json()["error"]["message"], r.text
        return
    assert r.status_code == 200, r.text
    lp = r.json()["choices"][0]["logprobs"]
    assert len(lp["token_logprobs"]) == len(ids) + 1 == len(lp["tokens"]) == len(lp["text_offset"])
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert "".join(lp["tokens"][: len(ids)]) == "The capital of France is Paris"
    # lm-eval: the continuation's tokens are [ctxlen:-1], greedy if each is its position's top.
    ctxlen = len(ids) - 1
    score = sum(lp["token_logprobs"][ctxlen:-1])
    is_greedy = all(t == max(top.values()) for t, top in zip(lp["token_logprobs"][ctxlen:-1], lp["top_logprobs"][ctxlen:-1]))
    assert score < 0 and isinstance(is_greedy, bool)
    for k in [1, len(ids) // 2, len(ids) - 1]:
        one = completion(base, prompt=ids[:k], max_tokens=1, logprobs=1, allowed_token_ids=[ids[k]])
        alone = one["choices"][0]["logprobs"]["token_logprobs"][0]
        assert abs(alone - lp["token_logprobs"][k]) < 2e-3, (k, alone, lp["token_logprobs"][k])
    # `max_tokens: 0` scores without generating; streamed, the echo chunk carries the scores.
    zero = completion(base, prompt=ids, max_tokens=0, logprobs=0, echo=True)["choices"][0]
    assert zero["text"] == "The capital of France is Paris" and zero["finish_reason"] == "length"
    assert zero["logprobs"]["token_logprobs"] == lp["token_logprobs"][: len(ids)]
    chunks = stream(base, "/v1/completions", {**body, "prompt": "The capital of France is Paris", "stream": True})
    assert chunks[0]["choices"][0]["text"] == "The capital of France is Paris"
    assert chunks[0]["choices"][0]["logprobs"]["token_logprobs"] == lp["token_logprobs"][: len(ids)]
    assert "".join(c["choices"][0]["text"] for c in chunks) == r.json()["choices"][0]["text"]


LM_EVAL_TASK = """task: sluice_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""
LM_EVAL_DOCS = [
    {"question": "What color is the sky on a clear day?", "choices": ["blue", "green", "red"], "answer": 0},
    {"question": "How many legs does a dog have?", "choices": ["two", "four", "six"], "answer": 1},
    {"question": "What is the capital of France?", "choices": ["Berlin", "Madrid", "Paris"], "answer": 2},
]


def test_lm_eval_loglikelihood_scores_equal_the_engine_computing_them_another_way(default_server, tmp_path):
    """lm-evaluation-harness itself (`local-completions`, its remote tokenizer on vLLM's
    `/tokenizer_info` and `/tokenize`, token-id prompts, `echo` + `logprobs`) over a small local
    multiple-choice task. Each choice's score must equal the sum, over the choice's tokens, of
    each token generated alone after the tokens before it (only it allowed)."""
    base = default_server.base
    info = httpx.get(f"{base}/tokenizer_info").json()
    assert info["eos_token"] == "<|im_end|>" and "im_start" in info["chat_template"], info
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in LM_EVAL_DOCS))
    (tmp_path / "sluice_mc.yaml").write_text(LM_EVAL_TASK.format(data=tmp_path / "mc.jsonl"))
    args = f"model={MODEL},base_url={base}/v1/completions,tokenizer_backend=remote,tokenized_requests=True"
    out = subprocess.run(
        [str(ROOT / ".venv/bin/lm_eval"), "run", "--model", "local-completions", "--model_args", args,
         "--tasks", "sluice_mc", "--include_path", str(tmp_path), "--log_samples", "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-4000:]
    [samples] = list((tmp_path / "out").rglob("samples_sluice_mc_*.jsonl"))
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(lines) == len(LM_EVAL_DOCS)

    def tokens(text):
        return httpx.post(f"{base}/tokenize", json={"prompt": text, "add_special_tokens": False}).json()["tokens"]

    for line in lines:
        for i, (score, _greedy) in enumerate(line["filtered_resps"]):
            args = line["arguments"][f"gen_args_{i}"]
            context, whole = tokens(args["arg_0"]), tokens(args["arg_0"] + args["arg_1"])
            assert whole[: len(context)] == context
            alone = 0.0
            for k in range(len(context), len(whole)):
                one = completion(base, prompt=whole[:k], max_tokens=1, logprobs=1, allowed_token_ids=[whole[k]])
                alone += one["choices"][0]["logprobs"]["token_logprobs"][0]
            assert abs(float(score) - alone) < 2e-3, (args, score, alone)
