"""SLOW (about a minute): cold starts as a client sees them, with the real model. Parked
workers (idled out, frozen with SIGSTOP, thawed by the next job: no new process), their
eviction after `park_timeout_secs`, SSE comments while a streamed request waits for a worker to
start (read raw, then through the official `openai` client, which must ignore them), the
`x-sluice-cold-start` header and `coldStart` in `/v2` status."""

import json
import time
import urllib.request
from pathlib import Path

import openai

from conftest import MODEL, Server, config_with, get_json, wait_for, worker_pids


def fleet(s):
    return get_json(f"{s.base}/v2/{MODEL}/health")[1]["fleet"]


def process_state(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def raw_stream(s):
    """A streamed chat read line by line: (comment lines, data lines)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "stream": True}
    req = urllib.request.Request(f"{s.base}/v1/chat/completions", json.dumps(body).encode(), {"content-type": "application/json"})
    comments, data = [], []
    with urllib.request.urlopen(req, timeout=120) as r:
        for line in r:
            line = line.decode().rstrip("\n")
            if line.startswith(":"):
                comments.append(line)
            elif line.startswith("data:"):
                data.append(line[5:].strip())
    return comments, data


def chat(s):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
    req = urllib.request.Request(f"{s.base}/v1/chat/completions", json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.headers, json.loads(r.read())


def test_parked_workers_thaw_for_the_next_job_and_are_evicted_after_park_timeout(tmp_path):
    cfg = config_with(tmp_path, idle_timeout_secs=1, parked_workers=1, park_timeout_secs=8)
    s = Server(tmp_path, "--config", str(cfg)).wait_ready()
    try:
        # A cold start from zero: comment lines while the worker starts, then the answer.
        comments, data = raw_stream(s)
        assert data[-1] == "[DONE]" and len(data) > 2, data
        cold = [c for c in comments if c.startswith(": cold-start ")]
        assert cold, comments
        assert any(f" tier={t} " in cold[0] for t in ("ram", "disk")), cold
        assert "phase=" in cold[0] and "elapsed_ms=" in cold[0], cold
        # Idle past idle_timeout (1 s): parked, its process stopped, not gone.
        w = wait_for(lambda: [w for w in fleet(s) if w["state"] == "parked"], 20, "parking")[0]
        pid = w["pid"]
        # Frozen (state T; a signal that finds it in uninterruptible I/O lands when that ends).
        wait_for(lambda: process_state(pid) == "T", 5, "the parked worker to stop")
        assert worker_pids(s.port) == [pid]
        assert get_json(f"{s.base}/v2/{MODEL}/health")[1]["workers"]["parked"] == 1
        # The next request thaws it: same process, the answer says it waited for a thaw.
        headers, out = chat(s)
        assert out["choices"][0]["message"]["content"], out
        assert headers["x-sluice-cold-start"].startswith("tier=parked; ms="), dict(headers)
        assert worker_pids(s.port) == [pid], "a thaw, not a new process"
        assert process_state(pid) != "T"
        job = headers["x-sluice-job-id"]
        status = get_json(f"{s.base}/v2/{MODEL}/status/{job}")[1]
        assert status["coldStart"]["tier"] == "parked", status
        metrics = urllib.request.urlopen(f"{s.base}/metrics").read().decode()
        assert 'tier="parked"' in metrics
        # Parked again, then evicted after park_timeout (8 s): the process exits.
        wait_for(lambda: [w for w in fleet(s) if w["state"] == "parked"], 20, "parking again")
        t0 = time.time()
        wait_for(lambda: worker_pids(s.port) == [] and fleet(s) == [], 30, "the eviction")
        assert time.time() - t0 > 4, "not before park_timeout"
        # The next start is a new process, through the official client: the comments sent
        # while it starts are ignored and the stream completes normally.
        c = openai.OpenAI(base_url=f"{s.base}/v1", api_key="none")
        chunks = list(c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, stream=True))
        assert chunks[-1].choices[0].finish_reason in ("stop", "length"), chunks[-1]
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert len(worker_pids(s.port)) == 1 and worker_pids(s.port) != [pid]
        log = s.log_text()
        assert "parked" in log and "thawed a parked worker" in log and "evicting it" in log
    finally:
        s.stop()
