"""``imgsearch monitor report``: a monitor report as one HTML page.

The page stands alone (inline CSS, the picture inside it, nothing fetched), so it can be written
to a file and opened without a network::

    from imgsearch_devkit.ops.monitor_page import render_page

    page = render_page(report)               # report: report.json as a dict; picture drawn from it
    page = render_page(report, svg=stored)   # or the report.svg stored beside it
    Path("monitor.html").write_text(page, encoding="utf-8")

Every value of the report is escaped. The picture is an ``<img>`` of a ``data:`` URI, in which a
browser runs no script (a report.svg read from the bucket is not vouched for), and the page's
Content-Security-Policy forbids scripts and outside loads besides.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from imgsearch.monitor.plots import report_svg

POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

QUALITY_COLUMNS = (
    # (report key, heading, format)
    ("searches", "searches", ""),
    ("clicked", "clicked", ""),
    ("zero_result_rate", "zero results", ".1%"),
    ("low_score_rate", "low top score", ".1%"),
    ("ctr_at_10", "CTR@10", ".3f"),
    ("mrr", "MRR", ".3f"),
    ("latency_p50_ms", "p50 ms", ".1f"),
    ("latency_p99_ms", "p99 ms", ".1f"),
)
DRIFT_COLUMNS = (
    ("method", "method", ""),
    ("statistic", "statistic", ".4g"),
    ("threshold", "threshold", ".4g"),
    ("p_value", "p-value", ".3f"),
    ("centroid_shift", "centroid shift", ".4f"),
    ("reference_size", "reference size", ""),
    ("current_size", "current size", ""),
    ("consecutive", "consecutive windows", ""),
)
DRIFT_KINDS = (
    ("images", "images: new uploads vs the serving index's sample"),
    ("queries", "queries: this window vs the previous one"),
)

STYLE = """
  :root { --fg: #1d2330; --muted: #667085; --line: #d0d5dd; --bg: #f7f8fa; }
  body { margin: 0; padding: 18px 24px 32px; font: 15px/1.4 system-ui, -apple-system,
         "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  h1 { margin: 0 0 10px; font-size: 22px; }
  h1 small { font-weight: normal; color: var(--muted); font-size: 14px; }
  h2 { margin: 26px 0 8px; font-size: 17px; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
  dt { color: var(--muted); }
  dd { margin: 0; word-break: break-all; }
  code { font-size: 13px; }
  .badges { display: flex; gap: 10px; flex-wrap: wrap; margin: 14px 0 0; }
  .badge { padding: 3px 10px; border-radius: 999px; font-weight: 600; font-size: 14px;
           border: 1px solid; }
  .bad { color: #b42318; background: #fef3f2; border-color: #fda29b; }
  .ok { color: #067647; background: #ecfdf3; border-color: #75e0a7; }
  .none { color: var(--muted); background: #f2f4f7; border-color: var(--line); }
  table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
  th, td { border: 1px solid var(--line); padding: 5px 9px; text-align: right; }
  th:first-child, td:first-child, .text { text-align: left; }
  th { background: #f2f4f7; font-weight: 600; }
  tr.serving td { font-weight: 600; }
  tfoot td { color: var(--muted); }
  p.note { color: var(--muted); margin: 6px 0 0; }
  img.plots { display: block; max-width: 100%; height: auto; background: #fff;
              border: 1px solid var(--line); }
"""


def render_page(report: Mapping[str, Any], svg: str | None = None) -> str:
    """The report as a standalone HTML page; its plots are ``svg`` if given (the stored
    report.svg), else drawn from the report with ``report_svg``."""
    picture = report_svg(report) if svg is None else svg
    source = base64.b64encode(picture.encode("utf-8")).decode("ascii")
    serving = report.get("serving") or {}
    window = report.get("window") or {}
    drift = report.get("drift") or {}
    run = _value(report.get("run"))
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>imgsearch monitor · {run}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>Monitor report <small>run {run}</small></h1>",
            "<dl>",
            f"<dt>window</dt><dd>{_value(window.get('start'))} → {_value(window.get('end'))}</dd>",
            f"<dt>created</dt><dd>{_value(report.get('created_at'))}</dd>",
            f"<dt>serving model</dt><dd>{_value(serving.get('model'), empty='none')}</dd>",
            f"<dt>serving index</dt><dd>{_value(serving.get('index_version'), empty='none')}</dd>",
            f"<dt>golden set sha256</dt>"
            f"<dd><code>{_value(report.get('golden_sha256'), empty='none')}</code></dd>",
            "</dl>",
            '<div class="badges">',
            *(_drift_badge(drift.get(kind), kind) for kind, _ in DRIFT_KINDS),
            _degraded_badge(report.get("degraded")),
            "</div>",
            "<h2>Search quality</h2>",
            *_quality_table(report.get("quality") or [], report.get("baseline"), serving),
            _degraded_note(report.get("degraded")),
            "<h2>Embedding drift</h2>",
            *_drift_table(drift),
            "<h2>Plots</h2>",
            f'<img class="plots" alt="drift statistic per run, search quality per run, top-1 '
            f'score distributions and a 2-D projection of the embeddings" '
            f'src="data:image/svg+xml;base64,{source}">',
            "</body>",
            "</html>",
            "",
        ]
    )


def _quality_table(
    rows: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Any] | None,
    serving: Mapping[str, Any],
) -> list[str]:
    headings = "".join(f"<th>{heading}</th>" for _, heading, _ in QUALITY_COLUMNS)
    lines = [
        "<table>",
        f'<thead><tr><th>model</th><th class="text">index version</th>{headings}</tr></thead>',
        "<tbody>",
    ]
    for row in rows:
        pair = (row.get("model"), row.get("index_version"))
        mark = (
            ' class="serving"'
            if pair == (serving.get("model"), serving.get("index_version"))
            else ""
        )
        cells = "".join(
            f"<td>{_value(row.get(key), spec)}</td>" for key, _, spec in QUALITY_COLUMNS
        )
        lines.append(
            f"<tr{mark}><td>{_value(pair[0])}</td>"
            f'<td class="text">{_value(pair[1])}</td>{cells}</tr>'
        )
    if not rows:
        lines.append(f'<tr><td colspan="{len(QUALITY_COLUMNS) + 2}">no searches</td></tr>')
    lines.append("</tbody>")
    if baseline:
        cells = "".join(
            f"<td>{_value(baseline.get(key), spec)}</td>" if key in baseline else "<td></td>"
            for key, _, spec in QUALITY_COLUMNS
        )
        windows = _value(baseline.get("windows"))
        lines.append(f'<tfoot><tr><td colspan="2">baseline ({windows} windows)</td>{cells}</tr>')
        lines.append("</tfoot>")
    lines.append("</table>")
    return lines


def _degraded_note(degraded: Mapping[str, Any] | None) -> str:
    if not degraded:
        return '<p class="note">degradation: not measured</p>'
    dropped = ", ".join(_value(name) for name in degraded.get("metrics") or []) or "none"
    return (
        f'<p class="note">degraded: {_value(degraded.get("flag"))}; dropped against the '
        f"baseline: {dropped}; consecutive windows: {_value(degraded.get('consecutive'))}</p>"
    )


def _drift_table(drift: Mapping[str, Any]) -> list[str]:
    headings = "".join(f"<th>{heading}</th>" for _, heading, _ in DRIFT_COLUMNS)
    lines = [
        "<table>",
        f"<thead><tr><th>embeddings</th>{headings}<th>verdict</th></tr></thead>",
        "<tbody>",
    ]
    for kind, description in DRIFT_KINDS:
        figures = drift.get(kind)
        if figures:
            cells = "".join(
                f"<td>{_value(figures.get(key), spec)}</td>" for key, _, spec in DRIFT_COLUMNS
            )
        else:
            cells = f'<td colspan="{len(DRIFT_COLUMNS)}">not measured this window</td>'
        lines.append(f"<tr><td>{description}</td>{cells}<td>{_drift_badge(figures)}</td></tr>")
    lines += ["</tbody>", "</table>"]
    return lines


def _drift_badge(figures: Mapping[str, Any] | None, kind: str = "") -> str:
    prefix = f"{kind}: " if kind else ""
    if not figures:
        return f'<span class="badge none">{prefix}not measured</span>'
    if figures.get("drift"):
        return f'<span class="badge bad">{prefix}DRIFT</span>'
    return f'<span class="badge ok">{prefix}no drift</span>'


def _degraded_badge(degraded: Mapping[str, Any] | None) -> str:
    if not degraded:
        return '<span class="badge none">quality: not measured</span>'
    if degraded.get("flag"):
        return '<span class="badge bad">quality: DEGRADED</span>'
    return '<span class="badge ok">quality: ok</span>'


def _value(value: Any, spec: str = "", *, empty: str = "—") -> str:
    """``value`` as escaped HTML text: a number in ``spec``, ``None`` as ``empty``."""
    if value is None:
        return html.escape(empty)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec and isinstance(value, int | float):
        return html.escape(format(value, spec))
    return html.escape(str(value))
