"""The RunPod-compatible queue API, driven by the official `runpod` package as the client (and
`openai` through the endpoint's OpenAI route), against `sluice serve` with the real model."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import runpod

from conftest import MODEL, Server, gateway_config
from test_openai import raw_post

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Name three colors."}], "max_tokens": 24, "temperature": 0}


def job_input(stream=False, **over):
    return {"openai_route": "/v1/chat/completions", "openai_input": {**CHAT, **over, "stream": stream}}


@pytest.fixture
def endpoint(server):
    runpod.endpoint_url_base = f"{server.base}/v2"
    runpod.api_key = "unused"
    return runpod.Endpoint(MODEL)


def test_run_sync_returns_the_chat_completion(endpoint):
    out = endpoint.run_sync(job_input(), timeout=120)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"].strip()


def test_run_then_status_and_output(endpoint):
    job = endpoint.run(job_input())
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    out = job.output(timeout=120)
    assert out["usage"]["completion_tokens"] > 0
    assert job.status() == "COMPLETED"


def test_stream_yields_chunks_that_add_up(endpoint):
    whole = endpoint.run_sync(job_input(), timeout=120)["choices"][0]["message"]["content"]
    job = endpoint.run(job_input(stream=True))
    chunks = list(job.stream())
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert len(chunks) >= 2 and text == whole


def test_cancel_reaches_a_running_job(endpoint, server):
    job = endpoint.run(job_input(max_tokens=1800))
    deadline = time.time() + 60
    while job.status() == "IN_QUEUE" and time.time() < deadline:
        time.sleep(0.1)
    job.cancel()
    assert job.status() == "CANCELLED"


def test_health_and_purge_queue(endpoint):
    health = endpoint.health()
    assert set(health["jobs"]) == {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert health["workers"]["idle"] + health["workers"]["running"] == 1  # max_workers
    # More long jobs than the workers run at once (1 x max_num_seqs 8): some stay queued.
    jobs = [endpoint.run(job_input(max_tokens=1800)) for _ in range(40)]
    purged = endpoint.purge_queue()
    assert purged["status"] == "completed" and purged["removed"] >= 8
    for j in jobs:
        try:
            j.cancel()
        except Exception:  # noqa: BLE001 - purged jobs are gone (404), which is the point
            pass
    assert endpoint.health()["jobs"]["inQueue"] == 0


def test_openai_route_through_the_endpoint(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.base}/v2/{MODEL}/openai/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == [MODEL]
    r = client.chat.completions.create(**CHAT)
    assert r.choices[0].message.content.strip()
    chunks = list(client.chat.completions.create(**CHAT, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content


def test_bad_input_gets_runpod_shaped_errors(server):
    base = f"{server.base}/v2/{MODEL}"
    status, body = raw_post(f"{base}/run", b'{"no_input": 1}')
    assert status == 400 and isinstance(body["error"], str)
    status, body = raw_post(f"{server.base}/v2/nope/run", b'{"input": 1}')
    assert status == 404 and isinstance(body["error"], str)
    status, body = raw_post(f"{base}/run", b'{"input": ')
    assert status == 400
    status, body = raw_post(f"{base}/status/0123", b"")
    assert status == 404
    status, body = raw_post(f"{base}/run", json.dumps({"input": "x" * (11 * 1024 * 1024)}).encode())
    assert status == 413
    status, view = raw_post(f"{base}/runsync", json.dumps({"input": job_input()}).encode(), timeout=120)
    assert status == 200 and view["status"] == "COMPLETED"
    status, body = raw_post(f"{base}/retry/{view['id']}", b"")
    assert status == 400 and "FAILED" in body["error"]


class Receiver(BaseHTTPRequestHandler):
    """Fails the first `fail` deliveries, then accepts; records every body."""

    fail = 2
    bodies: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        Receiver.bodies.append(body)
        self.send_response(500 if len(Receiver.bodies) <= Receiver.fail else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_is_retried_until_the_receiver_accepts(tmp_path):
    # A server of its own, with 1 s between webhook retries instead of RunPod's 10 s.
    cfg = gateway_config(tmp_path, webhook_retry_secs=1, webhook_allow_cidrs=["127.0.0.0/8"])
    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    s = Server(tmp_path, "--config", str(cfg))
    try:
        s.wait_ready()
        hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
        body = json.dumps({"input": job_input(), "webhook": hook}).encode()
        status, view = raw_post(f"{s.base}/v2/{MODEL}/runsync", body, timeout=120)
        assert status == 200 and view["status"] == "COMPLETED"
        deadline = time.time() + 20
        while len(Receiver.bodies) < 3 and time.time() < deadline:
            time.sleep(0.1)
        assert len(Receiver.bodies) == 3, "two failures, then the delivery that succeeded"
        assert all(b["id"] == view["id"] and b["status"] == "COMPLETED" for b in Receiver.bodies)
        time.sleep(1.5)
        assert len(Receiver.bodies) == 3, "no delivery after a success"
    finally:
        s.stop()
        receiver.shutdown()


def test_worker_vllm_standard_input_form(endpoint, server):
    """Client code written for RunPod's vLLM worker: `prompt`/`messages` + `sampling_params`."""
    out = endpoint.run_sync({"prompt": "The capital of France is", "sampling_params": {"max_tokens": 8, "temperature": 0}}, timeout=120)
    assert isinstance(out, list) and out[0]["choices"][0]["tokens"][0].strip()
    assert out[-1]["usage"]["output"] == 8 and out[-1]["usage"]["input"] > 0
    job = endpoint.run({"messages": CHAT["messages"], "sampling_params": {"max_tokens": 12, "temperature": 0}, "stream": True})
    batches = list(job.stream())
    streamed = "".join(t for b in batches for t in b["choices"][0]["tokens"])
    assert len(batches) >= 2 and streamed.strip()
    whole = endpoint.run_sync({"messages": CHAT["messages"], "sampling_params": {"max_tokens": 12, "temperature": 0}}, timeout=120)
    assert whole[0]["choices"][0]["tokens"][0] == streamed
    # Read before it is queued, as the worker would read it: refused at once, by name.
    body = {"input": {"prompt": "x", "sampling_params": {"use_beam_search": True}}}
    status, err = raw_post(f"{server.base}/v2/{MODEL}/run", json.dumps(body).encode())
    assert status == 400 and "use_beam_search" in err["error"], err


def test_api_keys_guard_the_public_api_only(tmp_path):
    import urllib.error
    import urllib.request

    cfg = gateway_config(tmp_path, api_keys=["sekret"])
    s = Server(tmp_path, "--config", str(cfg))
    try:
        s.wait_ready()  # /ready needs no key

        def get(path, key=None):
            req = urllib.request.Request(f"{s.base}{path}", headers={"Authorization": f"Bearer {key}"} if key else {})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, body = get("/v1/models")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        status, body = get(f"/v2/{MODEL}/health", key="wrong")
        assert status == 401 and isinstance(body["error"], str)
        assert get("/v1/models", key="sekret")[0] == 200
        runpod.endpoint_url_base = f"{s.base}/v2"
        runpod.api_key = "sekret"
        out = runpod.Endpoint(MODEL).run_sync({"prompt": "Hi", "sampling_params": {"max_tokens": 2}}, timeout=120)
        assert out[-1]["usage"]["output"] == 2, "workers, with their own token, still serve"
    finally:
        s.stop()
