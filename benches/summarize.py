#!/usr/bin/env python3
"""Summarize the criterion results of `cargo bench --bench throughput` as Markdown tables.

Reads target/criterion/*/*/new/{benchmark,estimates}.json (the last run of each benchmark),
takes the median time per iteration, and prints:

1. throughput in millions of operations per second, one table per size, scenarios x threads
   as columns and contenders as rows;
2. the ratios aside/moka (moka default, TinyLFU) and aside/quick_cache per scenario;
3. the throughput targets of the benchmarks issue, each with met / missed and the margin.

Usage: python3 benches/summarize.py [TARGET_DIR] [--size SIZE]

TARGET_DIR defaults to ./target. --size (e.g. 10k) restricts the tables to one cache size and
evaluates the targets at that size (they are defined at 100k, the default).
"""

import json
import os
import sys
from collections import defaultdict

ASIDE = ["aside_lru", "aside_lfu", "aside_fifo", "aside_sampled_ttl", "aside_wtinylfu", "aside_s3fifo"]
ORDER = ASIDE + ["moka_tinylfu", "moka_lru", "moka_segmented8", "quick_cache", "mutex_lru", "hashmap_floor"]
SCENARIOS = ["get_hit/zipf", "miss_insert/unique", "mixed90/zipf", "mixed50/zipf"]


def load(target):
    root = os.path.join(target, "criterion")
    results = {}  # (scenario, size, threads, contender) -> Mops/s
    if not os.path.isdir(root):
        return results
    for dirpath, _dirs, files in os.walk(root):
        if not dirpath.endswith(os.path.join("", "new")) or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        parts = bench["group_id"].split("/")
        if len(parts) != 4 or not parts[3].endswith("t"):
            continue  # not a throughput-bench group
        scenario, size, threads = "/".join(parts[:2]), parts[2], int(parts[3][:-1])
        elements = (bench.get("throughput") or {}).get("Elements")
        if not elements:
            continue
        ns = est["median"]["point_estimate"]
        results[(scenario, size, threads, bench["value_str"] or bench["function_id"])] = elements / ns * 1e3
    return results


def size_key(s):
    mult = {"k": 1e3, "M": 1e6}.get(s[-1], 1)
    return float(s.rstrip("kM")) * mult


def main():
    args = sys.argv[1:]
    only = None
    if "--size" in args:
        i = args.index("--size")
        only = args[i + 1]
        del args[i : i + 2]
    target = args[0] if args else "target"
    r = load(target)
    if only:
        r = {k: v for k, v in r.items() if k[1] == only}
    if not r:
        print("no throughput results under", target)
        return
    sizes = sorted({k[1] for k in r}, key=size_key)
    for size in sizes:
        cols = [(s, t) for s in SCENARIOS for t in (1, 2) if any(k[:3] == (s, size, t) for k in r)]
        print(f"### Throughput, {size} entries (million operations per second, median; higher is better)\n")
        print("| contender | " + " | ".join(f"{s.split('/')[0]} {t}t" for s, t in cols) + " |")
        print("|---|" + "---:|" * len(cols))
        names = [n for n in ORDER if any(k[1] == size and k[3] == n for k in r)]
        names += sorted({k[3] for k in r if k[1] == size} - set(names))
        for n in names:
            cells = []
            for s, t in cols:
                v = r.get((s, size, t, n))
                cells.append("-" if v is None else f"{v:.1f}")
            print(f"| {n} | " + " | ".join(cells) + " |")
        print()

        print(f"### Ratios, {size} entries: aside / moka (default) and aside / quick_cache\n")
        print("| scenario | " + " | ".join(f"{a} /moka | {a} /qc" for a in ASIDE) + " |")
        print("|---|" + "---:|" * (2 * len(ASIDE)))
        for s, t in cols:
            cells = []
            for a in ASIDE:
                v = r.get((s, size, t, a))
                m = r.get((s, size, t, "moka_tinylfu"))
                q = r.get((s, size, t, "quick_cache"))
                cells.append("-" if v is None or m is None else f"{v / m:.2f}x")
                cells.append("-" if v is None or q is None else f"{v / q:.2f}x")
            print(f"| {s.split('/')[0]} {t}t | " + " | ".join(cells) + " |")
        print()

    size = only or "100k"
    if not any(k[1] == size for k in r):
        return
    print(f"### Targets ({size} entries; the issue defines them at 100k)\n")

    def get(s, t, n):
        return r.get((s, size, t, n))

    def verdict(ok):
        return "met" if ok else "MISSED"

    lines = []
    moka = get("get_hit/zipf", 2, "moka_tinylfu")
    qc = get("get_hit/zipf", 2, "quick_cache")
    if moka:
        for a in ASIDE:
            v = get("get_hit/zipf", 2, a)
            if v:
                lines.append(f"get-hit 2t, {a} >= 3x moka: {v / moka:.2f}x -> {verdict(v / moka >= 3)}")
    if qc:
        best = max(((get("get_hit/zipf", 2, a) or 0, a) for a in ASIDE))
        lines.append(f"get-hit 2t, fastest aside ({best[1]}) >= quick_cache: {best[0] / qc:.2f}x -> {verdict(best[0] >= qc)}")
    moka = get("mixed90/zipf", 2, "moka_tinylfu")
    if moka:
        for a in ASIDE:
            v = get("mixed90/zipf", 2, a)
            if v:
                lines.append(f"mixed 90/10 2t, {a} >= 3x moka: {v / moka:.2f}x -> {verdict(v / moka >= 3)}")
    floor = get("get_hit/zipf", 1, "hashmap_floor")
    if floor:
        for a in ASIDE:
            v = get("get_hit/zipf", 1, a)
            if v:
                lines.append(
                    f"get-hit 1t, {a} time per op <= 3x HashMap floor: {floor / v:.2f}x -> {verdict(floor / v <= 3)}"
                )
    for line in lines:
        print("- " + line)
    print()


if __name__ == "__main__":
    main()
