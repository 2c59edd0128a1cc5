"""Security: no open server by accident, keys with scopes and limits (shared by gateways on one
Redis), tenant isolation of jobs, webhooks that cannot reach inside, and randomly mutated
request bodies that never get a 5xx."""

import json
import os
import random
import subprocess
import time

import httpx
import pytest

from conftest import MODEL, ROOT, Server, config_with, free_port, gateway_config, sluice_bin, wait_for
from test_autoscaling import redis_url  # noqa: F401 (a fixture)

KEYS = """
[[gateway.keys]]
name = "team-a"
key = "sk-a"
endpoints = ["{model}"]
requests_per_minute = 3

[[gateway.keys]]
name = "team-b"
key_sha256 = "{sha_b}"

[[gateway.keys]]
name = "nobody"
key = "sk-none"
endpoints = []
requests_per_minute = 1

[[gateway.keys]]
name = "both"
key = "sk-both"
requests_per_minute = 2
tokens_per_minute = 120

[[gateway.keys]]
name = "tokens"
key = "sk-t"
tokens_per_minute = 60

[[gateway.keys]]
name = "one-at-a-time"
key = "sk-1"
max_concurrent = 1

[[gateway.keys]]
name = "ops"
key_env = "SLUICE_TEST_ADMIN_KEY"
admin = true
"""


def keyed_config(tmp_path):
    import hashlib

    path = config_with(tmp_path)
    sha_b = hashlib.sha256(b"sk-b").hexdigest()
    path.write_text(path.read_text() + KEYS.format(model=MODEL, sha_b=sha_b))
    return path


def auth(key):
    return {"authorization": f"Bearer {key}"}


def run(http, base, key, **extra):
    body = {"input": {"openai_route": "/v1/completions", "openai_input": {"model": MODEL, "prompt": "hi", "max_tokens": 1}}}
    body.update(extra)
    return http.post(f"{base}/v2/{MODEL}/run", json=body, headers=auth(key))


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keyed")
    os.environ["SLUICE_TEST_ADMIN_KEY"] = "sk-ops"
    s = Server(tmp, "--config", str(keyed_config(tmp))).wait_ready()
    yield s
    s.stop()


def test_an_open_address_needs_keys_or_a_flag_that_says_insecure(tmp_path):
    port = free_port()
    cmd = [sluice_bin(), "serve", "--host", "0.0.0.0", "--port", str(port)]
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert refused.returncode != 0
    assert "without client keys" in refused.stderr and "--insecure-no-auth" in refused.stderr
    s = Server(tmp_path, "--host", "0.0.0.0", "--insecure-no-auth").wait_ready()
    try:
        assert "WARNING" in s.log_text() and "no client keys" in s.log_text()
    finally:
        s.stop()


def test_keys_scopes_and_request_limits(keyed):
    base = keyed.base
    with httpx.Client(timeout=60) as http:
        assert http.get(f"{base}/v1/models").status_code == 401
        assert http.get(f"{base}/v1/models", headers=auth("sk-wrong")).status_code == 401
        r = http.post(f"{base}/v1/completions", headers=auth("sk-wrong"), json={"model": MODEL, "prompt": "hi"})
        assert r.status_code == 401 and r.headers["connection"] == "close"
        # Out of scope: as unknown as a missing endpoint.
        assert http.get(f"{base}/v1/models", headers=auth("sk-none")).json()["data"] == []
        r = run(http, base, "sk-none")
        assert r.status_code == 404 and "error" in r.json()
        # Scope before quota: a model the key may not use is a 404 that spends nothing, however
        # often it is asked for (its one request a minute stays unspent).
        for _ in range(3):
            r = http.post(f"{base}/v1/completions", headers=auth("sk-none"), json={"model": MODEL, "prompt": "hi", "max_tokens": 1})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
            assert r.headers["x-ratelimit-remaining-requests"] == "1"
        # team-a: 3 requests a minute, each answer says how many are left.
        left = []
        for _ in range(3):
            r = run(http, base, "sk-a")
            assert r.status_code == 200, r.text
            assert r.headers["x-ratelimit-limit-requests"] == "3"
            left.append(int(r.headers["x-ratelimit-remaining-requests"]))
        assert left == [2, 1, 0]
        r = run(http, base, "sk-a")
        assert r.status_code == 429 and "error" in r.json()
        wait = int(r.headers["retry-after"])
        assert wait >= 1 and f"try again in {wait}s" in r.json()["error"], "the message and the header agree"
        assert r.headers["x-ratelimit-remaining-requests"] == "0", "a 429 carries OpenAI's headers too"
        r = http.post(f"{base}/v1/completions", headers=auth("sk-a"), json={"model": MODEL, "prompt": "hi", "max_tokens": 1})
        assert r.status_code == 429
        err = r.json()["error"]
        assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded") and "team-a" in err["message"]
        # Another key is not affected.
        assert run(http, base, "sk-b").status_code == 200


def test_anthropic_clients_send_their_key_as_x_api_key(keyed):
    body = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=60) as http:
        missing = http.post(f"{keyed.base}/v1/messages", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error", missing.text
        ok = http.post(f"{keyed.base}/v1/messages", json=body, headers={"x-api-key": "sk-b"})
        assert ok.status_code == 200 and ok.json()["type"] == "message", ok.text
        scoped = http.post(f"{keyed.base}/v1/messages", json=body, headers={"x-api-key": "sk-none"})
        assert scoped.status_code == 404 and scoped.json()["error"]["type"] == "not_found_error", scoped.text


def test_a_key_sees_only_its_own_jobs(keyed):
    base = keyed.base
    with httpx.Client(timeout=60) as http:
        job = run(http, base, "sk-b").json()["id"]
        for path in [f"status/{job}", f"stream/{job}"]:
            assert http.get(f"{base}/v2/{MODEL}/{path}", headers=auth("sk-t")).status_code == 404
        assert http.post(f"{base}/v2/{MODEL}/cancel/{job}", headers=auth("sk-t")).status_code == 404
        assert http.get(f"{base}/v2/{MODEL}/status/{job}", headers=auth("sk-b")).status_code == 200
        assert http.get(f"{base}/v2/{MODEL}/status/{job}", headers=auth("sk-ops")).status_code == 200
        # A /v1 request's job is its key's too.
        r = http.post(f"{base}/v1/completions", headers=auth("sk-b"), json={"model": MODEL, "prompt": "hi", "max_tokens": 1})
        v1_job = r.headers["x-sluice-job-id"]
        assert http.get(f"{base}/v2/{MODEL}/status/{v1_job}", headers=auth("sk-t")).status_code == 404
        assert http.get(f"{base}/v2/{MODEL}/status/{v1_job}", headers=auth("sk-b")).status_code == 200
        # So is a stored response: another tenant cannot read, list, delete or continue it.
        r = http.post(f"{base}/v1/responses", headers=auth("sk-b"), json={"model": MODEL, "input": "hi", "max_output_tokens": 1})
        resp = r.json()["id"]
        for path in [resp, f"{resp}/input_items"]:
            assert http.get(f"{base}/v1/responses/{path}", headers=auth("sk-t")).status_code == 404
            assert http.get(f"{base}/v1/responses/{path}", headers=auth("sk-ops")).status_code == 200
        assert http.delete(f"{base}/v1/responses/{resp}", headers=auth("sk-t")).status_code == 404
        follow = {"model": MODEL, "input": "x", "max_output_tokens": 1, "previous_response_id": resp}
        assert http.post(f"{base}/v1/responses", headers=auth("sk-t"), json=follow).status_code == 400
        assert http.post(f"{base}/v1/responses", headers=auth("sk-b"), json=follow).status_code == 200
        assert http.delete(f"{base}/v1/responses/{resp}", headers=auth("sk-b")).status_code == 200


def test_tokens_per_minute_are_charged_after_the_answer(keyed):
    base = keyed.base
    body = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 80, "temperature": 0}
    with httpx.Client(timeout=60) as http:
        r = http.post(f"{base}/v1/completions", headers=auth("sk-t"), json=body)
        assert r.status_code == 200 and r.headers["x-ratelimit-limit-tokens"] == "60"
        used = r.json()["usage"]["total_tokens"]
        assert used > 60

        def refused():
            r = http.post(f"{base}/v1/completions", headers=auth("sk-t"), json={**body, "max_tokens": 1})
            return r.status_code == 429 and r

        r = wait_for(refused, 10, "the tokens to be charged")
        assert r.json()["error"]["type"] == "tokens" and int(r.headers["retry-after"]) >= 1


def test_a_request_refused_for_tokens_spends_no_request_and_passes_after_retry_after(keyed):
    base = keyed.base
    # Special tokens banned, so the answer runs to max_tokens: past the 120 tokens a minute.
    body = {"model": MODEL, "prompt": "1, 2, 3,", "max_tokens": 126, "temperature": 0,
            "logit_bias": {"0": -100, "1": -100, "2": -100}}
    with httpx.Client(timeout=60) as http:
        r = http.post(f"{base}/v1/completions", headers=auth("sk-both"), json=body)
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "1", r.text
        time.sleep(0.5)  # the tokens are charged once the job has ended
        r = http.post(f"{base}/v1/completions", headers=auth("sk-both"), json={**body, "max_tokens": 1})
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        wait = int(r.headers["retry-after"])
        assert err["type"] == "tokens" and f"try again in {wait}s" in err["message"], err
        assert r.headers["x-ratelimit-remaining-requests"] == "1", "the refusal spent no request"
        assert r.headers["x-ratelimit-remaining-tokens"] == "0"
        assert wait <= 10, wait
        time.sleep(wait)
        r = http.post(f"{base}/v1/completions", headers=auth("sk-both"), json={**body, "max_tokens": 1})
        assert r.status_code == 200, (wait, r.text)


def test_requests_in_flight_are_limited_until_the_stream_ends(keyed):
    base = keyed.base
    # The special tokens banned, so the first stream cannot end early (~4 s of tokens).
    body = {"model": MODEL, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 300, "temperature": 0, "stream": True,
            "logit_bias": {"0": -100, "1": -100, "2": -100}}
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{base}/v1/completions", headers=auth("sk-1"), json=body) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            head = next(lines)
            second = http.post(f"{base}/v1/completions", headers=auth("sk-1"), json={**body, "stream": False, "max_tokens": 1})
            if second.status_code != 429:
                rest = list(lines)
                raise AssertionError(f"second: {second.status_code}; the first stream: {head[:300]} ... {len(rest)} more lines, last {rest[-3:]}")
            assert second.json()["error"]["type"] == "concurrent"
        # The slot is freed once the first stream is gone.
        ok = wait_for(lambda: (r := http.post(f"{base}/v1/completions", headers=auth("sk-1"), json={**body, "stream": False, "max_tokens": 1})).status_code == 200 and r, 10, "the slot")
        assert ok.json()["usage"]["completion_tokens"] == 1


def test_request_limits_are_shared_by_gateways_on_one_redis(tmp_path, redis_url):  # noqa: F811
    cfg = keyed_config(tmp_path)
    gateways = []
    for _ in range(2):
        port = free_port()
        log = open(tmp_path / f"gw-{port}.log", "w")
        p = subprocess.Popen([sluice_bin(), "gateway", "--port", str(port), "--config", str(cfg), "--queue", redis_url],
                             stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "SLUICE_TEST_ADMIN_KEY": "sk-ops"})
        gateways.append((p, f"http://127.0.0.1:{port}"))
    try:
        with httpx.Client(timeout=30) as http:
            for _, base in gateways:
                wait_for(lambda: _up(http, base), 60, "the gateway")
            (_, one), (_, two) = gateways
            assert [run(http, b, "sk-a").status_code for b in (one, two, one)] == [200, 200, 200]
            assert run(http, two, "sk-a").status_code == 429, "the second gateway counts the first's"
            # Jobs are shared too: one gateway's job is its key's on the other.
            job = run(http, one, "sk-b").json()["id"]
            assert http.get(f"{two}/v2/{MODEL}/status/{job}", headers=auth("sk-b")).status_code == 200
            assert http.get(f"{two}/v2/{MODEL}/status/{job}", headers=auth("sk-t")).status_code == 404
    finally:
        for p, _ in gateways:
            p.terminate()
            p.wait(10)


def _up(http, base):
    try:
        return http.get(f"{base}/health").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("hook", [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:6379/",
    "http://localhost:8080/hook",
    "http://[::1]/",
    "http://10.1.2.3/hook",
    "file:///etc/passwd",
])
def test_webhooks_to_internal_addresses_are_refused(server, hook):
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{server.base}/v2/{MODEL}/run", json={"input": {"prompt": "x"}, "webhook": hook})
    assert r.status_code == 400, r.text
    assert "webhook" in r.json()["error"]


SEEDS = {
    "/v1/chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0,
                             "stop": ["x"], "logit_bias": {"1": 1}, "response_format": {"type": "json_object"}},
    "/v1/completions": {"model": MODEL, "prompt": "hi", "max_tokens": 2, "n": 1, "logprobs": 1, "echo": False},
    f"/v2/{MODEL}/runsync": {"input": {"openai_route": "/v1/completions", "openai_input": {"model": MODEL, "prompt": "hi", "max_tokens": 2}},
                              "policy": {"executionTimeout": 60000}},
    "/v1/batches": {"input_file_id": "file-000000000000000000000000", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
}
JUNK = [None, True, -1, 0, 1e308, "", "\u0000", "x" * 300, [], {}, [[[]]], {"a": {"b": None}}, 2**63, -2**63 - 1, "NaN"]


def mutate(rng, body):
    """One random mutation: of the JSON structure (a value replaced, a key dropped or added),
    or of the bytes (flipped, cut, repeated)."""
    text = json.dumps(body)
    kind = rng.randrange(6)
    if kind < 3:
        b = json.loads(text)
        node = b
        while isinstance(node, dict) and node and rng.random() < 0.6:
            k = rng.choice(list(node))
            if not isinstance(node[k], (dict, list)) or rng.random() < 0.5:
                break
            node = node[k] if isinstance(node[k], dict) else {}
        # `max_tokens` stays: without it a chat runs to the end of the context (minutes here).
        keys = [k for k in node if k != "max_tokens"] if isinstance(node, dict) else []
        if keys:
            k = rng.choice(keys)
            if kind == 0:
                node[k] = rng.choice(JUNK)
            elif kind == 1:
                del node[k]
            else:
                node[rng.choice(["tools", "seed", "best_of", "top_logprobs", "zz", k + "_"])] = rng.choice(JUNK)
        return json.dumps(b).encode()
    raw = bytearray(text.encode())
    if kind == 3:
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    elif kind == 4:
        raw = raw[: rng.randrange(len(raw))]
    else:
        i = rng.randrange(len(raw))
        raw = raw[:i] + raw[i:] * rng.randint(2, 3)
    return bytes(raw)


def test_randomly_mutated_bodies_never_get_a_server_error(server):
    rng = random.Random(20261130)
    statuses = {}
    with httpx.Client(timeout=120) as http:
        for i in range(300):
            path = rng.choice(list(SEEDS))
            body = mutate(rng, SEEDS[path])
            r = http.post(server.base + path, content=body, headers={"content-type": "application/json"})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (path, body, r.status_code, r.text)
            assert r.json() is not None
        assert http.get(f"{server.base}/health").status_code == 200
        ok = http.post(f"{server.base}/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 2})
        assert ok.status_code == 200
    print("statuses:", statuses)
    assert statuses.get(400, 0) > 100, statuses


def _raw(port, data, wait=0.0):
    """Send `data` on a fresh connection, wait, and return what the server sent (b"" if it
    closed the connection without a word)."""
    import socket

    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        time.sleep(wait)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and not data.endswith(b"\r\n\r\n"):
                break
        return out
    finally:
        s.close()


def test_limits_on_the_wire(tmp_path):
    import socket

    cfg = gateway_config(tmp_path, header_read_timeout_secs=1, body_read_timeout_secs=1, max_connections=6)
    s = Server(tmp_path, "--config", str(cfg)).wait_ready()
    port = s.port
    try:
        # Headers that never finish: the connection is closed after the header timeout.
        t0 = time.time()
        got = _raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n", wait=0)
        assert got in (b"",) or got.startswith(b"HTTP/1.1 408"), got
        assert 0.5 < time.time() - t0 < 5
        # An idle keep-alive connection is closed too.
        got = _raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", wait=2.5)
        assert got.startswith(b"HTTP/1.1 200") and got.count(b"HTTP/1.1") == 1
        # Too large a head, too many headers: 431.
        big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
        assert _raw(port, big).startswith(b"HTTP/1.1 431")
        many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n"
        assert _raw(port, many).startswith(b"HTTP/1.1 431")
        # A body that stops arriving is cut off, not waited for.
        head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mo"
        t0 = time.time()
        got = _raw(port, head, wait=0)
        assert got.split(b" ")[1] in (b"400", b"408"), got[:200]
        assert time.time() - t0 < 5
        # max_connections: the seventh open connection is closed at once.
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        try:
            time.sleep(0.2)
            extra = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = extra.recv(100)
            except (ConnectionResetError, BrokenPipeError):
                answer = b""
            assert answer == b"", "closed without an answer"
            extra.close()
        finally:
            for h in held:
                h.close()
        time.sleep(0.3)
        assert httpx.get(f"{s.base}/health").status_code == 200, "serves again once they are gone"
    finally:
        s.stop()


def test_per_key_usage_is_in_the_metrics(keyed):
    from test_metrics import scrape, value

    base = keyed.base
    before, _ = scrape(keyed.base)
    with httpx.Client(timeout=120) as http:
        r = http.post(f"{base}/v1/completions", headers=auth("sk-b"), json={"model": MODEL, "prompt": "hi", "max_tokens": 3})
        assert r.status_code == 200, r.text
        r = http.post(f"{base}/v2/{MODEL}/runsync", headers=auth("sk-b"),
                      json={"input": {"prompt": "hi", "sampling_params": {"max_tokens": 3}}})
        assert r.json()["status"] == "COMPLETED", r.text
        for _ in range(5):
            run(http, base, "sk-a")  # over team-a's 3 a minute
    after, _ = scrape(keyed.base)
    assert value(after, "sluice_key_requests_total", key="team-b") - value(before, "sluice_key_requests_total", key="team-b") == 2
    for kind in ["prompt", "completion"]:
        moved = value(after, "sluice_key_tokens_total", key="team-b", kind=kind) - value(before, "sluice_key_tokens_total", key="team-b", kind=kind)
        assert moved > 0, kind
    assert value(after, "sluice_key_worker_milliseconds_total", key="team-b") > value(before, "sluice_key_worker_milliseconds_total", key="team-b")
    assert value(after, "sluice_key_rate_limited_total", key="team-a", limit="requests") >= 1
    # Names only: no key secret appears on the page.
    assert "sk-b" not in httpx.get(f"{base}/metrics").text
