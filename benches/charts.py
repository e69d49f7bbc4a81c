#!/usr/bin/env python3
"""Draw the charts of docs/benchmarks.md as SVG files (Python 3 standard library only).

Inputs (each chart is skipped, with a message, when its input is missing):

- throughput.svg: criterion's results, TARGET/criterion/*/*/new/{benchmark,estimates}.json, read
  with benches/summarize.py (the same medians as its tables): get_hit and mixed90 at one size,
  1 and 2 threads, one bar pair per contender.
- memory.svg: DATA/memory.csv (`ASIDE_BENCH_OUT=DATA cargo bench --bench memory`): overhead in
  bytes per entry per cache, with the 40-byte target of the benchmarks issue.
- scaling.svg: DATA/scaling.csv (`ASIDE_BENCH_OUT=DATA cargo bench --bench scaling`): ns per
  operation against the number of entries, aside against a plain HashMap.
- hit-ratio.svg: DATA/replay.csv (`ASIDE_BENCH_OUT=DATA cargo run --release --example replay`):
  single-threaded hit ratio against capacity for a few traces, one line per policy, with the
  exact LRU and Belady's OPT.

Usage: python3 benches/charts.py [--data DIR] [--target DIR] [--size SIZE] [--out DIR]
           [--traces NAME,NAME,..] [--note TEXT] [--only CHART,..]

--data defaults to $CARGO_TARGET_DIR/bench-report (else target/bench-report), where
.ci/bench-report collects everything; --target (the folder holding criterion/) defaults to
--data when it has a criterion/ folder, else to $CARGO_TARGET_DIR (else target); --size is the
throughput size (default 100k; the quick mode runs 10k); --out defaults to docs/img; --note is
printed under every chart's title (e.g. to mark quick-mode data); --only draws some of
throughput, memory, scaling, hit-ratio.
"""

import argparse
import csv
import datetime
import math
import os
import subprocess
import sys
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import summarize  # noqa: E402  (load(): criterion JSON -> million operations per second)

FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
INK = "#222222"
MUTED = "#666666"
GRID = "#e3e3e3"
ASIDE_DARK, ASIDE_LIGHT, ASIDE_BAND = "#1f5fa8", "#8ab6e8", "#eef4fb"
OTHER_DARK, OTHER_LIGHT = "#595959", "#bdbdbd"
TARGET = "#c62828"
CHARTS = ["throughput", "memory", "scaling", "hit-ratio"]


# ----- SVG plumbing -----


def text_width(s, size):
    """A rough width of `s` at font size `size` (proportional sans-serif)."""
    return len(s) * size * 0.56


def fmt(v):
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if v < 1 else f"{v:.1f}"


def tick_label(t):
    return f"{t:g}"


def size_label(n):
    n = int(n)
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


class Svg:
    def __init__(self, width, height, title):
        self.width, self.height, self.title, self.items = width, height, title, []

    def rect(self, x, y, w, h, fill, stroke=None, opacity=None):
        extra = f' stroke="{stroke}"' if stroke else ""
        extra += f' fill-opacity="{opacity}"' if opacity is not None else ""
        self.items.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}"{extra}/>')

    def line(self, x1, y1, x2, y2, stroke=INK, width=1.0, dash=None):
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="{width}"{extra}/>'
        )

    def polyline(self, points, stroke, width=2.0, dash=None):
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        self.items.append(
            f'<polyline points="{pts}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round"{extra}/>'
        )

    def marker(self, x, y, shape, color, r=3.2):
        if shape == "square":
            self.items.append(f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" fill="{color}"/>')
        elif shape == "diamond":
            pts = f"{x:.1f},{y - r - 0.8:.1f} {x + r + 0.8:.1f},{y:.1f} {x:.1f},{y + r + 0.8:.1f} {x - r - 0.8:.1f},{y:.1f}"
            self.items.append(f'<polygon points="{pts}" fill="{color}"/>')
        elif shape == "triangle":
            pts = f"{x:.1f},{y - r - 0.8:.1f} {x + r + 0.8:.1f},{y + r:.1f} {x - r - 0.8:.1f},{y + r:.1f}"
            self.items.append(f'<polygon points="{pts}" fill="{color}"/>')
        elif shape == "ring":
            self.items.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="white" stroke="{color}" stroke-width="1.5"/>')
        elif shape:
            self.items.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{color}"/>')

    def text(self, x, y, s, size=12, anchor="start", weight="normal", fill=INK, rotate=None, italic=False):
        extra = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        extra += ' font-style="italic"' if italic else ""
        extra += f' font-weight="{weight}"' if weight != "normal" else ""
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>{escape(s)}</text>'
        )

    def render(self):
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" role="img" font-family="{escape(FONT)}">\n'
            f"<title>{escape(self.title)}</title>\n"
            f'<rect x="0" y="0" width="{self.width}" height="{self.height}" fill="white"/>\n'
        )
        return head + "\n".join(self.items) + "\n</svg>\n"


def nice_ticks(hi, count=5):
    """Ticks 0, step, 2 step, ... covering `hi`, with a 1/2/2.5/5 x 10^k step."""
    if hi <= 0:
        return [0, 1]
    raw = hi / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def legend_width(legend):
    return 20 + sum(26 + text_width(label, 12) + 22 for label, _ in legend)


def min_width(title, legend=(), note=""):
    """The width the title, note and one legend row need."""
    return int(max(text_width(title, 17) * 1.02, text_width(note, 12), legend_width(legend)) + 40)


def header(svg, title, note, legend, y=26):
    """Title, optional note line and a legend row; returns the y below them."""
    svg.text(20, y, title, size=17, weight="bold")
    y += 20
    if note:
        svg.text(20, y, note, size=12, fill=TARGET, italic=True)
        y += 18
    if legend:
        x = 20
        for label, draw in legend:
            draw(svg, x, y + 4)
            svg.text(x + 26, y + 8, label, size=12)
            x += 26 + text_width(label, 12) + 22
        y += 22
    return y + 6


def swatch(color):
    return lambda svg, x, y: svg.rect(x, y - 1, 18, 11, color)


def line_swatch(color, width=2.0, dash=None, shape=None):
    def draw(svg, x, y):
        svg.line(x, y + 4, x + 20, y + 4, color, width, dash)
        svg.marker(x + 10, y + 4, shape, color)

    return draw


def dashed_swatch(color):
    return lambda svg, x, y: svg.line(x + 9, y - 3, x + 9, y + 11, color, 1.8, "5,3")


def footer(svg, lines, below=None):
    """Grey footnote lines at the bottom; with `below`, the picture is cut to end just under
    that y first."""
    if below is not None:
        svg.height = int(below + 12 + 15 * len(lines))
    y = svg.height - 10 - 15 * (len(lines) - 1)
    for line in lines:
        svg.text(20, y, line, size=11, fill=MUTED)
        y += 15


def provenance():
    """`aside <commit>, <date>` for the footers."""
    when = datetime.date.today().isoformat()
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout.strip()
        return f"aside {commit}{' + uncommitted changes' if dirty else ''}, drawn {when}"
    except (OSError, subprocess.CalledProcessError):
        return f"drawn {when}"


def axis_cap(values, floor=0.0):
    """The end of a bar chart's value axis: outliers (over 3x the median) are left out and drawn
    as broken bars, so that they do not flatten every other bar."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return nice_ticks(max(floor, 1))[-1]
    median = values[len(values) // 2]
    kept = [v for v in values if v <= 3 * median] or values
    return nice_ticks(max(max(kept), floor) * 1.08)[-1]


def hbar_panel(svg, x0, y0, width, rows, series, cap, bar_h, title, axis_title, row_gap=8, band=None, refs=()):
    """Horizontal bars: `rows` is [(label, [value per series], highlighted)], `series` is
    [(colour for highlighted rows, colour for the others)], one per bar of a row. Bars past `cap` are drawn broken, their
    value printed past the axis. `refs` are [(value, label)] dashed reference lines. Returns the
    y below the panel."""
    svg.text(x0, y0, title, size=13, weight="bold")
    top = y0 + 12
    row_h = bar_h * len(series) + row_gap
    height = row_h * len(rows)
    ticks = nice_ticks(cap)
    scale = width / ticks[-1]
    if band:
        for i, (_, _, hot) in enumerate(rows):
            if hot:
                svg.rect(x0 - 2, top + i * row_h, width + 4, row_h, band)
    for t in ticks:
        x = x0 + t * scale
        svg.line(x, top, x, top + height, GRID, 1)
        svg.text(x, top + height + 14, tick_label(t), size=11, anchor="middle", fill=MUTED)
    svg.text(x0 + width / 2, top + height + 32, axis_title, size=12, anchor="middle")
    for i, (label, values, hot) in enumerate(rows):
        ry = top + i * row_h
        for j, v in enumerate(values):
            by = ry + row_gap / 2 + j * bar_h
            if v is None:
                svg.text(x0 + 4, by + bar_h - 2, "n/a", size=9, fill=MUTED)
                continue
            color = series[j][0] if hot else series[j][1]
            w = v * scale
            if w > width:
                svg.rect(x0, by, width, bar_h - 1, color)
                for dx in (-16, -11):
                    svg.line(x0 + width + dx, by + bar_h + 1, x0 + width + dx + 5, by - 2, "white", 2.2)
                svg.text(x0 + width + 4, by + bar_h - 2, f"{fmt(v)} (axis cut)", size=10, fill=INK)
            else:
                svg.rect(x0, by, w, bar_h - 1, color)
                svg.text(x0 + w + 3, by + bar_h - 2, fmt(v), size=10, fill=INK)
    svg.line(x0, top, x0, top + height, INK, 1)
    for value, label in refs:
        if value is None or value > ticks[-1]:
            continue
        x = x0 + value * scale
        svg.line(x, top - 4, x, top + height, TARGET, 1.6, "5,3")
        svg.text(x + 3, top - 1, label, size=10, fill=TARGET)
    return top + height + 40


def row_labels(svg, x_right, y0, labels, row_h, bold):
    top = y0 + 12
    for i, label in enumerate(labels):
        svg.text(
            x_right, top + i * row_h + row_h / 2 + 4, label, size=12, anchor="end", weight="bold" if bold(label) else "normal"
        )


# ----- (a) throughput -----

THROUGHPUT_PANELS = [("get_hit/zipf", "get-hit"), ("mixed90/zipf", "mixed: 90% get, 10% insert")]


def chart_throughput(target, size, note):
    r = {k: v for k, v in summarize.load(target).items() if k[1] == size}
    panels = [(s, t) for s, t in THROUGHPUT_PANELS if any(k[0] == s for k in r)]
    if not panels:
        return None, f"no get_hit or mixed90 results at size {size} under {os.path.join(target, 'criterion')}"
    missing = [s for s, _ in THROUGHPUT_PANELS if s not in dict(panels)]
    wanted = {s for s, _ in panels}
    names = [n for n in summarize.ORDER if any(k[0] in wanted and k[3] == n for k in r)]
    names += sorted({k[3] for k in r if k[0] in wanted} - set(names))
    is_aside = lambda n: n.startswith("aside")  # noqa: E731

    label_w = max(text_width(n, 12) for n in names) + 30
    panel_w = 330
    gap = 120
    bar_h, row_gap = 9, 8
    row_h = 2 * bar_h + row_gap
    height = int(150 + (56 if note else 36) + row_h * len(names) + 40)
    title = f"Throughput at {size} entries, u64 → u64, Zipf(1.0) keys (higher is better)"
    legend = [
        ("aside, 1 thread", swatch(ASIDE_DARK)),
        ("aside, 2 threads", swatch(ASIDE_LIGHT)),
        ("others, 1 thread", swatch(OTHER_DARK)),
        ("others, 2 threads", swatch(OTHER_LIGHT)),
        ("target: 3 × moka_tinylfu, 2 threads", dashed_swatch(TARGET)),
    ]
    width = max(int(label_w + len(panels) * panel_w + (len(panels) - 1) * gap + 110), min_width(title, legend, note))
    svg = Svg(width, height, title)
    y = header(svg, title, note, legend)
    y += 14
    row_labels(svg, label_w - 12, y, names, row_h, is_aside)
    bottom = y
    for p, (scenario, ptitle) in enumerate(panels):
        x0 = label_w + p * (panel_w + gap)
        rows = [(n, [r.get((scenario, size, t, n)) for t in (1, 2)], is_aside(n)) for n in names]
        moka2 = r.get((scenario, size, 2, "moka_tinylfu"))
        target3 = 3 * moka2 if moka2 else None
        cap = axis_cap([v for _, vs, _ in rows for v in vs] + ([target3] if target3 else []))
        bottom = hbar_panel(
            svg,
            x0,
            y,
            panel_w,
            rows,
            [(ASIDE_DARK, OTHER_DARK), (ASIDE_LIGHT, OTHER_LIGHT)],
            cap,
            bar_h,
            ptitle,
            "million operations per second",
            row_gap,
            band=ASIDE_BAND,
            refs=[(target3, "3 × moka")],
        )
    footer(
        svg,
        [
            "Median of the criterion samples (benches/throughput.rs); hashmap_floor: a RefCell<HashMap>, one thread only.",
            f"{provenance()}. Regenerate: .ci/bench-report",
        ],
        below=bottom,
    )
    return svg, (f"no {' or '.join(missing)} results at {size}: drew {', '.join(s for s, _ in panels)} only" if missing else None)


# ----- (b) memory -----

KV_TITLES = {"u64->u64": "u64 → u64", "String(16)->Vec<u8>(32)": "String (16 bytes) → Vec<u8> (32 bytes)"}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def chart_memory(data, note):
    path = os.path.join(data, "memory.csv")
    if not os.path.isfile(path):
        return None, f"{path} not found"
    groups = {}
    for row in read_csv(path):
        groups.setdefault(row["kv"], []).append(row)
    if not groups:
        return None, f"{path} is empty"
    panels = []
    omitted = False
    for kv, rows in groups.items():
        by_name = {r["cache"]: float(r["overhead_bytes"]) for r in rows}
        kept = []
        for r in rows:
            name = r["cache"]
            base = name[: -len("+ttl")] if name.endswith("+ttl") else None
            # aside's +ttl variants cost the same (the deadline is always there): shown only if not.
            if base and base.startswith("aside") and base in by_name and abs(by_name[base] - by_name[name]) < 0.5:
                omitted = True
                continue
            kept.append((name, float(r["overhead_bytes"]), float(r["payload_bytes"]), int(r["entries_inserted"])))
        panels.append((kv, kept))

    names = [n for _, kept in panels for n, *_ in kept]
    label_w = max(text_width(n, 12) for n in names) + 30
    plot_w = 560
    bar_h, row_gap = 14, 7
    row_h = bar_h + row_gap
    height = int(110 + (20 if note else 0) + sum(row_h * len(k) + 80 for _, k in panels) + 30)
    title = "Memory per entry: overhead in bytes beyond the key and value (lower is better)"
    legend = [
        ("aside", swatch(ASIDE_DARK)),
        ("others", swatch(OTHER_LIGHT)),
        ("target: ≤ 40 bytes (u64 → u64)", dashed_swatch(TARGET)),
    ]
    width = max(int(label_w + plot_w + 150), min_width(title, legend, note))
    svg = Svg(width, height, title)
    y = header(svg, title, note, legend)
    y += 14
    for kv, kept in panels:
        payload, inserted = kept[0][2], kept[0][3]
        is_aside = lambda n: n.startswith("aside")  # noqa: E731
        refs = [(40.0, "target 40")] if kv == "u64->u64" else []
        cap = axis_cap([v for _, v, *_ in kept], floor=44 if refs else 0)
        row_labels(svg, label_w - 12, y, [n for n, *_ in kept], row_h, is_aside)
        y = hbar_panel(
            svg,
            label_w,
            y,
            plot_w,
            [(n, [v], is_aside(n)) for n, v, *_ in kept],
            [(ASIDE_DARK, OTHER_LIGHT)],
            cap,
            bar_h,
            f"{KV_TITLES.get(kv, kv)}: payload {payload:g} bytes, {inserted:,} entries inserted",
            "overhead, bytes per entry (net bytes allocated / entries held − payload)",
            row_gap,
            band=ASIDE_BAND,
            refs=refs,
        )
        y += 20
    notes = ["benches/memory.rs: bytes requested from the allocator (malloc's own headers not counted)."]
    if omitted:
        notes[0] += " aside's +ttl variants cost the same and are omitted."
    footer(svg, notes + [f"{provenance()}. Regenerate: .ci/bench-report"], below=y - 20)
    return svg, None


# ----- (c) scaling -----


def log_axis(values, pad=0.18):
    lo, hi = math.log10(min(values)), math.log10(max(values))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return lo - pad * (hi - lo), hi + pad * (hi - lo)


SCALING_SERIES = [
    ("get_hit_zipf_ns", "aside get-hit, Zipf keys", ASIDE_DARK, 2.6, None, "circle"),
    ("get_hit_uniform_ns", "aside get-hit, uniform keys", "#5b8fd0", 2.6, "7,4", "square"),
    ("insert_miss_ns", "aside insert-miss (one eviction)", "#7b3fbf", 2.6, None, "diamond"),
    ("hashmap_get_zipf_ns", "HashMap get, Zipf keys", OTHER_DARK, 1.8, None, "ring"),
    ("hashmap_get_uniform_ns", "HashMap get, uniform keys", "#9e9e9e", 1.8, "7,4", "ring"),
]


def chart_scaling(data, note):
    path = os.path.join(data, "scaling.csv")
    if not os.path.isfile(path):
        return None, f"{path} not found"
    rows = read_csv(path)
    if not rows:
        return None, f"{path} is empty"
    sizes = [int(r["entries"]) for r in rows]
    series = [(s, [float(r[s[0]]) for r in rows]) for s in SCALING_SERIES if s[0] in rows[0]]
    title = "Time per operation against cache size (aside Lru, u64 → u64, one thread; lower is better)"
    width, height = max(900, min_width(title, (), note)), 560 + (20 if note else 0)
    svg = Svg(width, height, title)
    y = header(svg, title, note, [])
    legend_x = 640
    x0, x1 = 90, legend_x - 40
    top, bottom = y + 16, height - 95
    lo, hi = log_axis(sizes)
    sx = lambda n: x0 + (math.log10(n) - lo) / (hi - lo) * (x1 - x0)  # noqa: E731
    base = series[0][1][0] if series else None
    ymax = max(max(vs) for _, vs in series)
    if base:
        ymax = max(ymax, base * 1.25)
    ticks = nice_ticks(ymax * 1.05)
    sy = lambda v: bottom - v / ticks[-1] * (bottom - top)  # noqa: E731
    # The target band: get-hit (Zipf) within ±25% of its 10k figure.
    if base:
        svg.rect(x0, sy(base * 1.25), x1 - x0, sy(base * 0.75) - sy(base * 1.25), ASIDE_BAND)
    for t in ticks:
        svg.line(x0, sy(t), x1, sy(t), GRID, 1)
        svg.text(x0 - 6, sy(t) + 4, tick_label(t), size=11, anchor="end", fill=MUTED)
    for n in sizes:
        svg.line(sx(n), top, sx(n), bottom, GRID, 1)
        svg.text(sx(n), bottom + 16, size_label(n), size=11, anchor="middle", fill=MUTED)
    svg.line(x0, bottom, x1, bottom, INK, 1)
    svg.line(x0, top, x0, bottom, INK, 1)
    svg.text(x0 + (x1 - x0) / 2, bottom + 36, "entries in the cache (log scale)", size=12, anchor="middle")
    svg.text(28, top + (bottom - top) / 2, "nanoseconds per operation", size=12, anchor="middle", rotate=-90)
    for (key, label, color, w, dash, shape), values in reversed(series):
        pts = [(sx(n), sy(v)) for n, v in zip(sizes, values)]
        svg.polyline(pts, color, w, dash)
        for (px, py), v in zip(pts, values):
            svg.marker(px, py, shape, color)
        px, py = pts[-1]
        svg.text(px + 7, py + 4, fmt(values[-1]), size=10, fill=color)
    ly = top + 6
    for (key, label, color, w, dash, shape), _ in series:
        line_swatch(color, w, dash, shape)(svg, legend_x, ly)
        svg.text(legend_x + 28, ly + 8, label, size=12)
        ly += 22
    if base:
        svg.rect(legend_x, ly - 2, 20, 14, ASIDE_BAND, stroke="#c9dcf2")
        svg.text(legend_x + 28, ly + 8, "target: aside get-hit (Zipf)", size=12)
        svg.text(legend_x + 28, ly + 23, f"within ±25% of its {size_label(sizes[0])} figure", size=12)
    footer(
        svg,
        [
            f"benches/scaling.rs: median of 7 rounds of {int(rows[0].get('ops') or 0):,} operations per size; default sharding.",
            f"{provenance()}. Regenerate: .ci/bench-report",
        ],
    )
    return svg, None


# ----- (d) hit ratio -----

# (contender, label, colour, stroke width, dash, marker); drawn in reverse, so the first on top.
HIT_SERIES = [
    ("exact_lru", "exact LRU (lru crate)", "#111111", 1.4, "4,3", None),
    ("aside_wtinylfu", "aside W-TinyLFU", "#0b8a3e", 3.0, None, "diamond"),
    ("aside_s3fifo", "aside S3-FIFO", "#b5651d", 2.4, None, "square"),
    ("aside_lru", "aside LRU", ASIDE_DARK, 2.8, None, "circle"),
    ("aside_lfu", "aside LFU", "#7b3fbf", 2.8, None, "diamond"),
    ("aside_fifo", "aside FIFO", "#2a9d8f", 2.4, None, "square"),
    ("aside_ttl", "aside SampledTtl", "#6fa8dc", 2.4, None, "triangle"),
    ("moka_tinylfu", "moka (TinyLFU)", "#e08000", 1.8, "7,3", "ring"),
    ("quick_cache", "quick_cache", "#c0392b", 1.8, "7,3", "ring"),
    ("opt", "OPT (Belady, the ceiling)", "#111111", 1.4, "1.5,3", None),
]
DEFAULT_TRACES = ["OLTP", "multi2", "orm-busy"]
FALLBACK_TRACES = ["sprite", "web07", "w106", "P2", "multi1", "cpp", "cloudPhysicsIO", "adaptsize", "ps", "corda"]


def chart_hit_ratio(data, wanted, note):
    path = os.path.join(data, "replay.csv")
    if not os.path.isfile(path):
        return None, f"{path} not found"
    traces = {}  # name -> {"requests", "unique", "points": {capacity: {contender: pct}}}
    for r in read_csv(path):
        if r["mode"] != "single":
            continue
        t = traces.setdefault(r["trace"], {"requests": int(r["requests"]), "unique": int(r["unique_keys"]), "points": {}})
        t["points"].setdefault(int(r["capacity"]), {})[r["contender"]] = float(r["hit_pct"])
    if not traces:
        return None, f"{path} has no single-threaded results"
    lower = {n.lower(): n for n in traces}
    chosen, msgs = [], []
    for n in wanted:
        if n.lower() in lower:
            chosen.append(lower[n.lower()])
        else:
            msgs.append(f"trace {n} not in {path}")
    if len(chosen) < len(wanted):
        for n in FALLBACK_TRACES + sorted(traces):
            if len(chosen) >= len(wanted):
                break
            if n in traces and n not in chosen and len(traces[n]["points"]) >= 2:
                chosen.append(n)
                msgs.append(f"drew {n} instead")
    if not chosen:
        return None, "; ".join(msgs) or "no trace to draw"

    panel_w, panel_h, gap = 270, 300, 60
    x_start = 80
    title = "Hit ratio against cache capacity on real traces (single-threaded, read-through; higher is better)"
    legend = [(label, line_swatch(color, w, dash, shape)) for _, label, color, w, dash, shape in HIT_SERIES]
    width = max(x_start + len(chosen) * panel_w + (len(chosen) - 1) * gap + 30, min_width(title, legend[:4], note))
    # Two legend rows.
    height = 130 + (20 if note else 0) + panel_h + 110
    svg = Svg(width, height, title)
    y = header(svg, title, note, legend[:4])
    y = header_legend_row(svg, y, legend[4:])
    top = y + 30
    bottom = top + panel_h
    for p, name in enumerate(chosen):
        t = traces[name]
        caps = sorted(t["points"])
        x0 = x_start + p * (panel_w + gap)
        x1 = x0 + panel_w
        lo, hi = log_axis(caps, 0.12)
        sx = lambda c: x0 + (math.log10(c) - lo) / (hi - lo) * (x1 - x0)  # noqa: E731
        ymax = max(v for pt in t["points"].values() for v in pt.values())
        ticks = nice_ticks(min(100, max(ymax, 1) * 1.05))
        sy = lambda v: bottom - v / ticks[-1] * (bottom - top)  # noqa: E731
        svg.text(x0, top - 12, f"{name}: {t['requests']:,} requests, {t['unique']:,} keys", size=13, weight="bold")
        for v in ticks:
            svg.line(x0, sy(v), x1, sy(v), GRID, 1)
            svg.text(x0 - 6, sy(v) + 4, tick_label(v), size=11, anchor="end", fill=MUTED)
        for c in caps:
            svg.line(sx(c), top, sx(c), bottom, GRID, 1)
            svg.text(sx(c), bottom + 16, size_label(c), size=11, anchor="middle", fill=MUTED)
        svg.line(x0, bottom, x1, bottom, INK, 1)
        svg.line(x0, top, x0, bottom, INK, 1)
        svg.text(x0 + panel_w / 2, bottom + 36, "capacity, entries (log scale)", size=12, anchor="middle")
        if p == 0:
            svg.text(28, top + panel_h / 2, "hit ratio, % of requests", size=12, anchor="middle", rotate=-90)
        for key, label, color, w, dash, shape in reversed(HIT_SERIES):
            pts = [(sx(c), sy(t["points"][c][key])) for c in caps if key in t["points"][c]]
            if not pts:
                continue
            svg.polyline(pts, color, w, dash)
            for px, py in pts:
                svg.marker(px, py, shape, color, 2.8)
    footer(
        svg,
        [
            "examples/replay.rs: hits / requests, cold misses counted; aside with default sharding. moka_lru and aside LRU with one shard equal the exact LRU.",
            f"{provenance()}. Regenerate: .ci/bench-report",
        ],
    )
    return svg, "; ".join(msgs) or None


def header_legend_row(svg, y, legend):
    x = 20
    for label, draw in legend:
        draw(svg, x, y + 4)
        svg.text(x + 26, y + 8, label, size=12)
        x += 26 + text_width(label, 12) + 22
    return y + 22


# ----- main -----


def main():
    target_env = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    ap = argparse.ArgumentParser(description="Draw the SVG charts of docs/benchmarks.md.")
    ap.add_argument("--data", default=os.path.join(target_env, "bench-report"), help="folder of memory.csv, scaling.csv, replay.csv")
    ap.add_argument("--target", help="folder holding criterion/ (default: --data if it has one, else the cargo target dir)")
    ap.add_argument("--size", default="100k", help="throughput cache size, e.g. 100k (quick mode: 10k)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "img"), help="where to write the SVG files")
    ap.add_argument("--traces", default=",".join(DEFAULT_TRACES), help="traces for the hit-ratio chart, comma-separated")
    ap.add_argument("--note", default="", help="a line printed under every chart's title")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(CHARTS)}")
    args = ap.parse_args()
    target = args.target or (args.data if os.path.isdir(os.path.join(args.data, "criterion")) else target_env)
    only = [c.strip() for c in args.only.split(",") if c.strip()] or CHARTS
    unknown = set(only) - set(CHARTS)
    if unknown:
        ap.error(f"unknown chart(s) {', '.join(sorted(unknown))}; known: {', '.join(CHARTS)}")
    note = args.note.strip()
    makers = {
        "throughput": lambda: chart_throughput(target, args.size, note),
        "memory": lambda: chart_memory(args.data, note),
        "scaling": lambda: chart_scaling(args.data, note),
        "hit-ratio": lambda: chart_hit_ratio(args.data, [t for t in args.traces.split(",") if t], note),
    }
    written = 0
    for name in only:
        svg, msg = makers[name]()
        if svg is None:
            print(f"charts: {name}: skipped ({msg})")
            continue
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"{name}.svg")
        with open(path, "w", encoding="utf-8") as f:
            f.write(svg.render())
        written += 1
        print(f"charts: {name}: wrote {path}" + (f" ({msg})" if msg else ""))
    print(f"charts: {written} of {len(only)} charts written to {args.out}")


if __name__ == "__main__":
    main()
