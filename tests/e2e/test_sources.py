"""Remote sources of the weight cache against a local HTTP server (no hub is reachable here):
the Hugging Face Hub's `resolve` URLs under HF_ENDPOINT with HF_TOKEN, a resumed download
after a broken transfer, HF_HUB_OFFLINE, a checksum mismatch, a plain URL and a directory
source; the disk tier's LRU budget; a small safetensors repo the test makes, pulled from the
local Hub and served. The GGUF is the real SmolLM2 file from the normal cache (served as
published, so no conversion runs); each pull goes to a fresh SLUICE_HOME."""

import hashlib
import json
import urllib.request
import http.server
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import MODEL, ROOT, sluice_bin

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cached_gguf() -> Path:
    home = Path(os.environ.get("SLUICE_HOME", Path.home() / ".cache/sluice"))
    p = home / "models" / MODEL / GGUF
    if not p.exists():
        subprocess.run([sluice_bin(), "models", "pull", MODEL, "--config", str(ROOT / "configs/sluice.toml")], check=True)
    return p


class Hub(http.server.ThreadingHTTPServer):
    """Serves `data` at /{repo}/resolve/{revision}/{file} and /plain/{file}, with Range;
    records each request's path, Authorization and Range; `cut` bytes: the first answer
    breaks off after that many bytes."""

    def __init__(self, data: bytes, cut: int | None = None):
        self.data, self.cut, self.seen = data, cut, []
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        hub: Hub = self.server
        hub.seen.append((self.path, self.headers.get("Authorization"), self.headers.get("Range")))
        if not (self.path == f"/test/tiny/resolve/abc123/{GGUF}" or self.path == f"/plain/{GGUF}"):
            self.send_error(404, "Entry not found")
            return
        start = 0
        if r := self.headers.get("Range"):
            start = int(r.removeprefix("bytes=").split("-")[0])
        body = hub.data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if hub.cut is not None:
            body, hub.cut = body[: hub.cut], None
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


def config(tmp: Path, source: str) -> Path:
    cfg = tmp / "configs"
    shutil.copytree(ROOT / "configs", cfg)
    text = (cfg / f"models/{MODEL}.toml").read_text()
    head, rest = text.split("[source]", 1)
    rest = rest[rest.index("[weights]"):]
    text = head + "[source]\n" + source + "\n" + rest
    text = text.replace('serve_format = "q4k"', 'serve_format = "original"')
    (cfg / f"models/{MODEL}.toml").write_text(text)
    return cfg / "sluice.toml"


def pull(cfg: Path, home: Path, **env):
    return subprocess.run([sluice_bin(), "models", "pull", MODEL, "--config", str(cfg)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SLUICE_HOME": str(home), **env})


HUB = 'kind = "hub"\nrepo = "test/tiny"\nrevision = "abc123"'


def test_hub_source_with_token_and_a_resumed_download(tmp_path):
    data = cached_gguf().read_bytes()
    hub = Hub(data, cut=len(data) // 3)
    cfg, home = config(tmp_path, HUB), tmp_path / "home"
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test"}
    first = pull(cfg, home, **env)
    assert first.returncode != 0 and "interrupted" in first.stderr + first.stdout, first
    second = pull(cfg, home, **env)
    assert second.returncode == 0, second.stderr
    got = home / "models" / MODEL / GGUF
    assert hashlib.sha256(got.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    paths = {p for p, _, _ in hub.seen}
    assert paths == {f"/test/tiny/resolve/abc123/{GGUF}"}, hub.seen
    assert all(auth == "Bearer hf_test" for _, auth, _ in hub.seen), hub.seen
    # The second request resumed where the first broke off.
    assert hub.seen[-1][2] == f"bytes={len(data) // 3}-", hub.seen
    assert not list((home / "models" / MODEL).glob(".*.part"))
    # Cached: offline mode is fine now, and the hub is not asked again.
    n = len(hub.seen)
    assert pull(cfg, home, **env, HF_HUB_OFFLINE="1").returncode == 0
    assert len(hub.seen) == n
    hub.shutdown()


def test_offline_mode_wrong_checksums_and_missing_files_are_clear_errors(tmp_path):
    data = cached_gguf().read_bytes()
    hub = Hub(data)
    cfg = config(tmp_path, HUB)
    r = pull(cfg, tmp_path / "h1", HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1")
    assert r.returncode != 0 and "HF_HUB_OFFLINE" in r.stderr, r.stderr
    assert hub.seen == []
    # A repo without the file: the Hub's 404, named.
    bad = config(tmp_path / "b", HUB.replace("test/tiny", "test/none"))
    r = pull(bad, tmp_path / "h2", HF_ENDPOINT=hub.url)
    assert r.returncode != 0 and "HTTP 404" in r.stderr and "test/none/resolve" in r.stderr, r.stderr
    # Bytes that do not match weights.sha256: refused and not kept.
    hub.data = data[:-1] + b"x"
    r = pull(config(tmp_path / "c", HUB), tmp_path / "h3", HF_ENDPOINT=hub.url)
    assert r.returncode != 0 and "checksum mismatch" in r.stderr, r.stderr
    assert not (tmp_path / "h3" / "models" / MODEL / GGUF).exists()
    hub.shutdown()


def test_plain_url_and_directory_sources(tmp_path):
    src = cached_gguf()
    hub = Hub(src.read_bytes())
    r = pull(config(tmp_path / "u", f'kind = "url"\nurl = "{hub.url}/plain/{GGUF}"'), tmp_path / "h1")
    assert r.returncode == 0, r.stderr
    assert hub.seen[0][1] is None, "no token sent to a plain URL"
    r = pull(config(tmp_path / "d", f'kind = "dir"\npath = "{src.parent}"'), tmp_path / "h2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "h2" / "models" / MODEL / GGUF).stat().st_size == src.stat().st_size
    hub.shutdown()


def test_lru_eviction_keeps_the_budget_and_never_removes_a_model_in_use(tmp_path):
    """A running worker holds its model: `models gc` evicts the least recently used model
    that is not in use to fit the budget, leaves the one in use even over budget, and
    `models rm` refuses it until its worker is gone."""
    from conftest import Server, config_with, get_json, wait_for

    home = tmp_path / "home"
    src = cached_gguf().parent
    shutil.copytree(src, home / "models" / MODEL)
    shutil.copytree(src, home / "models" / "old-model")
    env = {**os.environ, "SLUICE_HOME": str(home)}
    cfg = config_with(tmp_path, min_workers=1)
    s = Server(tmp_path, "--config", str(cfg), env={"SLUICE_HOME": str(home)}).wait_ready()
    run = lambda *a: subprocess.run([sluice_bin(), "models", *a], capture_output=True, text=True, env=env, timeout=60)
    try:
        wait_for(lambda: get_json(f"{s.base}/ready")[1]["workers"][MODEL] == 1, 120, "the worker")
        ls = run("ls", "--config", str(cfg)).stdout
        row = next(l for l in ls.splitlines() if l.startswith(MODEL + " "))
        assert "old-model" in ls and "yes" in row, ls
        size = sum(f.stat().st_size for f in (home / "models" / MODEL).rglob("*") if f.is_file())
        # Room for one model: the one nobody uses goes, the one in use stays.
        r = run("gc", "--budget-gib", str(size * 1.5 / 2**30), "--config", str(cfg))
        assert r.returncode == 0 and "removed old-model" in r.stdout, r
        assert not (home / "models" / "old-model").exists()
        # Room for none: the model in use is still not removed.
        r = run("gc", "--budget-gib", "0.001", "--config", str(cfg))
        assert r.returncode == 0 and "removed" not in r.stdout, r
        r = run("rm", MODEL)
        assert r.returncode != 0 and "in use" in r.stderr, r
        assert (home / "models" / MODEL / "manifest.json").exists()
    finally:
        s.stop()
    wait_for(lambda: run("rm", MODEL).returncode == 0, 30, "the removal once its worker is gone")
    assert not (home / "models" / MODEL).exists()


def tiny_llama(dir: Path):
    """A small random Llama as a Hugging Face safetensors repo: config.json, model.safetensors
    (f32, 2 layers of width 64) and SmolLM2's tokenizer files. Its output is noise; the test
    checks that it loads and generates."""
    import array
    import random
    import struct

    dir.mkdir(parents=True)
    h, inter, layers, heads, kv, vocab = 64, 128, 2, 4, 2, 49152
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
              "hidden_size": h, "intermediate_size": inter, "vocab_size": vocab,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 2048,
              "tie_word_embeddings": True, "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2}
    (dir / "config.json").write_text(json.dumps(config))
    hd = h // heads
    shapes = {"model.embed_tokens.weight": [vocab, h], "model.norm.weight": [h]}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": [h, h], p + "self_attn.k_proj.weight": [kv * hd, h],
                   p + "self_attn.v_proj.weight": [kv * hd, h], p + "self_attn.o_proj.weight": [h, h],
                   p + "mlp.gate_proj.weight": [inter, h], p + "mlp.up_proj.weight": [inter, h],
                   p + "mlp.down_proj.weight": [h, inter], p + "input_layernorm.weight": [h],
                   p + "post_attention_layernorm.weight": [h]}
    rng = random.Random(0)
    header, blobs, offset = {}, [], 0
    for name, shape in shapes.items():
        n = shape[0] * (shape[1] if len(shape) > 1 else 1)
        data = array.array("f", [1.0] * n if len(shape) == 1 else [rng.uniform(-0.05, 0.05) for _ in range(n)]).tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(dir / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for b in blobs:
            f.write(b)
    tok = cached_gguf().parent / "tokenizer"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok / name, dir / name)


class RepoHub(http.server.ThreadingHTTPServer):
    """Serves the files of `dir` at /{repo}/resolve/{revision}/{file}."""

    def __init__(self, repo: str, dir: Path):
        self.prefix, self.dir, self.seen = f"/{repo}/resolve/main/", dir, []
        super().__init__(("127.0.0.1", 0), RepoHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class RepoHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        hub: RepoHub = self.server
        hub.seen.append(self.path)
        path = hub.dir / self.path.removeprefix(hub.prefix)
        if not self.path.startswith(hub.prefix) or not path.is_file():
            self.send_error(404, "Entry not found")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_a_safetensors_repo_from_the_hub_is_pulled_and_served(tmp_path):
    from conftest import Server, get_json

    repo = tmp_path / "repo"
    tiny_llama(repo)
    hub = RepoHub("test/tiny-llama", repo)
    sha = lambda f: hashlib.sha256((repo / f).read_bytes()).hexdigest()
    extras = ", ".join(f'{{ file = "{f}", sha256 = "{sha(f)}" }}'
                       for f in ("config.json", "tokenizer.json", "tokenizer_config.json"))
    cfg = tmp_path / "configs"
    (cfg / "models").mkdir(parents=True)
    (cfg / "sluice.toml").write_text('models_dir = "models"\nendpoints = ["tiny-llama"]\n')
    (cfg / "models/tiny-llama.toml").write_text(f"""name = "tiny-llama"
[source]
kind = "hub"
repo = "test/tiny-llama"
revision = "main"
[weights]
kind = "safetensors"
file = "model.safetensors"
sha256 = "{sha('model.safetensors')}"
extra_files = [{extras}]
[engine]
max_num_seqs = 1
context_length = 256
dtype = "f32"
[scaling]
min_workers = 1
max_workers = 1
""")
    home = tmp_path / "home"
    s = Server(tmp_path, "--config", str(cfg / "sluice.toml"),
               env={"SLUICE_HOME": str(home), "HF_ENDPOINT": f"http://127.0.0.1:{hub.server_address[1]}"}
               ).wait_ready()
    try:
        assert {p.rsplit("/", 1)[1] for p in hub.seen} == {
            "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"}, hub.seen
        body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
        req = urllib.request.Request(f"{s.base}/v1/chat/completions", json.dumps(body).encode(),
                                     {"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            out = json.loads(r.read())
        assert out["usage"]["completion_tokens"] >= 1, out
        assert out["usage"]["prompt_tokens"] > 5, "the repo's chat template and tokenizer were used"
        assert get_json(f"{s.base}/v2/tiny-llama/health")[1]["fleet"][0]["coldStart"]["tier"] in ("ram", "disk", "remote")
    finally:
        s.stop()
    hub.shutdown()


def test_a_worker_whose_model_cannot_load_says_why_in_the_endpoints_health(tmp_path):
    """sluice's engine worker runs its pre-flight (the model pulled, verified and loaded, one
    token generated) before it reports ready; a failure is reported as RunPod's SDK reports a
    failed fitness check, so it shows in the endpoint's health before the worker exits."""
    from conftest import Server, config_with, get_json

    home = tmp_path / "home"
    shutil.copytree(cached_gguf().parent, home / "models" / MODEL)
    for gguf in (home / "models" / MODEL).glob("*.gguf"):
        gguf.write_bytes(b"\0" * gguf.stat().st_size)  # the cached files damaged in place
    cfg = config_with(tmp_path)
    s = Server(tmp_path, "--config", str(cfg), env={"SLUICE_HOME": str(home)}).wait_ready()
    try:
        # A queued job starts a worker (from zero).
        r = httpx.post(f"{s.base}/v2/{MODEL}/run", json={"input": {"prompt": "Hi"}}, timeout=10)
        assert r.status_code == 200, r.text
        health, deadline = {}, time.time() + 60
        while time.time() < deadline and not health.get("fitnessFailures"):
            health = get_json(f"{s.base}/v2/{MODEL}/health")[1]
            time.sleep(0.3)
        failure = health["fitnessFailures"][0]
        assert failure["check"] == "model_load" and failure["reason"], failure
        assert failure["worker"].startswith(MODEL), failure
    finally:
        s.stop()
