"""SLOW (about a minute a backend): a long-lived engine worker does not grow, on each backend. One always-on
worker serves 40 warm-up requests, then 200 more at concurrency 4 (fewer on mistral.rs), every prompt different (so a
cache keyed by prompt, like mistral.rs's prefix cache, would keep one entry per request). The
worker's resident memory after the run must stay within 15% of what it was after the warm-up;
the gateway's too. This asserts behaviour (no growth), not speed: `scripts/bench/soak` measures
RSS and TTFT over 2,000 requests."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BACKENDS, MODEL, Server, backend_config, rss_mb, wait_for, worker_pids

CONCURRENCY = 4
# Requests (warm-up, measured run) per backend: mistral.rs on CPU runs about a quarter as fast,
# so it gets fewer (its known growth, the CPU prefix cache, was ~22 MB a request: 80 show it).
REQUESTS = {"llamacpp": (40, 200), "mistralrs": (20, 80)}
PLACES = ["a forest", "the sea", "a desert", "the mountains", "a city", "a farm", "the arctic"]


def prompt(i: int) -> str:
    return f"Request {i}: name {i % 5 + 2} animals that live in {PLACES[i % len(PLACES)]}, one per line."


def serve_requests(client, first: int, n: int, stream_every: int = 3):
    """`n` chat requests, `CONCURRENCY` at a time, every third one streamed."""

    def one(i):
        messages = [{"role": "user", "content": prompt(i)}]
        if i % stream_every == 0:
            chunks = client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=24, stream=True
            )
            return sum(1 for _ in chunks) > 0
        r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24)
        return r.usage.completion_tokens > 0

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(one, range(first, first + n)))
    assert all(results), f"{results.count(False)} of {n} requests returned nothing"


@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_and_gateway_memory_stay_flat_over_hundreds_of_requests(tmp_path, backend):
    from openai import OpenAI

    config = backend_config(tmp_path, backend, min_workers=1, max_workers=1, parked_workers=0)
    s = Server(tmp_path, "--config", str(config)).wait_ready()
    try:
        client = OpenAI(base_url=f"{s.base}/v1", api_key="unused", max_retries=0, timeout=120)
        (worker,) = wait_for(lambda: worker_pids(s.port), 60, "the always-on worker")
        warmup, run = REQUESTS[backend]
        serve_requests(client, 0, warmup)
        after_warmup = {"worker": rss_mb(worker), "gateway": rss_mb(s.proc.pid)}
        serve_requests(client, warmup, run)
        after_run = {"worker": rss_mb(worker), "gateway": rss_mb(s.proc.pid)}
        print(f"RSS MB after {warmup} warm-up requests {after_warmup}, after {run} more {after_run}")
        assert worker_pids(s.port) == [worker], "the same worker served every request"
        for role, before in after_warmup.items():
            assert after_run[role] <= before * 1.15, (
                f"{role} grew from {before:.0f} to {after_run[role]:.0f} MB over {run} requests"
            )
    finally:
        s.stop()
