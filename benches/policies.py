#!/usr/bin/env python3
"""Policy comparison from a replay CSV (`ASIDE_BENCH_OUT=DIR cargo run --release --example replay`).

Prints, for the single-threaded replay:
1. per contender: the mean gap to Belady-optimal (OPT hit% - contender hit%, in points, over
   every trace x capacity point), the mean hit%, and on how many points it is >= moka's default;
2. the "best aside policy >= moka" check per point, and the points where it fails;
3. per aside policy, the share of points where it alone is >= moka (the default-policy criterion
   of the policies issue: >= 90%).

Usage: python3 benches/policies.py DIR/replay.csv
"""

import csv
import sys
from collections import defaultdict

MOKA = "moka_tinylfu"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/bench-report/replay.csv"
    points = defaultdict(dict)  # (trace, capacity) -> contender -> hit%
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["mode"] != "single":
                continue
            points[(row["trace"], int(row["capacity"]))][row["contender"]] = float(row["hit_pct"])
    if not points:
        sys.exit(f"policies: no single-threaded rows in {path}")
    contenders = sorted({c for p in points.values() for c in p} - {"opt"})
    aside = [c for c in contenders if c.startswith("aside_") and c != "aside_lru_1sh"]
    n = len(points)
    print(f"### Policies against OPT and moka ({n} trace x capacity points, single-threaded)\n")
    print("| contender | mean hit% | mean gap to OPT (points) | points >= moka default |")
    print("|---|---:|---:|---:|")
    rows = []
    for c in contenders:
        have = [p for p in points.values() if c in p and "opt" in p]
        if not have:
            continue
        gap = sum(p["opt"] - p[c] for p in have) / len(have)
        mean = sum(p[c] for p in have) / len(have)
        ge = sum(1 for p in have if MOKA in p and p[c] >= p[MOKA] - 1e-9)
        rows.append((gap, c, mean, ge, len(have)))
    for gap, c, mean, ge, k in sorted(rows):
        print(f"| {c} | {mean:.2f} | {gap:.2f} | {ge} of {k} ({100 * ge / k:.0f}%) |")

    print("\n### Best aside policy against moka's default, per point\n")
    fails = []
    for (trace, cap), p in sorted(points.items()):
        if MOKA not in p:
            continue
        best = max(aside, key=lambda c: p.get(c, -1))
        if p[best] < p[MOKA] - 1e-9:
            fails.append((trace, cap, best, p[best], p[MOKA]))
    print(f"best aside >= moka on {n - len(fails)} of {n} points")
    for trace, cap, best, b, m in fails:
        print(f"- {trace} @ {cap}: best aside {best} {b:.2f} < moka {m:.2f} ({b - m:+.2f})")


if __name__ == "__main__":
    main()
