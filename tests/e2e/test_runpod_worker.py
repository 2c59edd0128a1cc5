"""Unmodified RunPod handlers (tests/e2e/handlers/handler.py, the official `runpod` package)
as sluice workers: sluice starts each custom endpoint's command with the RunPod worker
environment, and the jobs get the statuses, outputs and streams RunPod would give them."""

import shutil
import sys
import time

import httpx
import pytest
import runpod

from conftest import ROOT, Server, get_json
from test_openai import raw_post

MODES = ["sync", "trace", "async", "generator", "progress", "raises", "error", "concurrent", "slow", "refresh",
         "failing_stream", "crashloop", "huge", "huge_stream", "unfit"]


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("handlers")
    marks = tmp / "marks"
    marks.mkdir()
    cfg = tmp / "configs"
    shutil.copytree(ROOT / "configs", cfg)
    custom = "".join(
        f'\n[[custom]]\nname = "{m}"\ncommand = ["{sys.executable}", "{ROOT}/tests/e2e/handlers/handler.py", "{m}"]\n'
        f'env = {{ MARK_DIR = "{marks}", RUNPOD_PING_INTERVAL = "1000" }}\n'
        for m in MODES
    )
    (cfg / "sluice.toml").write_text((cfg / "sluice.toml").read_text() + custom)
    s = Server(tmp, "--config", str(cfg / "sluice.toml")).wait_ready(timeout=300)
    runpod.endpoint_url_base = f"{s.base}/v2"
    runpod.api_key = "unused"
    yield s, marks
    s.stop()


def forget(ep, job):
    """Empty the endpoint's queue and cancel `job` (already gone after the purge: a 404)."""
    ep.purge_queue()
    try:
        job.cancel()
    except Exception:  # noqa: BLE001 - purged: gone (404), which is the point
        pass


def wait_status(job, wanted, timeout=60):
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = job.status()
        if status in wanted:
            return status
        time.sleep(0.1)
    return status


def test_sync_and_async_handlers(handlers):
    assert runpod.Endpoint("sync").run_sync({"x": 1}, timeout=60) == {"echo": {"x": 1}}
    assert runpod.Endpoint("async").run_sync({"x": 2}, timeout=60) == {"echo": {"x": 2}, "async": True}


def test_a_handler_gets_the_requests_trace_context(handlers):
    s, _ = handlers
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = httpx.post(f"{s.base}/v2/trace/runsync", json={"input": {}}, headers={"traceparent": tp}, timeout=60)
    # No exporter here: the client's own context is passed through as it came.
    assert r.json()["output"] == {"traceparent": tp}, r.text
    r = httpx.post(f"{s.base}/v2/trace/runsync", json={"input": {}}, timeout=60)
    assert r.json()["output"] == {"traceparent": None}, r.text


def test_generator_streams_and_aggregates(handlers):
    job = runpod.Endpoint("generator").run({"n": 4})
    assert list(job.stream()) == [{"chunk": i} for i in range(4)]
    assert wait_status(job, {"COMPLETED"}) == "COMPLETED"
    assert job.output(timeout=10) == [{"chunk": i} for i in range(4)]


def test_progress_updates_show_then_the_result(handlers):
    s, _ = handlers
    job = runpod.Endpoint("progress").run({})
    seen = None
    deadline = time.time() + 30
    while time.time() < deadline:
        _, view = get_json(f"{s.base}/v2/progress/status/{job.job_id}", timeout=10)
        if view["status"] == "IN_PROGRESS" and view.get("output") == "half way":
            seen = view
            break
        time.sleep(0.05)
    assert seen, "the progress update was visible while the job ran"
    assert job.output(timeout=30) == "done"


def test_raising_and_error_returning_handlers_fail(handlers):
    s, _ = handlers
    for name, text in [("raises", "boom from the handler"), ("error", "the input was not acceptable")]:
        job = runpod.Endpoint(name).run({})
        assert wait_status(job, {"FAILED", "COMPLETED"}) == "FAILED", name
        _, view = get_json(f"{s.base}/v2/{name}/status/{job.job_id}", timeout=10)
        assert text in view["error"], view


def test_concurrency_modifier_runs_jobs_together(handlers):
    jobs = [runpod.Endpoint("concurrent").run({"i": i}) for i in range(4)]
    outs = [j.output(timeout=60) for j in jobs]
    assert all(o is not None for o in outs), outs
    # Four three-second jobs on one worker overlap: each started before any ended.
    assert max(o["start"] for o in outs) < min(o["end"] for o in outs)


def test_cancel_and_timeout_reach_a_running_handler(handlers):
    s, marks = handlers
    ep = runpod.Endpoint("slow")
    job = ep.run({})
    assert wait_status(job, {"IN_PROGRESS"}) == "IN_PROGRESS"
    deadline = time.time() + 30
    while not (marks / f"{job.job_id}.started").exists() and time.time() < deadline:
        time.sleep(0.05)
    job.cancel()
    assert job.status() == "CANCELLED"
    # (The SDK wraps a request whose `input` is falsy, so give it one.)
    timed = ep.run({"input": {"x": 1}, "policy": {"executionTimeout": 1500}})
    assert wait_status(timed, {"TIMED_OUT", "COMPLETED", "FAILED"}, timeout=30) == "TIMED_OUT"
    for j in (job, timed):
        stopped = marks / f"{j.job_id}.stopped"
        deadline = time.time() + 30
        while not stopped.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert stopped.exists(), f"the handler of {j.job_id} was never stopped"


def test_worker_routes_refuse_a_wrong_token(handlers):
    s, _ = handlers
    status, body = raw_post(f"{s.base}/v2/sync/job-done/w/123?x=1", b'{"output": 1}')
    assert status == 401 and isinstance(body["error"], str)


def test_stop_pod_replaces_the_worker(handlers):
    ep = runpod.Endpoint("refresh")
    first = ep.run_sync({"n": 1}, timeout=60)
    second = ep.run_sync({"n": 2}, timeout=120)
    assert first["pid"] != second["pid"], "the second job ran in a fresh worker process"


def test_a_failed_stream_says_why_in_its_last_answer(handlers):
    s, _ = handlers
    job = runpod.Endpoint("failing_stream").run({})
    assert wait_status(job, {"FAILED", "COMPLETED"}) == "FAILED"
    _, last = get_json(f"{s.base}/v2/failing_stream/stream/{job.job_id}", timeout=10)
    assert last["status"] == "FAILED", last
    assert "the generator gave up" in last["error"], "a stream reader learns why, as /status says"


def test_an_output_over_the_gateways_limit_fails_its_job_at_once(handlers):
    s, _ = handlers
    for name in ("huge", "huge_stream"):
        ep = runpod.Endpoint(name)
        job = ep.run({"mb": 15})
        # Not left in progress until the execution timeout (600 s), nor requeued.
        assert wait_status(job, {"FAILED", "COMPLETED", "TIMED_OUT"}, timeout=60) == "FAILED", name
        _, view = get_json(f"{s.base}/v2/{name}/status/{job.job_id}", timeout=10)
        assert "gateway.max_body_bytes" in view["error"] and view["retries"] == 0, view
        # The worker is not stuck: it takes the next job.
        small = ep.run({"mb": 0.001})
        assert wait_status(small, {"COMPLETED", "FAILED"}, timeout=60) == "COMPLETED", name


def test_a_worker_that_crashes_once_serving_backs_off_and_shows_unhealthy(handlers):
    s, marks = handlers
    ep = runpod.Endpoint("crashloop")
    job = ep.run({"x": 1})
    seen = {}
    t0 = time.time()
    while time.time() - t0 < 12:
        fleet = get_json(f"{s.base}/v2/crashloop/health", timeout=10)[1]["fleet"]
        for w in fleet:
            if w["state"] == "unhealthy":
                seen = w
        time.sleep(0.2)
    forget(ep, job)
    starts = len((marks / "crashloop.starts").read_text().split())
    # Restarted at once it would start every ~2-3 s (each start imports the SDK, then dies);
    # with back-off: at 0, then 2, 4, 8 s after each crash.
    assert 2 <= starts <= 4, f"{starts} starts in 12 s"
    assert seen.get("restarts", 0) >= 1 and "exit status" in seen["lastExit"], seen


def test_a_failed_fitness_check_is_shown_counted_and_backed_off(handlers):
    s, marks = handlers
    ep = runpod.Endpoint("unfit")
    job = ep.run({"x": 1})  # starts a worker, which fails its check before taking it
    health, deadline = {}, time.time() + 30
    while time.time() < deadline and not health.get("fitnessFailures"):
        health = get_json(f"{s.base}/v2/unfit/health", timeout=10)[1]
        time.sleep(0.2)
    failure = health["fitnessFailures"][0]
    assert failure["check"] == "check_gpu_memory", health
    assert failure["reason"] == "RuntimeError: no GPU memory left: 0 MiB free", failure
    assert failure["worker"].startswith("unfit-") and failure["at_ms"] > 0, failure
    time.sleep(8)
    health = get_json(f"{s.base}/v2/unfit/health", timeout=10)[1]
    forget(ep, job)
    # Each failure is a crash: backed off (0, then 2, 4 s), not restarted at once.
    starts = len((marks / "unfit.starts").read_text().split())
    assert 2 <= starts <= 4, f"{starts} starts"
    assert len(health["fitnessFailures"]) >= 2, health
    metrics = httpx.get(f"{s.base}/metrics", timeout=10).text
    line = 'sluice_worker_fitness_failures_total{endpoint="unfit",check="check_gpu_memory"}'
    counted = [float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(line)]
    assert counted and counted[0] >= 2, counted


def test_an_idle_sdk_worker_gets_a_queued_job_at_once(handlers):
    """Both take forms long-poll, so a RunPod-SDK worker that is polling gets a new job within
    milliseconds, and a worker that just served short jobs is not drained as idle under the
    next one. (Jobs sent back to back still wait up to ~1 s: the SDK's fetch loop sleeps 1 s
    whenever it is at its concurrency, `rp_scale.py` `JobScaler.get_jobs`.)"""
    s, _ = handlers
    ep = runpod.Endpoint("sync")
    ep.run_sync({"warm": 1}, timeout=60)
    delays = []
    for i in range(6):
        time.sleep(1.5)  # the SDK is back in its job-take long-poll
        job = ep.run({"i": i})
        assert job.output(timeout=30) == {"echo": {"i": i}}
        delays.append(get_json(f"{s.base}/v2/sync/status/{job.job_id}", timeout=10)[1]["delayTime"])
    assert max(delays) < 300, f"delayTime ms of jobs sent to an idle worker: {delays}"
