"""Driver of scripts/bench/coldstart (see there): starts one server per tier, alternates
rounds over the tiers, prints a table of median (min-max) TTFT per tier and writes
results.json."""

import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

BIN, OUT, RUNS = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
MODEL = "smollm2-135m-instruct"
HOME = Path(os.environ.get("SLUICE_HOME", Path.home() / ".cache/sluice"))
SRC = HOME / "models" / MODEL


def port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Tier:
    def __init__(self, name, settings, source=None):
        self.name, self.port, self.ttft = name, port(), {"chat": [], "completion": []}
        self.base = f"http://127.0.0.1:{self.port}"
        self.home = OUT / f"home-{name}"
        if name != "remote":
            shutil.copytree(SRC, self.home / "models" / MODEL)
        cfg = OUT / f"configs-{name}"
        shutil.copytree("configs", cfg)
        path = cfg / f"models/{MODEL}.toml"
        text = path.read_text()
        for k, v in settings.items():
            text, n = re.subn(rf"(?m)^{k} = .*$", f"{k} = {v}", text)
            assert n == 1, k
        if source:
            head, rest = text.split("[source]", 1)
            text = head + "[source]\n" + source + "\n" + rest[rest.index("[weights]"):]
        path.write_text(text)
        self.log = open(OUT / f"serve-{name}.log", "w")
        self.proc = subprocess.Popen([BIN, "serve", "--port", str(self.port), "--config", str(cfg / "sluice.toml")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "SLUICE_HOME": str(self.home)})

    def fleet(self):
        return get(f"{self.base}/v2/{MODEL}/health")["fleet"]

    def wait(self, pred, what, limit=120):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                if pred():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name}: timed out waiting for {what}")

    def ready_for_round(self):
        if self.name == "parked":
            self.wait(lambda: [w["state"] for w in self.fleet()] == ["parked"], "a parked worker")
        elif self.name == "warm":
            self.wait(lambda: [w["state"] for w in self.fleet()] == ["idle"], "an idle worker")
        else:
            self.wait(lambda: self.fleet() == [], "no worker")
            time.sleep(0.3)  # the autoscaler's next ticks: the disk tier's demotion
            if self.name == "remote":
                shutil.rmtree(self.home / "models" / MODEL, ignore_errors=True)

    def measure(self, kind="chat"):
        if kind == "chat":
            path = "chat/completions"
            body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": True}
        else:
            path = "completions"
            body = {"model": MODEL, "prompt": "Hi", "max_tokens": 8, "stream": True}
        req = urllib.request.Request(f"{self.base}/v1/{path}", json.dumps(body).encode(),
                                     {"content-type": "application/json"})
        t0 = time.perf_counter()
        first = None
        with urllib.request.urlopen(req, timeout=300) as r:
            for line in r:
                if first is None and line.startswith(b"data:"):
                    first = time.perf_counter() - t0
        self.ttft[kind].append(first * 1000)
        tiers = [w.get("coldStart", {}).get("tier") for w in self.fleet()]
        return tiers


class Files(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=str(SRC), **k)

    def log_message(self, *a):
        pass


def main():
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    original = json.loads((SRC / "manifest.json").read_text())["original"]["file"]
    url = f'kind = "url"\nurl = "http://127.0.0.1:{files.server_address[1]}/{original}"'
    short = {"idle_timeout_secs": 1}
    tiers = [
        Tier("parked", {**short, "parked_workers": 1}),
        Tier("ram", {**short, "parked_workers": 0}),
        Tier("disk", {**short, "parked_workers": 0, "weights_ram_secs": 0}),
        Tier("remote", {**short, "parked_workers": 0}, source=url),
        Tier("warm", {"min_workers": 1, "parked_workers": 0}),
    ]
    try:
        for t in tiers:
            t.wait(lambda: urllib.request.urlopen(f"{t.base}/ready", timeout=2).status == 200, "ready")
        for t in tiers:
            if t.name in ("parked", "warm"):
                t.measure()  # the first start (not counted): makes the worker to park / keep
                t.ttft["chat"].clear()
        for r in range(RUNS):
            for kind in ("chat", "completion"):
                for t in tiers:
                    t.ready_for_round()
                    seen = t.measure(kind)
                    print(f"round {r + 1} {kind:<10} {t.name:<7} {t.ttft[kind][-1]:8.0f} ms  fleet tiers {seen}",
                          file=sys.stderr)
    finally:
        for t in tiers:
            t.proc.send_signal(signal.SIGTERM)
        for t in tiers:
            t.proc.wait(30)
    rows = {t.name: t.ttft for t in tiers}
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"zero -> first token by tier, ms, median (min-max) of {RUNS}; results in {OUT}")
    print("chat: 'Hi' as a chat (31 prompt tokens with SmolLM2's default system prompt);")
    print("completion: 'Hi' as a completion prompt (1 token): the start without the prefill")
    print("| tier | chat TTFT ms | vs warm | completion TTFT ms | vs warm |")
    print("|---|---|---|---|---|")
    fmt = lambda v: f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"
    for name, v in rows.items():
        ratio = lambda k: statistics.median(v[k]) / statistics.median(rows["warm"][k])
        print(f"| {name} | {fmt(v['chat'])} | {ratio('chat'):.2f}x | {fmt(v['completion'])} | {ratio('completion'):.2f}x |")


main()
