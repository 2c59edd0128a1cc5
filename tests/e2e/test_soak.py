"""SLOW (about a minute and a half): a long-lived engine worker does not grow. One always-on
worker serves 40 warm-up requests, then 200 more at concurrency 4, every prompt different (so a
cache keyed by prompt, like mistral.rs's prefix cache, would keep one entry per request). The
worker's resident memory after the run must stay within 15% of what it was after the warm-up;
the gateway's too. This asserts behaviour (no growth), not speed: `scripts/bench/soak` measures
RSS and TTFT over 2,000 requests."""

from concurrent.futures import ThreadPoolExecutor

from conftest import MODEL, Server, config_with, rss_mb, wait_for, worker_pids

WARMUP, RUN, CONCURRENCY = 40, 200, 4
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


def test_worker_and_gateway_memory_stay_flat_over_hundreds_of_requests(tmp_path):
    from openai import OpenAI

    config = config_with(tmp_path, min_workers=1, max_workers=1)
    s = Server(tmp_path, "--config", str(config)).wait_ready()
    try:
        client = OpenAI(base_url=f"{s.base}/v1", api_key="unused", max_retries=0, timeout=120)
        (worker,) = wait_for(lambda: worker_pids(s.port), 60, "the always-on worker")
        serve_requests(client, 0, WARMUP)
        after_warmup = {"worker": rss_mb(worker), "gateway": rss_mb(s.proc.pid)}
        serve_requests(client, WARMUP, RUN)
        after_run = {"worker": rss_mb(worker), "gateway": rss_mb(s.proc.pid)}
        print(f"RSS MB after {WARMUP} warm-up requests {after_warmup}, after {RUN} more {after_run}")
        assert worker_pids(s.port) == [worker], "the same worker served every request"
        for role, before in after_warmup.items():
            assert after_run[role] <= before * 1.15, (
                f"{role} grew from {before:.0f} to {after_run[role]:.0f} MB over {RUN} requests"
            )
    finally:
        s.stop()
