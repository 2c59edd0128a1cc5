"""End-to-end fixtures: a real `sluice serve` process with the real model.

SLUICE_BIN names the binary (scripts/test builds it); the model comes from the normal cache
($SLUICE_HOME, default ~/.cache/sluice), which `sluice serve` fills on first use.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = "smollm2-135m-instruct"

# Every process the tests start gets a SLUICE_HOME of this session: the model cache is the
# user's (linked), but files and batches are not, so a batch a killed run left in progress is
# not resumed by every later server, tests or benchmarks alike.
USER_HOME = Path(os.environ.get("SLUICE_HOME", Path.home() / ".cache/sluice"))
SESSION_HOME = USER_HOME / "e2e" / str(os.getpid())
if not os.environ.get("SLUICE_E2E_HOME"):
    shutil.rmtree(USER_HOME / "e2e", ignore_errors=True)
    (USER_HOME / "models").mkdir(parents=True, exist_ok=True)
    SESSION_HOME.mkdir(parents=True)
    (SESSION_HOME / "models").symlink_to(USER_HOME / "models")
    os.environ["SLUICE_HOME"] = str(SESSION_HOME)
    os.environ["SLUICE_E2E_HOME"] = "1"


def sluice_bin() -> str:
    default = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "sluice"
    return os.environ.get("SLUICE_BIN", str(default))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def config_with(tmp: Path, **settings) -> Path:
    """A copy of configs/ with keys of the model's config replaced (`min_workers=1`, ...).
    Parking is off unless asked for (`parked_workers=N`): these tests see idle workers drained
    and gone, as they were before parking existed; test_coldstart.py tests parking. Files and
    batches live in `tmp/files`: a batch another test left running is not resumed here (its
    low-priority jobs once took a soak test's worker)."""
    settings.setdefault("parked_workers", 0)
    cfg = tmp / "configs"
    shutil.copytree(ROOT / "configs", cfg)
    platform = cfg / "sluice.toml"
    platform.write_text(
        platform.read_text().replace("[gateway]\n", f"[gateway]\nfiles_dir = {json.dumps(str(tmp / 'files'))}\n", 1)
    )
    path = cfg / f"models/{MODEL}.toml"
    text = path.read_text()
    for key, value in settings.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {json.dumps(value)}", text)
        assert n == 1, f"{key} is not a key of {path}"
    path.write_text(text)
    return cfg / "sluice.toml"


def backend_config(tmp: Path, backend: str, **settings) -> Path:
    """configs/ copied (see `config_with`; parking as shipped unless `settings` say) with the
    model's engine backend set (`engine.backend`: `llamacpp` or `mistralrs`)."""
    settings.setdefault("parked_workers", 1)
    path = config_with(tmp, **settings)
    model = path.parent / f"models/{MODEL}.toml"
    text = model.read_text()
    assert "\n[engine]\n" in text and "\nbackend = " not in text
    model.write_text(text.replace("\n[engine]\n", f'\n[engine]\nbackend = "{backend}"\n', 1))
    return path


def gateway_config(tmp: Path, **gateway) -> Path:
    """configs/ copied (see `config_with`) with keys of `[gateway]` set: replaced where the
    file has them, added otherwise."""
    path = config_with(tmp)
    text = path.read_text()
    for key, value in gateway.items():
        setting = f"{key} = {json.dumps(value)}"
        text, n = re.subn(rf"(?m)^{key} = .*$", setting, text)
        if n == 0:
            text = text.replace("[gateway]\n", f"[gateway]\n{setting}\n", 1)
    path.write_text(text)
    return path


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def worker_pids(port):
    out = subprocess.run(["pgrep", "-f", f"worker .*127.0.0.1:{port}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


class Server:
    """One `sluice serve` child process, its log in a file."""

    def __init__(self, tmp: Path, *extra: str, env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"serve-{self.port}.log"
        self.log = open(self.log_path, "w")
        config = [] if "--config" in extra else ["--config", str(ROOT / "configs/sluice.toml")]
        self.proc = subprocess.Popen(
            [sluice_bin(), "serve", "--port", str(self.port), *config, *extra],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice serve exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                status, _ = get_json(f"{self.base}/ready", timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"not ready after {timeout} s:\n{self.log_path.read_text()[-4000:]}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()


@pytest.fixture(scope="session")
def default_server(tmp_path_factory):
    """`sluice serve` with the shipped configs, shared by the whole session."""
    s = Server(tmp_path_factory.mktemp("serve")).wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def server(default_server):
    return default_server


# The engine backends the conformance tests run against (every one the default build has);
# the first is the default for this CPU model, served by the shared `server`.
BACKENDS = os.environ.get("SLUICE_BACKENDS", "llamacpp,mistralrs").split(",")


@pytest.fixture(scope="session", params=BACKENDS)
def engine_server(request, tmp_path_factory):
    """A server per engine backend. Test modules that exercise generation take it as their
    `server` (`server = conformance_server`), so every backend passes the same tests."""
    if request.param == "llamacpp":
        yield request.getfixturevalue("default_server")
        return
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    s = Server(tmp, "--config", str(backend_config(tmp, request.param))).wait_ready()
    yield s
    s.stop()


@pytest.fixture
def conformance_server(engine_server):
    return engine_server


@pytest.fixture
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0, timeout=120)
