"""Model-first configs: every shipped config passes `sluice models check`; `sluice models plan`
sizes models on GPU types (hand-worked numbers); a broken config is named with its problems;
and a real worker started on a typed GPU runs with that type's engine settings."""

import json
import subprocess

import httpx

from conftest import MODEL, ROOT, Server, config_with, get_json, sluice_bin, wait_for


def sluice(*args, cwd=ROOT):
    return subprocess.run([sluice_bin(), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def plan(*args, config=None):
    extra = ["--config", str(config)] if config else []
    r = sluice("models", "plan", *args, "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_every_shipped_config_passes_the_check():
    r = sluice("models", "check")
    assert r.returncode == 0, r.stdout + r.stderr
    models = sorted(p.stem for p in (ROOT / "configs/models").glob("*.toml"))
    assert len(models) >= 9
    for name in models:
        assert f"ok   {name} " in r.stdout, r.stdout
    assert f"{len(models)} model configs checked" in r.stdout
    assert "FAIL" not in r.stdout


def test_plan_sizes_by_hand_worked_numbers():
    # Llama-3.1-8B Q4_K_M (4,920,739,232 B) on one H100: KV 2 x 32 x 8 x 128 x 2 = 128 KiB per
    # token; 80 GiB x 79.6/80 / 1.2 = 66.33 GiB - 4.58 GiB weights = 61.75 GiB / 2 GiB per
    # 16K-token sequence: 30.
    p = plan("llama-3.1-8b-instruct", "--gpu", "H100-80GB")
    assert p["kv_cache_bytes_per_token"] == 128 * 1024
    assert (p["fits"], p["gpus_per_worker"], p["max_num_seqs"]) == (True, 1, 30)
    assert abs(p["weights_gib"] - 4.583) < 0.001
    assert p["vram_gib_per_gpu"] <= p["memory_gib"]
    # Llama-3.3-70B (42.5 GB) with its H100 setting (18 sequences) on one GPU: does not fit;
    # two do; one alone fits 5.
    one = plan("llama-3.3-70b-instruct", "--gpu", "H100-80GB", "--gpus", "1")
    assert (one["fits"], one["min_gpus_per_worker"], one["max_num_seqs"]) == (False, 2, 5)
    assert plan("llama-3.3-70b-instruct", "--gpu", "H100-80GB")["gpus_per_worker"] == 2
    # A type the config does not list: the fewest GPUs that fit (eight 24 GiB cards).
    p = plan("llama-3.3-70b-instruct", "--gpu", "RTX4090")
    assert (p["gpus_per_worker"], p["fits"]) == (8, True)
    text = sluice("models", "plan", "qwen2.5-7b-instruct", "--gpu", "L40S").stdout
    assert "largest max_num_seqs on 1 GPU(s): 18" in text and "fits" in text


def test_unknown_gpu_types_and_broken_configs_are_named(tmp_path):
    r = sluice("models", "plan", "llama-3.1-8b-instruct", "--gpu", "TPU")
    assert r.returncode != 0 and "unknown GPU type `TPU`" in r.stderr and "H100-80GB" in r.stderr
    config = config_with(tmp_path)
    broken = tmp_path / "configs/models/llama-3.1-8b-instruct.toml"
    # The H100 entry (the [engine] value above it stays).
    text = broken.read_text().replace(
        'type = "H100-80GB"\ngpus_per_worker = 1\nmax_num_seqs = 30',
        'type = "H100-80GB"\ngpus_per_worker = 1\nmax_num_seqs = 31',
    )
    text = text.replace('type = "RTX4090"', 'type = "RTX9090"')
    text = text.replace('revision = "bf5b95e96dac0462e2a09145ec66cae9a3f12067"', 'revision = "main"')
    broken.write_text(text)
    r = sluice("models", "check", "--config", str(config))
    assert r.returncode == 1, r.stdout
    assert "FAIL llama-3.1-8b-instruct" in r.stdout
    assert "on H100-80GB: 31 sequences of 16384 tokens need" in r.stdout and "(at most 30 fit)" in r.stdout
    assert "GPU type `RTX9090` is not in the GPU table" in r.stdout
    assert "is not a commit hash" in r.stdout
    assert "1 of" in r.stderr and "llama-3.1-8b-instruct" in r.stderr
    assert "ok   qwen2.5-7b-instruct" in r.stdout, "the others are still checked"


GPU_ENTRIES = """
[[gpu]]
type = "H100-80GB"
gpus_per_worker = 1
max_num_seqs = 3

[[gpu]]
type = "L40S"
gpus_per_worker = 2
max_num_seqs = 2
"""


def test_a_worker_runs_with_the_settings_of_the_gpu_type_it_got(tmp_path):
    # Two typed "GPUs" (the CPU build ignores CUDA_VISIBLE_DEVICES): no H100 here, so the worker
    # falls back to two L40S and takes L40S's max_num_seqs (2), not the H100's (3) or the
    # [engine] value (1).
    config = config_with(tmp_path, max_workers=1)
    model = tmp_path / f"configs/models/{MODEL}.toml"
    text = model.read_text().replace("\n[scaling]", GPU_ENTRIES + "\n[scaling]", 1)
    model.write_text(text)
    s = Server(tmp_path, "--config", str(config), env={"SLUICE_GPUS": "L40S:0,1;RTX4090:2"}).wait_ready()
    try:
        with httpx.Client(timeout=120) as http:
            r = http.post(
                f"{s.base}/v1/completions",
                json={"model": MODEL, "prompt": "hi", "max_tokens": 1},
            )
            assert r.status_code == 200, r.text
        fleet = wait_for(lambda: get_json(f"{s.base}/v2/{MODEL}/health")[1]["fleet"], 30, "the worker")
        assert (fleet[0].get("gpuType"), fleet[0]["gpus"]) == ("L40S", "0,1"), fleet
        line = wait_for(
            lambda: [l for l in s.log_text().splitlines() if "model loaded" in l],
            30,
            "the worker's load line",
        )[0]
        assert "gpu_type=\"L40S\"" in line and "max_num_seqs=2" in line, line
    finally:
        s.stop()
