"""Medians per (label, concurrency) of a runs.jsonl file, with min-max over rounds, ratios
against a baseline label measured in the same run, and each label's scaling (throughput at the
highest concurrency over throughput at concurrency 1).

usage: python3 summarize.py RUNS.jsonl [BASELINE_LABEL]     (default baseline: direct)
"""

import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
baseline = sys.argv[2] if len(sys.argv) > 2 else "direct"
groups = defaultdict(list)
values = defaultdict(list)
for r in rows:
    if "value" in r:
        values[r["label"]].append(r["value"])
    else:
        groups[(r["label"], r["max_concurrency"])].append(r)
for label, vs in values.items():
    print(f"{label}: median {statistics.median(vs):.2f} (min {min(vs):.2f}, max {max(vs):.2f}, n={len(vs)})")


def tput(label, c):
    rs = groups.get((label, c))
    return statistics.median(r["output_throughput"] for r in rs) if rs else float("nan")


vs = f"vs {baseline}"
print(f"{'server':<14} {'conc':>4} {'runs':>4} {'out tok/s (median, min-max)':>30} {'TTFT ms':>9} {'TPOT ms':>9} {vs:>12}")
for (label, c), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    tps = [r["output_throughput"] for r in rs]
    med = statistics.median(tps)
    ttft = statistics.median(r["median_ttft_ms"] for r in rs)
    tpot = statistics.median(r["median_tpot_ms"] for r in rs)
    spread = f"{med:7.1f} ({min(tps):.1f}-{max(tps):.1f})"
    print(f"{label:<14} {c:>4} {len(rs):>4} {spread:>30} {ttft:>9.1f} {tpot:>9.1f} {med / tput(baseline, c):>12.3f}")

print("\nscaling: output tok/s at the highest concurrency / at concurrency 1 (medians)")
for label in sorted({l for l, _ in groups}):
    cs = sorted(c for l, c in groups if l == label)
    if len(cs) > 1 and cs[0] == 1:
        print(f"{label:<14} c={cs[-1]}/c=1 {tput(label, cs[-1]) / tput(label, 1):.2f}")
