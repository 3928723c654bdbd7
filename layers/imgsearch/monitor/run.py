"""One run of the monitor: the last window's quality figures and embedding drift, as a report
in S3, metrics, and the flags the alarms watch.

The scheduled monitor function calls ``run_monitor`` once per window (``IMGSEARCH_MONITOR_WINDOW_
MINUTES``, the schedule's rate). It reads the usage log of the window
(``imgsearch.usage.reader``), joins feedback to searches, and measures:

- quality, per model and index version (``monitor.quality``), against the baseline of the
  earlier windows of the last ``baseline_days`` that were not flagged themselves: a drop beyond
  ``max_drop`` flags the window;
- drift of the images uploaded in the window against the serving version's reference sample
  (``catalog.reference``), and of the window's query embeddings against the previous run's
  (a sample each run keeps beside its report, ``queries.npy``; after a drifted window, the
  reference it drifted from, for up to ``baseline_days``), with ``monitor.drift``'s multi-width
  MMD² permutation test.

The window ends ``feedback_lag_seconds`` before the run, whose clicks on the window's last
searches count.

A flag that holds for ``alarm_windows`` windows in a row is what the template's alarms fire on
(the flag metrics, with as many evaluation periods); the report counts the run of flags too, so
``imgsearch monitor report`` says the same without CloudWatch::

    run = run_monitor(settings, s3, now=datetime.now(UTC))
    run.report["degraded"]["flag"], run.report["drift"]["images"]["drift"]
    write_report(s3, settings, run)   # monitor/<run>/: report.json, report.svg, queries.npy
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from imgsearch.catalog.current import read_current
from imgsearch.catalog.layout import new_version
from imgsearch.catalog.reference import read_reference, sample_rows
from imgsearch.catalog.retraining import read_latest_retrain
from imgsearch.core.aws import get_object_if_any
from imgsearch.core.clock import ISO_FORMAT, now_iso
from imgsearch.core.config import MonitorSettings, Settings
from imgsearch.eval.golden import load_golden
from imgsearch.monitor.drift import mmd_test
from imgsearch.monitor.plots import report_svg
from imgsearch.monitor.projection import project_2d
from imgsearch.monitor.quality import baseline_of, degradation, overall, quality_figures
from imgsearch.monitor.triggers import new_data_tally
from imgsearch.usage.join import JoinedQuery, join
from imgsearch.usage.reader import UsageReader
from imgsearch.usage.records import (
    FeedbackRecord,
    IngestRecord,
    Record,
    SearchRecord,
    decode_vector,
)

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
PICTURE_FILE = "report.svg"
QUERIES_FILE = "queries.npy"
LATEST_FILE = "latest.json"
PLOTTED_WINDOWS = 48
MAX_SCORES = 2000
"""Top-1 scores kept per side for the score distributions (the report stays small)."""


def _iso(moment: datetime) -> str:
    return moment.strftime(ISO_FORMAT)


def read_latest(s3: Any, settings: Settings) -> dict[str, Any] | None:
    """The last run's report, None before the first."""
    response = get_object_if_any(s3, settings.bucket, settings.monitor.prefix + LATEST_FILE)
    return None if response is None else json.loads(response["Body"].read())


def _vectors(rows: Iterable[str]) -> np.ndarray | None:
    decoded = [decode_vector(text) for text in rows]
    if not decoded or len({len(v) for v in decoded}) != 1:
        return None
    return np.stack(decoded)


def _first_pages(records: Iterable[Record], model: str | None) -> list[SearchRecord]:
    return [
        r
        for r in records
        if isinstance(r, SearchRecord) and r.offset == 0 and (model is None or r.model == model)
    ]


def _top_scores(queries: Sequence[JoinedQuery] | Sequence[SearchRecord]) -> list[float]:
    scores = []
    for item in queries:
        search = item.search if isinstance(item, JoinedQuery) else item
        if search.offset == 0 and search.results:
            scores.append(round(search.results[0].score, 4))
    return scores[-MAX_SCORES:]


def _consecutive(flag: bool, previous: Mapping[str, Any] | None, *path: str) -> int:
    """How many windows in a row (this one included) have raised the flag at ``path``."""
    if not flag:
        return 0
    node: Any = previous
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return (node if isinstance(node, int) else 0) + 1


@dataclass(frozen=True)
class MonitorRun:
    report: dict[str, Any]
    """The report (JSON): the figures, flags, history and plot data."""
    queries: np.ndarray | None
    """A sample of the window's query embeddings (float16): the next run's reference."""


class Monitor:
    """The figures of one window; ``run`` assembles them into the report."""

    def __init__(self, settings: Settings, s3: Any, rng: np.random.Generator | None = None) -> None:
        self.settings = settings
        self.options: MonitorSettings = settings.monitor
        self.s3 = s3
        self.rng = rng or np.random.default_rng()

    def _drift(
        self, reference: np.ndarray | None, current: np.ndarray | None
    ) -> dict[str, Any] | None:
        options = self.options
        if reference is None or current is None:
            return None
        if min(len(reference), len(current)) < options.drift_min_samples:
            return None
        if reference.shape[1] != current.shape[1]:
            return None  # another model's vectors: nothing to compare
        result = mmd_test(
            reference,
            current,
            permutations=options.drift_permutations,
            alpha=options.drift_alpha,
            max_samples=options.drift_max_samples,
            rng=self.rng,
        )
        return result.as_dict()

    def run(self, end: datetime | None = None, start: datetime | None = None) -> MonitorRun:
        """The report of ``[start, end)``: by default the ``window_minutes`` that ended
        ``feedback_lag_seconds`` ago. Feedback on the window's searches counts until now."""
        settings, options = self.settings, self.options
        now = datetime.now(UTC)
        end = (end or now - timedelta(seconds=options.feedback_lag_seconds)).astimezone(UTC)
        start = start or end - timedelta(minutes=options.window_minutes)
        if start >= end:
            raise ValueError(f"the window starts ({start}) after it ends ({end})")
        previous = read_latest(self.s3, settings)
        current = read_current(self.s3, settings.bucket, settings.index.prefix)
        serving_model = current.model if current else None

        reader = UsageReader(self.s3, settings.bucket, settings.usage.prefix)
        records = list(reader.records(start, max(now, end)))
        cut = _iso(end)
        recent = [r for r in records if r.time < cut]
        late = [r for r in records if r.time >= cut and isinstance(r, FeedbackRecord)]

        joined, stats = join([*recent, *late])
        figures = quality_figures(joined, low_score=options.low_score)
        combined = overall(figures)
        history = list(previous.get("history", [])) if previous else []
        since = _iso(start - timedelta(days=options.baseline_days))
        # Windows flagged themselves stay out: a lasting degradation must not become the norm.
        healthy = [h for h in history if h.get("end", "") >= since and not h.get("degraded")]
        baseline = baseline_of(healthy, min_searches=options.min_searches)
        dropped = (
            degradation(
                combined, baseline, max_drop=options.max_drop, min_searches=options.min_searches
            )
            if combined
            else []
        )
        degraded = {
            "flag": bool(dropped),
            "metrics": dropped,
            "consecutive": _consecutive(bool(dropped), previous, "degraded", "consecutive"),
        }

        uploads = [
            r.vector
            for r in recent
            if isinstance(r, IngestRecord) and (serving_model is None or r.model == serving_model)
        ]
        new_images = _vectors(uploads)
        reference = (
            read_reference(self.s3, settings.bucket, settings.index.prefix, current.version)
            if current
            else None
        )
        searched = _vectors(r.vector for r in _first_pages(recent, serving_model) if r.vector)
        reference_run = self._query_reference_run(previous, end)
        drift: dict[str, Any] = {
            "images": self._drift(
                None if reference is None else reference.astype(np.float32), new_images
            ),
            "queries": self._drift(self._query_reference(reference_run), searched),
        }
        for name, result in drift.items():
            if result is not None:
                result["consecutive"] = _consecutive(
                    result["drift"], previous, "drift", name, "consecutive"
                )

        projection = {"reference": [], "current": []}
        if drift["images"] is not None and reference is not None and new_images is not None:
            ref_points, cur_points = project_2d(reference, new_images, rng=self.rng)
            projection = {"reference": ref_points, "current": cur_points}

        golden = load_golden(self.s3, settings.bucket, settings.gate.golden_key)
        run = new_version(end)
        entry = {
            "run": run,
            "end": _iso(end),
            "searches": combined.searches if combined else 0,
            "ctr_at_10": combined.ctr_at_10 if combined else None,
            "mrr": combined.mrr if combined else None,
            "zero_result_rate": combined.zero_result_rate if combined else None,
            "low_score_rate": combined.low_score_rate if combined else None,
            "degraded": degraded["flag"],
        }
        for name in ("images", "queries"):
            result = drift[name]
            entry[f"{name}_statistic"] = result["statistic"] if result else None
            entry[f"{name}_threshold"] = result["threshold"] if result else None
            entry[f"{name}_drift"] = result["drift"] if result else None
        keep = max(PLOTTED_WINDOWS, options.baseline_days * 24 * 60 // options.window_minutes)
        history = [*history, entry][-keep:]

        counts = {
            "searches": stats.searches,
            "feedback": stats.feedback,
            "feedback_joined": stats.joined,
            "ingested": sum(isinstance(r, IngestRecord) for r in recent),
            "log_objects": reader.stats.objects,
            "malformed": reader.stats.malformed,
        }
        report = {
            "run": run,
            "window": {"start": _iso(start), "end": _iso(end)},
            "created_at": now_iso(),
            "serving": {"model": current.model, "index_version": current.version}
            if current
            else None,
            "counts": counts,
            "quality": [f.as_dict() for f in figures],
            "overall": combined.as_dict() if combined else None,
            "baseline": baseline.as_dict() if baseline else None,
            "degraded": degraded,
            "drift": drift,
            "query_reference": reference_run,
            "history": history,
            "scores": {
                "current": _top_scores(joined),
                "baseline": previous["scores"]["current"] if previous else [],
            },
            "projection": projection,
            "retrain": new_data_tally(
                previous,
                counts,
                read_latest_retrain(self.s3, settings.bucket, settings.retrain.prefix),
            ),
            "golden_sha256": golden.sha256 if golden else None,
            "settings": {
                "window_minutes": options.window_minutes,
                "low_score": options.low_score,
                "max_drop": options.max_drop,
                "min_searches": options.min_searches,
                "alarm_windows": options.alarm_windows,
                "drift_alpha": options.drift_alpha,
            },
        }
        logger.info(
            "monitor: %d searches, %d feedback, %d new images; degraded=%s images=%s queries=%s",
            stats.searches,
            stats.feedback,
            report["counts"]["ingested"],
            degraded["metrics"] or "no",
            "drift" if drift["images"] and drift["images"]["drift"] else "ok/none",
            "drift" if drift["queries"] and drift["queries"]["drift"] else "ok/none",
        )
        sample = None
        if searched is not None:
            sample = sample_rows(searched, options.drift_max_samples, self.rng)
        return MonitorRun(report, sample)

    def _query_reference_run(
        self, previous: Mapping[str, Any] | None, end: datetime
    ) -> dict[str, str] | None:
        """Whose query sample this window is compared with: the previous run's, unless that run
        drifted itself; then the reference it drifted from stays, so that a lasting change keeps
        its flag for the alarm's windows, until the reference is ``baseline_days`` old."""
        if previous is None:
            return None
        latest = {"run": previous["run"], "end": previous["window"]["end"]}
        kept = previous.get("query_reference")
        drifted = (previous["drift"].get("queries") or {}).get("drift")
        oldest = _iso(end - timedelta(days=self.options.baseline_days))
        if drifted and kept and kept["end"] >= oldest:
            return dict(kept)
        return latest

    def _query_reference(self, reference: Mapping[str, str] | None) -> np.ndarray | None:
        """That run's sample of query embeddings, None if it kept none."""
        if reference is None:
            return None
        key = f"{self.options.prefix}{reference['run']}/{QUERIES_FILE}"
        response = get_object_if_any(self.s3, self.settings.bucket, key)
        if response is None:
            return None
        return np.load(io.BytesIO(response["Body"].read()), allow_pickle=False).astype(np.float32)


def run_monitor(
    settings: Settings,
    s3: Any,
    now: datetime | None = None,
    rng: np.random.Generator | None = None,
    start: datetime | None = None,
) -> MonitorRun:
    """The run of the window that ends ``now`` (and starts at ``start``, if given)."""
    return Monitor(settings, s3, rng).run(now, start)


def write_report(s3: Any, settings: Settings, run: MonitorRun) -> str:
    """The report, its picture and its query sample under ``monitor/<run>/``, then
    ``latest.json`` (last: the next run reads the others through it); the key of the report."""
    report = run.report
    prefix = settings.monitor.prefix
    if run.queries is not None:
        buffer = io.BytesIO()
        np.save(buffer, run.queries, allow_pickle=False)
        s3.put_object(
            Bucket=settings.bucket,
            Key=f"{prefix}{report['run']}/{QUERIES_FILE}",
            Body=buffer.getvalue(),
        )
    body = json.dumps(report, separators=(",", ":")).encode("utf-8")
    key = f"{prefix}{report['run']}/{REPORT_FILE}"
    s3.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType="application/json")
    s3.put_object(
        Bucket=settings.bucket,
        Key=f"{prefix}{report['run']}/{PICTURE_FILE}",
        Body=report_svg(report).encode("utf-8"),
        ContentType="image/svg+xml",
    )
    s3.put_object(
        Bucket=settings.bucket,
        Key=prefix + LATEST_FILE,
        Body=body,
        ContentType="application/json",
    )
    return key


def metric_values(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's figures as the metrics the dashboard plots and the alarms watch: the flags
    are 0 or 1 every window, so that ``alarm_windows`` periods in a row mean that many flags."""
    values: dict[str, float] = {
        "Searches": report["counts"]["searches"],
        "FeedbackEvents": report["counts"]["feedback"],
        "NewImages": report["counts"]["ingested"],
        "QualityDegraded": int(report["degraded"]["flag"]),
    }
    combined = report.get("overall")
    if combined and combined["searches"]:
        values |= {
            "CtrAt10": combined["ctr_at_10"],
            "Mrr": combined["mrr"],
            "ZeroResultRate": combined["zero_result_rate"],
            "LowScoreRate": combined["low_score_rate"],
            "SearchLatencyP50": combined["latency_p50_ms"],
            "SearchLatencyP99": combined["latency_p99_ms"],
        }
    names = {
        "images": ("ImageDrift", "ImageDriftStatistic", "ImageDriftThreshold"),
        "queries": ("QueryDrift", "QueryDriftStatistic", "QueryDriftThreshold"),
    }
    for name, (flag, statistic, threshold) in names.items():
        result = report["drift"][name]
        if result is not None:
            values |= {
                flag: int(result["drift"]),
                statistic: result["statistic"],
                threshold: result["threshold"],
            }
    return values
