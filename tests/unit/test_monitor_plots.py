"""The monitor report's pictures (SVG), its 2-D projection and its HTML page."""

from __future__ import annotations

import base64
import copy
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from imgsearch_devkit.ops.monitor_page import render_page

from imgsearch.monitor.plots import histogram, line_chart, nice_ticks, report_svg, scatter
from imgsearch.monitor.projection import project_2d

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('x')</script> & \"friends\""


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    width, height = root.get("width"), root.get("height")
    assert root.get("viewBox") == f"0 0 {width} {height}"
    return root


def texts(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def paths_of(root: ET.Element, colour: str) -> list[str]:
    return [p.get("d", "") for p in root.iter(f"{SVG}path") if p.get("stroke") == colour]


def report(**changes: object) -> dict:
    """A small report of the brief's shape."""
    history = [
        {
            "run": f"20261202T0{hour}1500.000000Z-abc",
            "end": f"2026-12-02T0{hour}:15:00Z",
            "images_statistic": statistic,
            "images_threshold": 0.011,
            "queries_statistic": 0.004,
            "queries_threshold": 0.013,
            "ctr_at_10": 0.41,
            "mrr": 0.3,
        }
        for hour, statistic in enumerate([0.003, None, 0.005, 0.034])
    ]
    figures = {
        "method": "mmd",
        "statistic": 0.034,
        "threshold": 0.011,
        "p_value": 0.001,
        "drift": True,
        "centroid_shift": 0.08,
        "reference_size": 2000,
        "current_size": 300,
        "consecutive": 3,
    }
    base = {
        "run": history[-1]["run"],
        "window": {"start": "2026-12-02T02:15:00Z", "end": "2026-12-02T03:15:00Z"},
        "created_at": "2026-12-02T03:16:00Z",
        "serving": {"model": "demo-clip@3", "index_version": "v1"},
        "quality": [
            {
                "model": "demo-clip@3",
                "index_version": "v1",
                "searches": 120,
                "clicked": 40,
                "zero_result_rate": 0.0,
                "low_score_rate": 0.05,
                "ctr_at_10": 0.33,
                "mrr": 0.25,
                "latency_p50_ms": 40.0,
                "latency_p99_ms": 180.0,
            }
        ],
        "baseline": {
            "windows": 24,
            "ctr_at_10": 0.41,
            "mrr": 0.3,
            "zero_result_rate": 0.0,
            "low_score_rate": 0.04,
        },
        "degraded": {"flag": True, "metrics": ["ctr_at_10"], "consecutive": 2},
        "drift": {"images": figures, "queries": figures | {"drift": False, "p_value": 0.4}},
        "history": history,
        "scores": {"current": [0.21, 0.25, 0.3], "baseline": [0.3, 0.32, 0.35, 0.4]},
        "projection": {"reference": [[0.0, 1.0], [0.5, -1.0], [1.0, 0.2]], "current": [[3.0, 0.1]]},
        "golden_sha256": "ab" * 32,
    }
    return base | changes


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0.0, 0.034) == [0.0, 0.01, 0.02, 0.03, 0.04]
    assert nice_ticks(0.18, 0.34) == [0.15, 0.2, 0.25, 0.3, 0.35]
    assert nice_ticks(-3.2, 7.9) == [-4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]
    assert nice_ticks(2.0, 2.0) == [1.8, 1.9, 2.0, 2.1, 2.2]  # one value: a range around it
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(1.0, float("nan"))


def test_line_chart_draws_each_series_and_its_dashed_threshold_with_gaps() -> None:
    svg = line_chart(
        {"images": [0.01, 0.02, None, 0.03, 0.05], "queries": [0.02] * 5},
        ["a", "b", "c", "d", "e"],
        thresholds={"images": [0.04, 0.04, 0.04, None, 0.04]},
        title="Drift",
        y_label="MMD²",
    )
    root = parse(svg)
    assert {"Drift", "MMD²", "images", "images threshold", "queries"} <= set(texts(root))
    assert "queries threshold" not in texts(root)
    blue, orange = "#0072B2", "#E69F00"
    line, dashed = sorted(
        (p for p in root.iter(f"{SVG}path") if p.get("stroke") == blue),
        key=lambda p: p.get("stroke-dasharray", ""),
    )
    assert line.get("d", "").count("M") == 2  # broken at the missing run
    assert dashed.get("d", "").count("M") == 2  # and the lone last threshold is a stroke of its own
    assert paths_of(root, orange)[0].count("M") == 1
    markers = [c for c in root.iter(f"{SVG}circle") if c.get("fill") == blue]
    assert len(markers) == 4  # one per value that is there


def test_line_chart_thins_its_labels_to_fit() -> None:
    labels = [f"12-01 {hour:02d}:15" for hour in range(48)]
    root = parse(line_chart({"images": [0.01] * 48}, labels, title="t", y_label="y"))
    shown = [text for text in texts(root) if text in labels]
    assert labels[0] in shown
    assert 3 <= len(shown) < 12


def test_line_chart_refuses_values_that_do_not_match_the_labels() -> None:
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        line_chart({"images": [1.0, 2.0]}, ["a", "b", "c"], title="t", y_label="y")
    with pytest.raises(ValueError, match="thresholds for no series"):
        line_chart({"a": [1.0]}, ["x"], thresholds={"b": [1.0]}, title="t", y_label="y")


def bar_heights(root: ET.Element, colour: str) -> list[float]:
    return [float(r.get("height", 0)) for r in root.iter(f"{SVG}rect") if r.get("fill") == colour]


def test_histogram_shows_shares_on_shared_bins() -> None:
    # 10 samples against 1000 of the same value: the same share, so bars of the same height.
    root = parse(
        histogram({"few": [0.5] * 10, "many": [0.5] * 1000}, title="Scores", x_label="score")
    )
    few, many = bar_heights(root, "#0072B2"), bar_heights(root, "#E69F00")
    assert len(few) == len(many) == 2  # the bar, and the legend's swatch
    assert max(few) == max(many)
    assert {"few (n=10)", "many (n=1000)", "share of samples", "score"} <= set(texts(root))

    root = parse(histogram({"a": [0.1, 0.1, 0.1, 0.9]}, bins=4, title="t", x_label="x"))
    heights = sorted(bar_heights(root, "#0072B2"))[1:]  # without the swatch
    assert heights[1] == pytest.approx(3 * heights[0], abs=0.02)
    with pytest.raises(ValueError, match="bins"):
        histogram({"a": [1.0]}, bins=0, title="t", x_label="x")


def test_scatter_draws_every_point_of_every_group() -> None:
    root = parse(scatter({"ref": [[0, 0], [1, 1], [2, 0.5]], "new": [[5, 5]]}, title="PCA"))
    circles = list(root.iter(f"{SVG}circle"))
    assert len(circles) == 4 + 2  # the points, and a legend dot per group
    assert {"ref (n=3)", "new (n=1)"} <= set(texts(root))
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        scatter({"ref": [[0, 0, 0]]}, title="PCA")


def test_missing_data_draws_a_no_data_panel() -> None:
    for svg in (
        line_chart({"images": [None, None]}, ["a", "b"], title="t", y_label="y"),
        line_chart({}, [], title="t", y_label="y"),
        histogram({"a": [], "b": [float("nan")]}, title="t", x_label="x"),
        scatter({"a": []}, title="t"),
    ):
        assert texts(parse(svg)).count("no data") == 1
    assert texts(parse(report_svg({}))).count("no data") == 4
    empty = report(history=[], scores=None, projection={"reference": [], "current": []})
    assert texts(parse(report_svg(empty))).count("no data") == 4


def test_report_svg_holds_every_panel() -> None:
    root = parse(report_svg(report()))
    assert int(root.get("width", 0)) > 0 and int(root.get("height", 0)) > 0
    found = set(texts(root))
    assert {
        "Embedding drift per run",
        "images",
        "images threshold",
        "queries",
        "queries threshold",
        "CTR@10",
        "MRR",
        "this window (n=3)",
        "previous run (n=4)",
        "index sample (n=3)",
        "new images (n=1)",
        "12-02 00:15",  # the first run's window end, UTC
    } <= found
    assert "no data" not in found


def test_hostile_text_is_escaped() -> None:
    svg = line_chart({HOSTILE: [1.0]}, [HOSTILE], title=HOSTILE, y_label=HOSTILE)
    assert "<script>" not in svg
    # The title, the y axis's label, the legend's and the x axis's: the same text once parsed.
    assert texts(parse(svg)).count(HOSTILE) == 4
    svg = report_svg(report(run=HOSTILE, window={"start": HOSTILE, "end": "x"}))
    assert "<script>" not in svg
    parse(svg)


def test_the_same_report_gives_the_same_picture() -> None:
    assert report_svg(report()) == report_svg(copy.deepcopy(report()))


def clusters(rng: np.random.Generator, rows: int, offset: float) -> np.ndarray:
    points = rng.normal(scale=0.1, size=(rows, 16))
    points[:, 3] += offset
    return points


def test_project_2d_separates_clusters_along_the_first_axis() -> None:
    rng = np.random.default_rng(0)
    reference, current = project_2d(clusters(rng, 300, 0.0), clusters(rng, 200, 2.0), rng=rng)
    assert len(reference) == 300 and len(current) == 200
    assert all(len(point) == 2 for point in reference + current)
    ref_x, cur_x = [p[0] for p in reference], [p[0] for p in current]
    assert max(ref_x) < min(cur_x) or max(cur_x) < min(ref_x)
    # The second axis is noise: far narrower than the gap between the clusters.
    assert np.ptp([p[1] for p in reference + current]) < abs(np.mean(ref_x) - np.mean(cur_x))
    assert all(round(v, 4) == v for point in reference for v in point)


def test_project_2d_bounds_the_points_and_repeats_itself() -> None:
    data = clusters(np.random.default_rng(1), 1200, 0.0), clusters(np.random.default_rng(2), 50, 1)
    first = project_2d(*data, max_points=100, rng=np.random.default_rng(3))
    assert (len(first[0]), len(first[1])) == (100, 50)
    assert project_2d(*data, max_points=100, rng=np.random.default_rng(3)) == first
    flat = project_2d(np.array([[0.0], [1.0]]), np.array([[3.0]]), rng=np.random.default_rng(0))
    assert [p[1] for p in flat[0] + flat[1]] == [0.0, 0.0, 0.0]  # one dimension: y is flat


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        (np.zeros((0, 4)), np.zeros((3, 4)), "reference must be a non-empty 2-D"),
        (np.zeros((3, 4)), np.zeros(4), "current must be a non-empty 2-D"),
        (np.zeros((3, 4)), np.zeros((3, 5)), "dimensions differ: 4 and 5"),
        (np.full((3, 4), np.nan), np.zeros((3, 4)), "not finite"),
    ],
)
def test_project_2d_refuses_bad_input(reference, current, message) -> None:
    with pytest.raises(ValueError, match=message):
        project_2d(reference, current, rng=np.random.default_rng(0))


def embedded_svg(page: str) -> str:
    (source,) = re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page)
    return base64.b64decode(source).decode("utf-8")


def test_render_page_shows_the_figures_and_badges() -> None:
    page = render_page(report())
    assert embedded_svg(page) == report_svg(report())
    assert '<span class="badge bad">images: DRIFT</span>' in page
    assert '<span class="badge ok">queries: no drift</span>' in page
    assert '<span class="badge bad">quality: DEGRADED</span>' in page
    for shown in ("demo-clip@3", "ab" * 32, "0.034", "0.011", "0.001", "2000"):
        assert shown in page
    assert "baseline (24 windows)" in page and "<td>5.0%</td>" in page
    assert 'class="serving"' in page

    calm = report(drift={"images": None, "queries": None}, degraded=None, serving=None)
    page = render_page(calm, svg="<svg/>")
    assert embedded_svg(page) == "<svg/>"
    assert "DRIFT" not in page and "images: not measured" in page
    assert "quality: not measured" in page


def test_render_page_escapes_the_report() -> None:
    hostile = report(
        run=HOSTILE,
        serving={"model": HOSTILE, "index_version": HOSTILE},
        golden_sha256=HOSTILE,
        degraded={"flag": True, "metrics": [HOSTILE], "consecutive": HOSTILE},
        quality=[{"model": HOSTILE, "index_version": HOSTILE, "searches": HOSTILE}],
        drift={"images": {"method": HOSTILE, "drift": True}, "queries": None},
    )
    page = render_page(hostile)
    assert "<script" not in page
    assert page.count("&lt;script&gt;") >= 8
    assert "script-src" not in page and "default-src 'none'" in page  # no script may run at all
