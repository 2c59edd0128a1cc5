"""GET /metrics: Prometheus' text format, read with the official parser (`prometheus_client`),
and its series moving after real requests (streamed and not, /v1 and /v2)."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import MODEL, wait_for


def scrape(base):
    r = httpx.get(f"{base}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    types = {}
    for family in text_string_to_metric_families(r.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_after_requests(server, client):
    before, _ = scrape(server.base)
    msgs = [{"role": "user", "content": "Count to five."}]
    client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8, temperature=0, stream=True))
    assert chunks
    r = httpx.post(f"{server.base}/v2/{MODEL}/runsync",
                   json={"input": {"prompt": "Hello", "sampling_params": {"max_tokens": 4}}}, timeout=120)
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text
    after, types = scrape(server.base)

    chat = dict(route="/v1/chat/completions", method="POST", status="200")
    assert value(after, "sluice_http_requests_total", **chat) - value(before, "sluice_http_requests_total", **chat) >= 2
    ep = dict(endpoint=MODEL)
    for hist, n in [("sluice_e2e_request_latency_seconds", 2), ("sluice_time_to_first_token_seconds", 1),
                    ("sluice_time_per_output_token_seconds", 1)]:
        assert types[hist] == "histogram"
        assert value(after, f"{hist}_count", **ep) - value(before, f"{hist}_count", **ep) >= n, hist
        # Buckets as vLLM's, not a summary.
        assert value(after, f"{hist}_bucket", le="+Inf", **ep) == value(after, f"{hist}_count", **ep)
    for counter in ["sluice_prompt_tokens_total", "sluice_generation_tokens_total"]:
        assert value(after, counter, **ep) > value(before, counter, **ep), counter
    done = dict(endpoint=MODEL, state="COMPLETED")
    assert value(after, "sluice_jobs_finished_total", **done) - value(before, "sluice_jobs_finished_total", **done) >= 3
    assert value(after, "sluice_key_requests_total", key="anonymous") > value(before, "sluice_key_requests_total", key="anonymous")
    # Store series: present for the endpoint, the same on any gateway of the store.
    assert (("sluice_queue_depth", (("endpoint", MODEL), ("priority", "normal"))) in after)
    assert value(after, "sluice_store_jobs_total", endpoint=MODEL, event="completed") >= 3
    running = sum(value(after, "sluice_workers", endpoint=MODEL, state=s) for s in ["idle", "running"])
    assert running >= 1
    # The process started a worker: its cold start was timed, phase by phase, by tier.
    for phase in ["spawn", "ready"]:
        starts = {dict(labels)["tier"]: v for (name, labels), v in after.items()
                  if name == "sluice_cold_start_duration_seconds_count"
                  and ("phase", phase) in labels and ("endpoint", MODEL) in labels}
        assert sum(starts.values()) >= 1 and set(starts) <= {"parked", "ram", "disk", "remote"}, (phase, starts)
    assert value(after, "sluice_worker_milliseconds_total", endpoint=MODEL, kind="flex") > 0


def test_workers_report_their_engines_figures_through_pings(server, client):
    client.completions.create(model=MODEL, prompt="One, two,", max_tokens=5, temperature=0)

    def generated():
        samples, _ = scrape(server.base)
        return sum(v for (name, labels), v in samples.items()
                   if name == "sluice_engine_tokens_total" and ("kind", "generated") in labels
                   and ("endpoint", MODEL) in labels)

    # A worker's ping carries its cumulative counts (at most one ping interval late).
    assert wait_for(generated, 30, "a ping with the engine's token counts") >= 5
    samples, _ = scrape(server.base)
    assert any(name == "sluice_engine_running_jobs" for name, _ in samples)


def test_unknown_routes_are_one_series(server):
    before, _ = scrape(server.base)
    for i in range(3):
        httpx.get(f"{server.base}/no/such/route/{i}", timeout=10)
    after, _ = scrape(server.base)
    miss = dict(route="unmatched", method="GET", status="404")
    assert value(after, "sluice_http_requests_total", **miss) - value(before, "sluice_http_requests_total", **miss) == 3
    assert not any("/no/such" in str(labels) for _, labels in after)


def test_invented_methods_add_no_series(server):
    for i in range(30):
        httpx.request(f"FOO{i}", f"{server.base}/v1/models", timeout=10)
    after, _ = scrape(server.base)
    methods = {dict(labels).get("method") for name, labels in after if name == "sluice_http_requests_total"}
    assert "other" in methods and not [m for m in methods if m and m.startswith("FOO")], methods
