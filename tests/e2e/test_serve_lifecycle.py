"""`sluice serve` as a process: it becomes ready, and SIGTERM stops it and its worker cleanly."""

import time

from conftest import Server, get_json, worker_pids


def test_sigterm_stops_gateway_and_worker(tmp_path):
    s = Server(tmp_path).wait_ready()
    _, ready = get_json(f"{s.base}/ready")
    assert ready["ready"] is True
    # Workers start with the first request (min_workers = 0) as child processes.
    from test_autoscaling import chat

    assert chat(s)[0] == 200
    assert worker_pids(s.port), "the worker runs as a child process"
    # /ready can answer before serve prints its own ready line (it polls every 100 ms).
    deadline = time.time() + 10
    while "ready in" not in s.log_text() and time.time() < deadline:
        time.sleep(0.1)
    log = s.log_text()
    assert "[smollm2-135m-instruct-" in log, "worker logs are prefixed with the worker id"
    assert "ready in" in log
    assert s.stop(timeout=30) == 0, s.log_text()[-3000:]
    assert worker_pids(s.port) == [], "no orphaned worker"
