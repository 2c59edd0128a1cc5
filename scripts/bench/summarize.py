"""Medians per (label, concurrency) of a runs.jsonl file, and ratios against `direct`."""

import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = defaultdict(list)
values = defaultdict(list)
for r in rows:
    if "value" in r:
        values[r["label"]].append(r["value"])
    else:
        groups[(r["label"], r["max_concurrency"])].append(r)
for label, vs in values.items():
    print(f"{label}: median {statistics.median(vs):.2f} (min {min(vs):.2f}, max {max(vs):.2f}, n={len(vs)})")

print(f"{'server':<10} {'conc':>4} {'runs':>4} {'out tok/s (median, min-max)':>30} {'TTFT ms':>9} {'TPOT ms':>9} {'vs direct':>9}")
for (label, c), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    tps = [r["output_throughput"] for r in rs]
    med = statistics.median(tps)
    direct = groups.get(("direct", c))
    ratio = med / statistics.median(r["output_throughput"] for r in direct) if direct else float("nan")
    ttft = statistics.median(r["median_ttft_ms"] for r in rs)
    tpot = statistics.median(r["median_tpot_ms"] for r in rs)
    spread = f"{med:7.1f} ({min(tps):.1f}-{max(tps):.1f})"
    print(f"{label:<10} {c:>4} {len(rs):>4} {spread:>30} {ttft:>9.1f} {tpot:>9.1f} {ratio:>9.3f}")
