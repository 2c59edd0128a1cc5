"""SLOW (about a minute): `sluice serve` scales its engine workers from zero and back, with the
real model. Each test runs its own server on a copy of the configs with short timeouts."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import MODEL, Server, config_with, free_port, get_json, wait_for, worker_pids
from test_metrics import scrape, value

def health(s):
    return get_json(f"{s.base}/v2/{MODEL}/health")[1]


def post(url, body, timeout=120):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def chat(s, content="Say hi.", max_tokens=16):
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    return post(f"{s.base}/v1/chat/completions", body)


def runsync(s, max_tokens=8):
    body = {"input": {"messages": [{"role": "user", "content": "Say hi."}], "sampling_params": {"max_tokens": max_tokens}}}
    return post(f"{s.base}/v2/{MODEL}/runsync?wait=120000", body)[1]


def test_idle_serve_has_no_worker_a_request_starts_one_and_idleness_stops_it(tmp_path):
    s = Server(tmp_path, "--config", str(config_with(tmp_path, idle_timeout_secs=3))).wait_ready()
    try:
        assert get_json(f"{s.base}/ready")[1]["ready"] is True, "min 0: ready with no worker"
        time.sleep(1)
        h = health(s)
        assert h["fleet"] == [] and h["workers"]["idle"] == 0, h
        assert worker_pids(s.port) == []
        # The first job waits for a cold start: no error, and delayTime shows the wait.
        t0 = time.time()
        view = runsync(s)
        first = time.time() - t0
        assert view["status"] == "COMPLETED", view
        assert view["delayTime"] >= 300, f"the cold start shows in delayTime: {view}"
        fleet = health(s)["fleet"]
        assert len(fleet) == 1, fleet
        cold = fleet[0]["coldStart"]
        assert cold["loadMs"] > 0 and cold["readyMs"] >= cold["loadMs"], cold
        print(f"cold start: first job {first * 1000:.0f} ms end to end; phases {cold}")
        # A warm request meanwhile reuses the worker.
        assert chat(s)[0] == 200
        assert len(worker_pids(s.port)) == 1
        # idle_timeout (3 s) later the worker is drained and gone, from the store too.
        wait_for(lambda: health(s)["fleet"] == [] and worker_pids(s.port) == [], 30, "scale to zero")
        assert health(s)["workers"]["idle"] == 0
        assert "idle past idle_timeout; draining" in s.log_text()
        # And it comes back for the next request.
        assert chat(s)[0] == 200
    finally:
        assert s.stop(timeout=30) == 0, s.log_text()[-3000:]
    assert worker_pids(s.port) == [], "no orphaned worker"


def test_a_burst_scales_up_to_max_workers_and_back_down(tmp_path):
    cfg = config_with(tmp_path, max_workers=2, scaler="request_count", scaler_value=1.0, idle_timeout_secs=3)
    s = Server(tmp_path, "--config", str(cfg)).wait_ready()
    try:
        peak = [0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], len(health(s)["fleet"]))
                time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(chat(s, max_tokens=64)[0])) for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        watcher.join()
        assert results == [200] * 4, results
        assert peak[0] == 2, f"scaled to max_workers = 2, never beyond: peak {peak[0]}"
        wait_for(lambda: health(s)["fleet"] == [], 30, "scale back to zero")
        assert worker_pids(s.port) == []
    finally:
        s.stop(timeout=30)


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0, 10, "redis")
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()


def test_a_worker_killed_mid_job_is_replaced_and_its_job_completes(tmp_path, redis_url):
    s = Server(tmp_path, "--config", str(config_with(tmp_path, idle_timeout_secs=30)), "--queue", redis_url).wait_ready()
    try:
        body = {"input": {"messages": [{"role": "user", "content": "Write a long story about a cat."}],
                          "sampling_params": {"max_tokens": 800, "temperature": 0}}}
        job = post(f"{s.base}/v2/{MODEL}/run", body)[1]["id"]
        status = lambda: get_json(f"{s.base}/v2/{MODEL}/status/{job}")[1]
        wait_for(lambda: status()["status"] == "IN_PROGRESS", 60, "the job to start")
        victim = health(s)["fleet"][0]
        running = lambda: value(scrape(s.base)[0], "sluice_engine_running_jobs", endpoint=MODEL, worker=victim["id"])
        wait_for(lambda: running() == 1, 30, "a ping saying the victim runs the job")
        os.kill(victim["pid"], signal.SIGKILL)
        final = wait_for(lambda: (v := status())["status"] not in ("IN_QUEUE", "IN_PROGRESS") and v, 120, "the job to end")
        assert final["status"] == "COMPLETED", final
        assert final["retries"] == 1, final
        assert final["workerId"] != victim["id"], "completed by the replacement"
        assert "worker exited unexpectedly" in s.log_text()
        # The dead worker's series ended with it: no job reported running forever.
        samples = scrape(s.base)[0]
        assert not [k for k in samples if ("worker", victim["id"]) in k[1]], "series outlived their worker"
    finally:
        s.stop(timeout=30)
