"""The monitor report's pictures as SVG, in plain Python (the Lambda image has no matplotlib).

Each chart is a standalone SVG document (a string); ``report_svg`` lays a report's panels out in
one picture, the ``report.svg`` written beside ``report.json``::

    from imgsearch.monitor.plots import histogram, line_chart, report_svg

    svg = line_chart(
        {"images": [0.002, None, 0.031]},           # None: no figure that run, a gap in the line
        ["12-01 03:15", "12-01 04:15", "12-01 05:15"],
        thresholds={"images": [0.011, None, 0.012]},  # drawn dashed, in the series' colour
        title="Embedding drift per run",
        y_label="MMD²",
    )
    svg = histogram({"now": [0.31, 0.28], "before": [0.33]}, title="Top-1 score", x_label="score")
    svg = report_svg(report)                        # report: the monitor's report.json as a dict

The pictures hold no script, style sheet or id, so several can sit on one HTML page; data that is
missing draws a panel saying "no data" instead of failing the run that writes the report.

A chart none of these draws is put together from the pieces they are made of: a ``Frame`` (the
plot area and its scales), its ``axes``, a ``legend``, marks whose coordinates ``n`` writes, and
``document`` around them (``no_data`` is the panel with nothing to draw)::

    entries, top = legend([("measured", PALETTE[0], "line")])
    frame = Frame((0.0, 10.0), (0.0, 1.0), top)
    marks = [f'<circle cx="{n(frame.x(3))}" cy="{n(frame.y(0.5))}" r="2.5"/>']
    grid = axes(frame, "title", [(0.0, "0"), (10.0, "10")], [0.0, 0.5, 1.0], "x", "y")
    svg = document(WIDTH, HEIGHT, "title", [*grid, *entries, *marks])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import cycle
from typing import Any
from xml.sax.saxutils import escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000")
"""Okabe and Ito's colour-blind-safe colours, less their yellow (too pale on white)."""

WIDTH, HEIGHT = 600, 320
"""One panel; ``report_svg`` sets four of them in a 2 × 2 grid under a header."""
HEADER = 48
FONT = "system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"
INK, MUTED, GRID = "#1d2330", "#667085", "#e4e7ec"
CHAR_WIDTH = 0.6
"""An average glyph's width per unit of font size: close enough to lay labels out."""
TICK_FONT = 11
DRIFT_KINDS = ("images", "queries")
RUN_AXIS = "end of the run's window (UTC)"

Point = tuple[float, float]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 × 10ⁿ apart) from at most ``low`` to at least
    ``high``; the axis spans the first to the last."""
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"ticks need finite low <= high, got {low}, {high}")
    if low == high:
        pad = abs(low) / 10 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    exponent = math.floor(math.log10(raw))
    fraction = raw / 10.0**exponent
    mantissa = 1 if fraction < 1.5 else 2 if fraction < 3 else 5 if fraction < 7 else 10
    if mantissa == 10:
        mantissa, exponent = 1, exponent + 1
    step = mantissa * 10.0**exponent
    decimals = max(0, -exponent)
    # Rounded to the step's decimals: 3 * 0.1 is 0.30000000000000004, the label must say 0.3.
    return [
        round(i * step, decimals) + 0.0  # + 0.0: no "-0" label
        for i in range(math.floor(low / step), math.ceil(high / step) + 1)
    ]


def line_chart(
    series: Mapping[str, Sequence[float | None]],
    labels: Sequence[str],
    *,
    thresholds: Mapping[str, Sequence[float | None]] | None = None,
    title: str,
    y_label: str,
    x_label: str = "",
) -> str:
    """One line per series over the ``labels`` (one value per label; ``None`` leaves a gap), each
    series' threshold dashed in its colour; labels are thinned to those that fit side by side.
    The y axis always includes 0."""
    panel = _line_panel(series, labels, thresholds, title, x_label, y_label)
    return document(WIDTH, HEIGHT, title, panel)


def histogram(
    samples: Mapping[str, Sequence[float]], *, bins: int = 20, title: str, x_label: str
) -> str:
    """The groups' distributions overlaid (semi-transparent) on shared bins, each bar the share
    of its group's samples, so groups of different sizes compare."""
    return document(WIDTH, HEIGHT, title, _histogram_panel(samples, bins, title, x_label))


def scatter(
    points: Mapping[str, Sequence[Sequence[float]]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
) -> str:
    """Each group's 2-D points, semi-transparent, the first group drawn first (underneath)."""
    return document(WIDTH, HEIGHT, title, _scatter_panel(points, title, x_label, y_label))


def report_svg(report: Mapping[str, Any]) -> str:
    """The monitor report's picture: drift statistic per run with its thresholds, search quality
    per run, the top-1 score distributions (this window vs earlier ones) and the 2-D projection
    of the index's sample vs the new images."""
    history = [row for row in report.get("history") or [] if isinstance(row, Mapping)]
    labels = [_run_label(row) for row in history]
    scores = report.get("scores") or {}
    projection = report.get("projection") or {}
    panels = [
        _line_panel(
            {kind: [row.get(f"{kind}_statistic") for row in history] for kind in DRIFT_KINDS},
            labels,
            {kind: [row.get(f"{kind}_threshold") for row in history] for kind in DRIFT_KINDS},
            "Embedding drift per run",
            RUN_AXIS,
            "drift statistic",
        ),
        _line_panel(
            {
                "CTR@10": [row.get("ctr_at_10") for row in history],
                "MRR": [row.get("mrr") for row in history],
            },
            labels,
            None,
            "Search quality per run",
            RUN_AXIS,
            "rate",
        ),
        _histogram_panel(
            {
                "this window": scores.get("current") or [],
                "previous run": scores.get("baseline") or [],
            },
            20,
            "Top-1 score of searches",
            "top-1 score",
        ),
        _scatter_panel(
            {
                "index sample": projection.get("reference") or [],
                "new images": projection.get("current") or [],
            },
            "Image embeddings, 2-D PCA",
            "PC1",
            "PC2",
        ),
    ]
    window = report.get("window") or {}
    heading = f"imgsearch monitor · run {report.get('run') or '?'}"
    elements = [
        _text(16, 22, heading, size=16, weight="600"),
        _text(
            16, 40, f"window {window.get('start') or '?'} → {window.get('end') or '?'}", fill=MUTED
        ),
    ]
    for number, panel in enumerate(panels):
        x, y = (number % 2) * WIDTH, HEADER + (number // 2) * HEIGHT
        elements.append(f'<g transform="translate({x},{y})">{"".join(panel)}</g>')
    return document(2 * WIDTH, HEADER + 2 * HEIGHT, heading, elements)


@dataclass(frozen=True)
class Frame:
    """A panel's plot area (SVG units: ``left`` to ``right``, ``top`` down to ``bottom``), and the
    scales from data to it: ``x_range`` and ``y_range`` are the data values at its edges."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    top: float
    left: float = 64
    right: float = WIDTH - 20
    bottom: float = HEIGHT - 46

    def x(self, value: float) -> float:
        """The SVG x of a data value on the horizontal axis."""
        low, high = self.x_range
        return self.left + (value - low) / (high - low) * (self.right - self.left)

    def y(self, value: float) -> float:
        """The SVG y of a data value on the vertical axis (up is greater)."""
        low, high = self.y_range
        return self.bottom - (value - low) / (high - low) * (self.bottom - self.top)


def _line_panel(
    series: Mapping[str, Sequence[float | None]],
    labels: Sequence[str],
    thresholds: Mapping[str, Sequence[float | None]] | None,
    title: str,
    x_label: str,
    y_label: str,
) -> list[str]:
    thresholds = thresholds or {}
    if unknown := sorted(set(thresholds) - set(series)):
        raise ValueError(f"thresholds for no series: {unknown}")
    for name, values in [*series.items(), *thresholds.items()]:
        if len(values) != len(labels):
            raise ValueError(f"{name!r} has {len(values)} values for {len(labels)} labels")
    finite = [v for values in [*series.values(), *thresholds.values()] for v in _finite(values)]
    if not finite:
        return no_data(title)
    colours = dict(zip(series, cycle(PALETTE), strict=False))
    items = []
    for name in series:
        items.append((name, colours[name], "line"))
        if name in thresholds:
            items.append((f"{name} threshold", colours[name], "dashed"))
    key, top = legend(items)
    y_ticks = nice_ticks(min(0.0, *finite), max(0.0, *finite))
    frame = Frame((-0.5, len(labels) - 0.5), (y_ticks[0], y_ticks[-1]), top)
    # Every label that fits side by side: one in ``step``, the first always among them.
    widest = max(len(label) for label in labels) * CHAR_WIDTH * TICK_FONT + 10
    step = max(1, math.ceil(widest / ((frame.right - frame.left) / len(labels))))
    x_ticks = [(float(i), labels[i]) for i in range(0, len(labels), step)]
    elements = [*axes(frame, title, x_ticks, y_ticks, x_label, y_label), *key]
    for name, values in thresholds.items():
        elements += _lines(frame, values, colours[name], dashed=True)
    for name, values in series.items():
        elements += _lines(frame, values, colours[name], dashed=False)
        elements += [
            f'<circle cx="{n(frame.x(i))}" cy="{n(frame.y(v))}" r="2.5" fill="{colours[name]}"/>'
            for i, v in enumerate(map(_number, values))
            if v is not None
        ]
    return elements


def _lines(frame: Frame, values: Sequence[float | None], colour: str, *, dashed: bool) -> list[str]:
    """A path through the values, broken where one is missing. A lone value between gaps draws
    nothing (the series' markers show it), except on a dashed threshold, which has no markers:
    there it is a short level stroke."""
    runs: list[list[Point]] = [[]]
    for i, value in enumerate(map(_number, values)):
        if value is not None:
            runs[-1].append((frame.x(i), frame.y(value)))
        elif runs[-1]:
            runs.append([])
    half = (frame.x(1) - frame.x(0)) / 3
    commands = [
        "M" + " L".join(f"{n(x)},{n(y)}" for x, y in run)
        if len(run) > 1
        else f"M{n(run[0][0] - half)},{n(run[0][1])} H{n(run[0][0] + half)}"
        for run in runs
        if len(run) > 1 or (run and dashed)
    ]
    if not commands:
        return []
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    return [
        f'<path d="{" ".join(commands)}" fill="none" stroke="{colour}" '
        f'stroke-width="{1.5 if dashed else 2}"{dash}/>'
    ]


def _histogram_panel(
    samples: Mapping[str, Sequence[float]], bins: int, title: str, x_label: str
) -> list[str]:
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    clean = {name: _finite(values) for name, values in samples.items()}
    pooled = [v for values in clean.values() for v in values]
    if not pooled:
        return no_data(title)
    x_ticks = nice_ticks(min(pooled), max(pooled))
    low, width = x_ticks[0], (x_ticks[-1] - x_ticks[0]) / bins
    shares = {}
    for name, values in clean.items():
        counts = [0] * bins
        for value in values:
            counts[min(max(int((value - low) / width), 0), bins - 1)] += 1
        shares[name] = [count / len(values) for count in counts] if values else counts
    colours = dict(zip(clean, cycle(PALETTE), strict=False))
    key, top = legend(
        [(f"{name} (n={len(values)})", colours[name], "box") for name, values in clean.items()]
    )
    y_ticks = nice_ticks(0.0, max(max(group) for group in shares.values()))
    frame = Frame((x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]), top)
    x_axis = [(t, _tick_label(t, x_ticks)) for t in x_ticks]
    elements = [*axes(frame, title, x_axis, y_ticks, x_label, "share of samples"), *key]
    for name, group in shares.items():
        for i, share in enumerate(group):
            if share:
                x0, x1 = frame.x(low + i * width), frame.x(low + (i + 1) * width)
                y = frame.y(share)
                elements.append(
                    f'<rect x="{n(x0)}" y="{n(y)}" width="{n(x1 - x0)}" '
                    f'height="{n(frame.bottom - y)}" fill="{colours[name]}" fill-opacity="0.45" '
                    f'stroke="{colours[name]}" stroke-width="0.8"/>'
                )
    return elements


def _scatter_panel(
    points: Mapping[str, Sequence[Sequence[float]]], title: str, x_label: str, y_label: str
) -> list[str]:
    clean: dict[str, list[Point]] = {}
    for name, group in points.items():
        if bad := [p for p in group if len(p) != 2]:
            raise ValueError(f"{name!r}: points must be (x, y) pairs, got {list(bad[0])}")
        pairs = ((_number(x), _number(y)) for x, y in group)
        clean[name] = [(x, y) for x, y in pairs if x is not None and y is not None]
    pooled = [p for group in clean.values() for p in group]
    if not pooled:
        return no_data(title)
    colours = dict(zip(clean, cycle(PALETTE), strict=False))
    key, top = legend(
        [(f"{name} (n={len(group)})", colours[name], "dot") for name, group in clean.items()]
    )
    x_ticks = nice_ticks(min(x for x, _ in pooled), max(x for x, _ in pooled))
    y_ticks = nice_ticks(min(y for _, y in pooled), max(y for _, y in pooled))
    frame = Frame((x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1]), top)
    x_axis = [(t, _tick_label(t, x_ticks)) for t in x_ticks]
    elements = [*axes(frame, title, x_axis, y_ticks, x_label, y_label), *key]
    for name, group in clean.items():
        elements += [
            f'<circle cx="{n(frame.x(x))}" cy="{n(frame.y(y))}" r="2.2" '
            f'fill="{colours[name]}" fill-opacity="0.5"/>'
            for x, y in group
        ]
    return elements


def axes(
    frame: Frame,
    title: str,
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
) -> list[str]:
    """A panel's title, grid lines at the y ticks, both axes with their ticks and labels: the x
    ticks are (data value, label) pairs, the y ticks data values labelled with as many decimals
    as their step needs."""
    elements = [_text(frame.left, 22, title, size=14, weight="600")]
    for tick in y_ticks:
        y = n(frame.y(tick))
        elements.append(
            f'<line x1="{n(frame.left)}" y1="{y}" x2="{n(frame.right)}" y2="{y}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        elements.append(
            _text(frame.left - 6, frame.y(tick) + 4, _tick_label(tick, y_ticks), anchor="end")
        )
    bottom = n(frame.bottom)
    for value, label in x_ticks:
        x = n(frame.x(value))
        elements.append(
            f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{n(frame.bottom + 4)}" stroke="{MUTED}"/>'
        )
        elements.append(_text(frame.x(value), frame.bottom + 17, label, anchor="middle"))
    elements.append(
        f'<path d="M{n(frame.left)},{n(frame.top)} V{bottom} H{n(frame.right)}" '
        f'fill="none" stroke="{MUTED}" stroke-width="1"/>'
    )
    if x_label:
        elements.append(_text((frame.left + frame.right) / 2, HEIGHT - 10, x_label, size=12))
    if y_label:
        elements.append(_text(14, (frame.top + frame.bottom) / 2, y_label, rotate=True))
    return elements


def legend(items: Sequence[tuple[str, str, str]]) -> tuple[list[str], float]:
    """Legend entries (label, colour, mark: line, dashed, box or dot) in rows under the title,
    and the top of the plot area below them."""
    elements, x, y = [], 64.0, 42.0
    for label, colour, mark in items:
        width = 26 + len(label) * CHAR_WIDTH * 12 + 14
        if x > 64 and x + width > WIDTH - 20:
            x, y = 64.0, y + 16
        if mark in ("line", "dashed"):
            dash = ' stroke-dasharray="6 4"' if mark == "dashed" else ""
            elements.append(
                f'<line x1="{n(x)}" y1="{n(y - 4)}" x2="{n(x + 20)}" y2="{n(y - 4)}" '
                f'stroke="{colour}" stroke-width="2"{dash}/>'
            )
        elif mark == "box":
            elements.append(
                f'<rect x="{n(x + 4)}" y="{n(y - 10)}" width="12" height="12" fill="{colour}" '
                f'fill-opacity="0.45" stroke="{colour}"/>'
            )
        else:
            elements.append(f'<circle cx="{n(x + 10)}" cy="{n(y - 4)}" r="4" fill="{colour}"/>')
        elements.append(_text(x + 26, y, label, size=12))
        x += width
    return elements, y + 16


def no_data(title: str) -> list[str]:
    """A panel's elements when it has nothing to draw: its title over a box saying "no data"."""
    return [
        _text(64, 22, title, size=14, weight="600"),
        f'<rect x="64" y="42" width="{WIDTH - 84}" height="{HEIGHT - 88}" fill="#f9fafb" '
        f'stroke="{GRID}"/>',
        _text(WIDTH / 2 + 12, HEIGHT / 2 + 5, "no data", size=14, anchor="middle", fill=MUTED),
    ]


def document(width: int, height: int, title: str, elements: Sequence[str]) -> str:
    """A standalone SVG picture of ``width`` × ``height`` holding ``elements`` (SVG strings) on
    white, ``title`` its accessible name."""
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="{FONT}" role="img">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            *elements,
            "</svg>",
        ]
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: int = TICK_FONT,
    anchor: str = "start",
    fill: str = INK,
    weight: str = "normal",
    rotate: bool = False,
) -> str:
    turn = f' transform="rotate(-90 {n(x)} {n(y)})"' if rotate else ""
    if rotate:
        anchor = "middle"
    return (
        f'<text x="{n(x)}" y="{n(y)}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
        f'font-weight="{weight}"{turn}>{escape(str(text))}</text>'
    )


def _tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the ticks' step needs (0.05 apart: two)."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}" if decimals <= 4 else f"{value:.1e}"


def _run_label(row: Mapping[str, Any]) -> str:
    """A history row's x label: its window's end as ``MM-DD HH:MM`` (UTC), else its run."""
    try:
        end = datetime.fromisoformat(str(row.get("end")))
    except ValueError:
        return str(row.get("run") or "?")
    if end.tzinfo is not None:
        end = end.astimezone(UTC)
    return end.strftime("%m-%d %H:%M")


def _number(value: object) -> float | None:
    """``value`` as a float, ``None`` when it is no finite number (a gap, not an error)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _finite(values: Sequence[Any]) -> list[float]:
    return [v for v in map(_number, values) if v is not None]


def n(value: float) -> str:
    """A coordinate as an SVG attribute's text, with two decimals at most: short, and the same
    text for the same input."""
    return f"{round(value, 2) + 0.0:g}"
