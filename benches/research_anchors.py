#!/usr/bin/env python3
"""Research anchors: the traces of `examples/replay.rs` replayed through libCacheSim's policies.

`examples/replay.rs` compares `aside` with its peers (moka, quick_cache) and with the exact LRU
and Belady's optimum. This script adds the published research policies as anchors, through the
Python bindings of libCacheSim (https://github.com/1a1a11a/libCacheSim, PyPI `libcachesim`):
ARC, LIRS, 2Q, Cacheus, LeCaR, LHD, SIEVE, S3-FIFO and W-TinyLFU, each with libCacheSim's
default parameters, at unit object size (capacity = entries), and per point the best of them.
libCacheSim's LRU and Belady (OPT) run too, as the correctness check: they must reproduce the
reference figures of the traces' README (the same figures replay.rs checks its exact LRU and OPT
against) to the second decimal.

It is not part of CI, and needs no Rust build. Set it up once, in a virtualenv:

    python3 -m venv .venv && .venv/bin/pip install libcachesim zstandard

(`zstandard` is optional: without it the `zstd` command decompresses the traces). Then:

    .venv/bin/python benches/research_anchors.py [--traces DIR] [--trace NAME[,NAME..]] [--quick]
        [--out DIR]

- `--traces DIR`: where the traces are (default: `$ASIDE_TRACES`, else `../shared/traces`
  relative to the repository root), read in place, zstd-compressed; nothing is copied into the
  repository.
- `--trace NAME`: only the traces whose short name or file name contains NAME
  (case-insensitive); repeat it or separate names with commas.
- `--quick`: only the small traces (the LIRS ones, OLTP, web07, corda), as replay's `--quick`.
- `--out DIR` (or `ASIDE_BENCH_OUT=DIR`): also write `DIR/research_anchors.csv`, columns
  `trace,capacity,policy,hits,hit_pct,requests,best_of`: one record per trace, capacity and
  policy (`lcs_arc`, `lcs_lirs`, ..., `lcs_lru`, `lcs_opt`), then a `best` record per point
  whose `best_of` names the best research policy (LRU and OPT excluded; on a tie, every
  policy that reaches it, joined with `+`). `trace` and `capacity`
  are replay.csv's, so the two files join on them.
- `--replay FILE`: a `replay.csv` of `examples/replay.rs` (`ASIDE_BENCH_OUT=DIR cargo run
  --release --example replay`); libCacheSim's LRU and OPT must then equal its `exact_lru` and
  `opt` to the hit at every point both files have (replay's exact LRU is the `lru` crate and
  is itself checked to the hit against aside's one-shard LRU).
- `--feed requests`: feed `Request` objects one by one from Python (slow: about 2 us per
  request) instead of the default, a temporary libCacheSim `oracleGeneral` binary file replayed
  by libCacheSim's own C loop; the two give the same hits.

Semantics are replay.rs's: every request is a `get` (libCacheSim admits every miss), every
object has size 1, so a cache of N bytes holds N entries; hit% = hits / requests, cold misses
counted. Without the traces folder or the libcachesim package, the script says so and exits
successfully.

Each policy runs in a forked child, so that a policy that aborts inside libCacheSim is reported
as `crash` instead of ending the run; only one process computes at a time.
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSV_NAME = "research_anchors.csv"
CSV_COLUMNS = ["trace", "capacity", "policy", "hits", "hit_pct", "requests", "best_of"]


def p(cap, lru=None, opt=None):
    return (cap, lru, opt)


# The traces, capacities ("points") and README reference figures of examples/replay.rs's
# `TRACES`. THE TWO LISTS MUST STAY IN SYNC: a trace or capacity added there is added here.
# (name, file, quick, README requests, README unique keys, [(capacity, LRU %, OPT %)])
TRACES = [
    ("OLTP", "arc-OLTP.lis.zst", True, 914_145, 186_880,
     [p(256, 16.69, 38.72), p(512, 23.69, 46.67), p(1000, 32.83, 53.61), p(2000, 42.47, 60.40)]),
    ("P2", "arc-P2.lis.zst", False, 12_729_495, 913_347, [p(20_000, 11.96), p(160_000, 57.64)]),
    ("P3", "arc-P3.lis.zst", False, 3_912_296, 762_543, [p(20_000, 2.28), p(160_000, 51.58)]),
    ("loop", "lirs-loop.txt.zst", True, 0, 0,
     [p(256, 0.00, 25.22), p(512, 0.00, 50.54), p(768, 0.00, 75.81), p(1024, 99.80, 99.80)]),
    ("sprite", "lirs-sprite.txt.zst", True, 0, 0,
     [p(128, 27.37, 57.23), p(256, 49.90, 75.06), p(512, 78.94, 88.20), p(768, 87.82, 91.95)]),
    ("multi1", "lirs-multi1.txt.zst", True, 0, 0,
     [p(128, 23.09, 49.24), p(256, 43.05, 52.63), p(512, 46.66, 59.09), p(768, 47.67, 65.54)]),
    ("multi2", "lirs-multi2.txt.zst", True, 0, 0,
     [p(128, 9.60, 37.90), p(256, 24.54, 46.96), p(512, 36.37, 53.83), p(768, 38.77, 58.63)]),
    ("gli", "lirs-gli.txt.zst", True, 0, 0,
     [p(128, 0.91, 9.53), p(256, 0.91, 18.04), p(512, 0.98, 35.06), p(768, 1.16, 46.70)]),
    ("cs", "lirs-cs.txt.zst", True, 0, 0,
     [p(128, 1.83, 9.38), p(256, 1.83, 16.93), p(512, 1.83, 32.03), p(768, 1.83, 47.13)]),
    ("cpp", "lirs-cpp.txt.zst", True, 0, 0,
     [p(128, 76.61, 84.39), p(256, 83.08, 86.48), p(512, 84.81, 86.48), p(768, 86.26, 86.48)]),
    ("ps", "lirs-ps.txt.zst", True, 0, 0,
     [p(128, 12.19, 36.50), p(256, 13.06, 53.43), p(512, 48.55, 58.33), p(768, 48.55, 63.23)]),
    ("zigzag", "lirs-zigzag.txt.zst", True, 0, 0,
     [p(128, 6.11, 6.11), p(256, 12.26, 12.26), p(512, 24.57, 24.57), p(768, 36.87, 36.87)]),
    ("scan", "lirs-scan.txt.zst", True, 0, 0, [p(128), p(256), p(512)]),
    ("backf", "lirs-backf.txt.zst", True, 0, 0, [p(128), p(256), p(512)]),
    ("web07", "cache2k-web07.be32.zst", True, 76_118, 20_484,
     [p(1000, 50.41, 63.58), p(3000, 58.54, 70.28)]),
    ("orm-busy", "cache2k-orm-busy.be32.zst", False, 5_000_000, 76_349,
     [p(1000, 78.78, 84.14), p(5000, 85.46, 91.40)]),
    ("w106", "cloudphysics-w106.be32.zst", False, 5_292_456, 275_171,
     [p(10_000, 83.81, 90.02), p(100_000, 93.75, 94.80)]),
    ("corda", "corda-vaultservice.be64.zst", True, 135_702, 90_468,
     [p(512, 33.33, 33.33), p(5000, 33.33, 33.33)]),
    ("cloudPhysicsIO", "libcachesim-cloudPhysicsIO.csv.zst", False, 113_872, 48_974,
     [p(1000), p(10_000)]),
    ("adaptsize", "adaptsize-request.sized.zst", False, 66_987, 36_815, [p(1000), p(10_000)]),
]

# (column label, CSV policy name, libcachesim class name). Default parameters throughout.
RESEARCH = [
    ("ARC", "lcs_arc", "ARC"),
    ("LIRS", "lcs_lirs", "LIRS"),
    ("2Q", "lcs_2q", "TwoQ"),
    ("Cacheus", "lcs_cacheus", "Cacheus"),
    ("LeCaR", "lcs_lecar", "LeCaR"),
    ("LHD", "lcs_lhd", "LHD"),
    ("SIEVE", "lcs_sieve", "Sieve"),
    ("S3-FIFO", "lcs_s3fifo", "S3FIFO"),
    ("W-TinyLFU", "lcs_wtinylfu", "WTinyLFU"),
]
CHECKS = [("LRU", "lcs_lru", "LRU"), ("OPT", "lcs_opt", "Belady")]
POLICIES = CHECKS + RESEARCH


# ----- traces -----

def decompress(path):
    try:
        import zstandard
    except ImportError:
        zstandard = None
    if zstandard is not None:
        with open(path, "rb") as f:
            return zstandard.ZstdDecompressor().stream_reader(f).read()
    if shutil.which("zstd") is None:
        raise RuntimeError("neither the zstandard package nor the zstd command is available")
    return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout


def load(path):
    """The requested keys of a trace (a numpy uint64 array), parsed as replay.rs parses them."""
    import numpy as np

    name = path.name
    fmt = name[:-4] if name.endswith(".zst") else name
    fmt = fmt.rsplit(".", 1)[-1]
    data = decompress(path)
    if fmt in ("be32", "be64"):
        width = 4 if fmt == "be32" else 8
        if len(data) % width:
            raise ValueError(f"{name}: {len(data)} bytes is not a multiple of {width}")
        return np.frombuffer(data, dtype=">u4" if width == 4 else ">u8").astype(np.uint64)
    lines = data.split(b"\n")
    if fmt == "txt":
        # One integer per line; empty lines and `*` skipped.
        fields = [line.strip() for line in lines]
        return np.array([f for f in fields if f and f != b"*"], dtype=np.uint64)
    if fmt == "lis":
        # `start_block num_blocks ignore request_no`, expanded to num_blocks requests.
        rows = [line.split() for line in lines if line.strip()]
        if any(len(r) < 2 for r in rows):
            raise ValueError(f"{name}: a line has fewer than 2 fields")
        start = np.array([r[0] for r in rows], dtype=np.uint64)
        count = np.array([r[1] for r in rows], dtype=np.int64)
        total = int(count.sum())
        offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        return np.repeat(start, count) + offset.astype(np.uint64)
    if fmt == "sized":
        # `timestamp object_id size_bytes`: the object id, at unit size for this comparison.
        return np.array([line.split()[1] for line in lines if line.strip()], dtype=np.uint64)
    if fmt == "csv":
        # A header naming the columns; the `lbn` column.
        rows = [line.strip() for line in lines if line.strip()]
        header = [h.strip() for h in rows[0].split(b",")]
        if b"lbn" not in header:
            raise ValueError(f"{name}: no `lbn` column in the header")
        col = header.index(b"lbn")
        return np.array([r.split(b",")[col].strip() for r in rows[1:]], dtype=np.uint64)
    raise ValueError(f"{name}: unknown record format")


def next_uses(keys):
    """Per request, the index of the next request for the same key (INT64_MAX if none)."""
    import numpy as np

    n = len(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    nxt = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    same = sorted_keys[1:] == sorted_keys[:-1]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


def write_oracle_general(keys, nxt, path):
    """libCacheSim's oracleGeneral records: u32 clock_time, u64 obj_id, u32 obj_size (1),
    i64 next_access_vtime (what Belady reads), little-endian, packed."""
    import numpy as np

    rec = np.zeros(len(keys), dtype=np.dtype(
        [("time", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]))
    assert rec.dtype.itemsize == 24
    rec["id"] = keys
    rec["size"] = 1
    rec["next"] = nxt
    rec.tofile(path)


# ----- replay -----

def hits_of(lcs, cls, capacity, feed, trace_file, keys, nxt):
    cache = getattr(lcs, cls)(capacity)
    n = len(keys)
    if feed == "file":
        reader = lcs.TraceReader(str(trace_file), lcs.TraceType.ORACLE_GENERAL_TRACE)
        miss_ratio, _ = cache.process_trace(reader)
        if reader.n_read_req != n:
            raise RuntimeError(f"libCacheSim read {reader.n_read_req} requests, not {n}")
        return round(n * (1.0 - miss_ratio))
    req = lcs.Request()
    req.obj_size = 1
    hits = 0
    for k, nx in zip(keys.tolist(), nxt.tolist()):
        req.obj_id = k
        req.next_access_vtime = nx
        hits += cache.get(req)
    return hits


def run_isolated(fn):
    """`fn()` (an int) in a forked child, or None if the child dies; in-process without fork."""
    if not hasattr(os, "fork"):
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            os.write(w, struct.pack("<q", fn()))
        except BaseException as e:  # noqa: BLE001 - reported by the parent as a crash
            sys.stderr.write(f"research_anchors: {e!r}\n")
            code = 1
        finally:
            os.close(w)
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or len(out) != 8:
        return None
    return struct.unpack("<q", out)[0]


def pct(hits, n):
    return hits * 100.0 / n if n else 0.0


def fmt_pct(h, n):
    return "crash" if h is None else f"{pct(h, n):.2f}"


def compare_with_replay(rows, replay_csv):
    """Compares the LRU and OPT hits of `rows` (CSV records) with replay.csv's exact_lru and
    opt, to the hit; prints the result and returns the number of mismatches."""
    import csv

    pairs = {"lcs_lru": "exact_lru", "lcs_opt": "opt"}
    ref = {}
    with open(replay_csv) as f:
        for r in csv.DictReader(f):
            if r.get("mode", "single") == "single" and r["contender"] in pairs.values():
                ref[(r["trace"], int(r["capacity"]), r["contender"])] = int(r["hits"])
    same, differ = 0, []
    for trace, capacity, policy, hits, *_ in rows:
        key = (trace, int(capacity), pairs.get(policy))
        if key not in ref:
            continue
        if hits != "" and int(hits) == ref[key]:
            same += 1
        else:
            differ.append(f"{trace} {capacity} {policy}: {hits or 'crash'} vs {ref[key]}")
    print(f"LRU / OPT hits vs {replay_csv} (exact_lru / opt): {same} equal to the hit, "
          f"{len(differ)} differ{': ' + '; '.join(differ) if differ else ''}.")
    print()
    return len(differ)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces", type=Path, default=None)
    ap.add_argument("--trace", action="append", default=[])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None,
                    help="write research_anchors.csv here (default: $ASIDE_BENCH_OUT)")
    ap.add_argument("--feed", choices=["file", "requests"], default="file")
    ap.add_argument("--replay", type=Path, default=None,
                    help="a replay.csv whose exact_lru and opt hits the LRU and OPT must equal")
    args = ap.parse_args()

    traces = args.traces or Path(os.environ.get("ASIDE_TRACES") or ROOT / "../shared/traces")
    if not traces.is_dir():
        print(f"research_anchors: no traces folder at {traces} (set ASIDE_TRACES or pass "
              "--traces DIR); nothing to replay, skipping.")
        return 0
    try:
        import numpy  # noqa: F401 - a dependency of libcachesim
        import libcachesim as lcs
    except ImportError as e:
        print(f"research_anchors: libcachesim is not installed ({e}); create a virtualenv with "
              "`python3 -m venv .venv && .venv/bin/pip install libcachesim zstandard` and run "
              "this script with `.venv/bin/python`. Skipping.")
        return 0
    out_dir = args.out or (Path(os.environ["ASIDE_BENCH_OUT"])
                           if os.environ.get("ASIDE_BENCH_OUT") else None)

    names = [n.lower() for arg in args.trace for n in arg.split(",") if n]
    selected = [t for t in TRACES
                if (not args.quick or t[2])
                and (not names or any(n in t[0].lower() or n in t[1].lower() for n in names))]
    if not selected:
        print(f"research_anchors: no known trace matches {names}", file=sys.stderr)
        return 2

    version = getattr(lcs, "__version__", "?")
    print(f"# Research anchors: libCacheSim {version} ({len(selected)} traces from {traces}; "
          f"unit object size, hit% = hits / requests, cold misses counted; feed: {args.feed})")
    print()
    print("Columns: LRU and OPT (libCacheSim's LRU and Belady) are the correctness check; "
          "ARC .. W-TinyLFU are libCacheSim's policies with its default parameters; "
          "best = the best of those nine.")
    print()

    started = time.time()
    rows = []
    summary = []  # (trace, capacity, best label, best %)
    ok = off = 0
    crashes = []
    for name, file, _quick, ref_requests, ref_unique, points in selected:
        path = traces / file
        if not path.is_file():
            print(f"## {name}: {path} not found, skipped\n")
            continue
        t0 = time.time()
        try:
            keys = load(path)
        except Exception as e:  # noqa: BLE001
            print(f"## {name}: cannot read: {e}\n")
            continue
        nxt = next_uses(keys)
        n = len(keys)
        unique = int((nxt == (2**63 - 1)).sum())
        print(f"## {name} ({file}): {n} requests, {unique} unique keys "
              f"(loaded in {time.time() - t0:.1f} s)")
        if ref_requests and (ref_requests != n or ref_unique != unique):
            print(f"   note: the README says {ref_requests} requests, {ref_unique} unique keys")
        print()
        labels = [label for label, _, _ in POLICIES]
        print("| capacity | " + " | ".join(labels) + " | best | best policy |")
        print("|---:|" + "---:|" * len(labels) + "---:|:---|")
        checks = []
        spent = {label: 0.0 for label in labels}
        with tempfile.TemporaryDirectory(prefix="research_anchors.") as tmp:
            trace_file = Path(tmp) / "trace.oracleGeneral"
            if args.feed == "file":
                write_oracle_general(keys, nxt, trace_file)
            for capacity, ref_lru, ref_opt in points:
                got = {}
                for label, policy, cls in POLICIES:
                    t = time.time()
                    got[label] = run_isolated(
                        lambda: hits_of(lcs, cls, capacity, args.feed, trace_file, keys, nxt))
                    spent[label] += time.time() - t
                    if got[label] is None:
                        crashes.append(f"{name} at {capacity}: {label}")
                    rows.append([name, capacity, policy, "" if got[label] is None else got[label],
                                 "" if got[label] is None else f"{pct(got[label], n):.4f}", n, ""])
                research = [(got[label], label) for label, _, _ in RESEARCH
                            if got[label] is not None]
                best_hits = max(h for h, _ in research) if research else None
                # Every policy that reaches the best hit count, joined with `+` on a tie.
                best = "+".join(label for h, label in research if h == best_hits) or "-"
                best_policy = "+".join(pol for label, pol, _ in RESEARCH
                                       if got[label] is not None and got[label] == best_hits)
                rows.append([name, capacity, "best", "" if best_hits is None else best_hits,
                             "" if best_hits is None else f"{pct(best_hits, n):.4f}", n,
                             best_policy])
                summary.append((name, capacity, best, None if best_hits is None
                                else pct(best_hits, n)))
                print(f"| {capacity} | " + " | ".join(fmt_pct(got[l], n) for l in labels)
                      + f" | {fmt_pct(best_hits, n)} | {best} |")
                checks.append((capacity, ref_lru, ref_opt, got["LRU"], got["OPT"]))
        print()
        for capacity, ref_lru, ref_opt, lru, opt in checks:
            line = f"   cap {capacity:>6}:"
            for label, ref, h in (("LRU", ref_lru, lru), ("OPT", ref_opt, opt)):
                if ref is None:
                    continue
                if h is None:
                    off += 1
                    line += f" {label} ref {ref:.2f} got crash;"
                    continue
                dev = round(pct(h, n), 2) - ref
                good = abs(dev) < 0.005
                ok += good
                off += not good
                line += (f" {label} ref {ref:.2f} got {pct(h, n):.2f} "
                         f"({'ok' if good else f'OFF by {dev:+.2f}'});")
            if line.endswith(";"):
                print(line)
        print("   time per policy (all capacities): "
              + "; ".join(f"{label} {spent[label]:.1f} s" for label in labels))
        print(f"   {name} took {time.time() - t0:.1f} s")
        print()

    print("## Best research policy per point")
    print()
    print("| trace | capacity | best | hit% |")
    print("|---|---:|:---|---:|")
    for name, capacity, best, hp in summary:
        print(f"| {name} | {capacity} | {best} | {'-' if hp is None else f'{hp:.2f}'} |")
    print()
    mismatches = 0
    if args.replay is not None:
        mismatches = compare_with_replay(rows, args.replay)
    print(f"Summary: libCacheSim LRU / OPT vs the README: {ok} ok, {off} off; "
          f"crashes: {', '.join(crashes) if crashes else 'none'}. "
          f"Total {time.time() - started:.1f} s.")

    if out_dir is not None:
        import csv

        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / CSV_NAME, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            w.writerows(rows)
        print(f"research_anchors: wrote {out_dir / CSV_NAME}", file=sys.stderr)
    return 1 if off or mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
