"""`sluice bench` against `sluice serve` with the real model: it completes, and its result file
carries vLLM's keys with self-consistent numbers."""

import json
import subprocess

from conftest import sluice_bin

VLLM_KEYS = [
    "duration", "completed", "total_input_tokens", "total_output_tokens", "request_throughput",
    "output_throughput", "total_token_throughput", "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms",
    "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "median_itl_ms",
    "p99_itl_ms", "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms", "input_lens", "output_lens", "ttfts",
]


def test_bench_random_prompts_against_sluice(server, tmp_path):
    result, html = tmp_path / "r.json", tmp_path / "r.html"
    out = subprocess.run(
        [sluice_bin(), "bench", "--base-url", server.base, "--dataset-name", "random",
         "--random-input-len", "32", "--random-output-len", "12", "--num-prompts", "4",
         "--max-concurrency", "2", "--goodput", "e2el:60000", "--result-filename", str(result),
         "--html", str(html), "--max-duration-secs", "120"],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "completed 4 failed 0" in out.stdout
    r = json.loads(result.read_text())
    missing = [k for k in VLLM_KEYS if k not in r]
    assert not missing, missing
    assert r["completed"] == 4
    assert r["total_output_tokens"] == sum(r["output_lens"]) and all(n == 12 for n in r["output_lens"])
    # Random prompts have exactly 32 tokens; the chat template adds the same few to each.
    assert len(set(r["input_lens"])) == 1 and r["input_lens"][0] > 32
    assert abs(r["output_throughput"] - r["total_output_tokens"] / r["duration"]) < 1e-6
    assert r["request_goodput"] > 0
    assert "<svg" in html.read_text()


def test_a_cold_burst_from_zero_counts_each_worker_once(tmp_path):
    """Open loop from zero, vLLM's defaults for the cap (none): the timeline of sluice's
    workers never shows more than `max_workers` (a starting worker the store already sees is
    one worker), and the report carries the workload line and the cold start's phases."""
    from conftest import Server, config_with

    s = Server(tmp_path, "--config", str(config_with(tmp_path, max_workers=1, idle_timeout_secs=30))).wait_ready()
    result, html = tmp_path / "r.json", tmp_path / "r.html"
    try:
        out = subprocess.run(
            [sluice_bin(), "bench", "--base-url", s.base, "--num-prompts", "6", "--request-rate", "4",
             "--random-output-len", "24", "--result-filename", str(result), "--html", str(html),
             "--max-duration-secs", "120"],
            capture_output=True, text=True, timeout=180,
        )
    finally:
        s.stop()
    assert out.returncode == 0, out.stderr
    assert "no concurrency cap" in out.stdout and "open loop" in out.stdout
    assert "defaults unlike vllm bench serve: --num-prompts 16" not in out.stdout, "given explicitly"
    assert "--dataset-name builtin (vLLM: random)" in out.stdout
    r = json.loads(result.read_text())
    assert r["completed"] == 6 and r["max_concurrency"] is None
    counts = [n for _, n in r["workers_timeline"]]
    assert counts and max(counts) == 1, counts
    page = html.read_text()
    assert "Workload:" in page and "Cold starts (sluice)" in page
