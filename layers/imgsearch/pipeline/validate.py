"""Validate: measure a built version, write every figure to its ``report.json``, apply the gates.

Four checks, thresholds from ``settings.gate``:

1. ANN quality - recall@10 of the index against exact search over the snapshot's vectors, on
   ``sample_queries`` stored vectors with noise added, plus the golden set's text queries when
   there is one, at each ``expansion_search`` of the ladder (``expansion_ladder``) until one
   clears ``min_recall + tune_margin``: that one serves (the largest when none does), and the
   other checks run at it. Gate: its recall ``>= min_recall``.
2. Completeness - every snapshot id is in the index and resolves to its key; counts match.
3. Retrieval quality - with a golden set (``golden_key`` in the bucket, JSON lines
   ``{"query": "red circle", "relevant": ["images/a.png", ...]}``): precision@10, recall@10,
   nDCG@10 and MRR of the exact top 10 (``exact_rankings``: the embeddings' quality; what the
   index loses against it is the ANN figure, whose queries include the golden ones). Gate: none
   falls more than ``quality_margin`` below the serving index's figures on the same golden set
   (same sha256).
4. Latency - single-query search on the probe queries, one thread: p50/p99. Gate: p99
   ``<= max_p99_ms``.

Everything but the build is a function of the snapshot's content: the probes are drawn with a
seed from its content hash, in id order, and exact ties rank by id, so two snapshots of the same
embedding set get the same probes and the same quality figures (docs/pipeline.md, "What is
deterministic").

The step never raises for a failed gate: it returns ``passed: false`` and the state machine's
Gate state rejects the version::

    outcome = validate_version(settings, s3, manifest, build)
    outcome.passed, outcome.summary, outcome.headline["recall_at_10"]
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from usearch.index import BatchMatches
from usearch.index import search as exact_search

from imgsearch.ann import AnnIndex, open_index
from imgsearch.catalog.contract import Figure
from imgsearch.catalog.keytable import KeyTable
from imgsearch.catalog.layout import KEYS_FILE, index_file
from imgsearch.catalog.registry import bundle_uri, read_record
from imgsearch.catalog.report import (
    AnnFigures,
    BuildResult,
    Completeness,
    Gate,
    IndexReport,
    Latency,
    Quality,
    SnapshotManifest,
    read_report,
    write_report,
)
from imgsearch.core.clock import now_iso
from imgsearch.core.config import GateSettings, IndexSettings, Settings
from imgsearch.core.keys import image_id
from imgsearch.core.vectors import l2_normalise
from imgsearch.eval.golden import GoldenSet, load_golden
from imgsearch.eval.metrics import score_rankings
from imgsearch.model.bundle import bundle_model_id
from imgsearch.pipeline.contracts import ValidationOutcome
from imgsearch.pipeline.snapshot import LocalSnapshot

logger = logging.getLogger(__name__)

K = 10
QUERY_NOISE = 0.25
"""Norm of the random offset added to a stored (unit) vector to make a probe query."""
TIE_TOLERANCE = 1e-3
"""Similarity within which an ANN neighbour ties the exact K-th (ann-benchmarks' epsilon)."""
QUALITY_METRICS = (f"precision_at_{K}", f"recall_at_{K}", f"ndcg_at_{K}", "mrr")
HEADLINE_NAMES = {f"recall_at_{K}": f"golden_recall_at_{K}"}
EXACT_BATCH = 65_536
"""Snapshot rows per step of ``exact_rankings``: bounds its float32 copy (128 MB at 512-d)."""
SCREEN_SLACK = 1e-3
"""How far below the float32 ``k``-th a candidate may score (float32 errors are ~1e-6)."""


class TextEncoder(Protocol):
    model_id: str

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...


def content_rng(manifest: SnapshotManifest) -> np.random.Generator:
    """The random source of a validation: seeded by the snapshot's content hash, so the same
    embedding set gets the same probes whatever its version or snapshot id."""
    seed = hashlib.blake2b(manifest.content_hash.encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(seed, "big"))


def noisy_queries(
    vectors: np.ndarray, ids: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` stored vectors (without replacement when possible), each moved a little.

    Drawn by rank of id, not by row: a parallel scan writes the rows in any order.
    """
    by_id = np.argsort(ids, kind="stable")
    ranks = np.sort(rng.choice(len(vectors), size=count, replace=count > len(vectors)))
    base = np.asarray(vectors[by_id[ranks]], dtype=np.float32)
    base /= np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise *= QUERY_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    queries = base + noise
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def exact_rankings(
    vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int = K
) -> np.ndarray:
    """The ids of each query's exact top ``k`` by cosine similarity, ties ranked by id.

    The same for the same embedding set whatever the order of its rows (usearch's exact search
    ranks ties by row). A float32 pass finds the candidates (everything within ``SCREEN_SLACK``
    of the ``k``-th); they are scored again in float64 and compared in float32, so that two
    identical vectors tie however their sums were computed.
    """
    unit = l2_normalise(queries).astype(np.float64)
    unit32 = unit.astype(np.float32)
    best_ids = [np.empty(0, dtype=np.int64) for _ in queries]
    best = [np.empty(0, dtype=np.float32) for _ in queries]
    for begin in range(0, len(ids), EXACT_BATCH):
        rows = np.asarray(vectors[begin : begin + EXACT_BATCH], dtype=np.float32)
        norms = np.maximum(np.sqrt(np.einsum("ij,ij->i", rows, rows)), 1e-12)
        screen = (unit32 @ rows.T) / norms
        kth = np.partition(screen, -min(k, len(rows)), axis=1)[:, -min(k, len(rows))]
        for q, (row_scores, floor) in enumerate(zip(screen, kth, strict=True)):
            found = np.flatnonzero(row_scores >= floor - SCREEN_SLACK)
            picked = rows[found].astype(np.float64)
            norm = np.maximum(np.linalg.norm(picked, axis=1), 1e-12)
            exact = (picked @ unit[q] / norm).astype(np.float32)
            scores = np.concatenate([best[q], exact])
            candidates = np.concatenate([best_ids[q], ids[begin + found]])
            top = np.lexsort((candidates, -scores))[:k]
            best[q], best_ids[q] = scores[top], candidates[top]
    return np.stack(best_ids)


def exact_neighbours(
    vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, threads: int
) -> BatchMatches:
    """The exact top-``K`` of each query over ``vectors`` (brute force): recall's ground truth."""
    return exact_search(vectors, queries, min(K, len(ids)), "cos", exact=True, threads=threads)


def ann_recall(
    index: AnnIndex,
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    threads: int,
    exact: BatchMatches | None = None,
) -> float:
    """Mean share of the exact top-``K`` (brute force over ``vectors``, unless given as
    ``exact``) that the index returns at its ``expansion_search``.

    A returned neighbour as similar as the exact ``K``-th, within ``TIE_TOLERANCE``, counts as
    found (as in ann-benchmarks): duplicates and near-ties, common among photos, would
    otherwise read as misses whenever the two searches order them differently.
    """
    k = min(K, len(ids))
    approx = index.search(queries, k, threads=threads)
    if exact is None:
        exact = exact_neighbours(vectors, ids, queries, threads)
    order = np.argsort(ids)
    hits = 0
    for row, query in enumerate(queries):
        found, _ = approx.row(row)
        rows = order[np.searchsorted(ids, found, sorter=order)]
        similarity = l2_normalise(vectors[rows]) @ query
        kth = 1.0 - float(exact.distances[row][exact.counts[row] - 1])
        hits += min(k, int(np.count_nonzero(similarity >= kth - TIE_TOLERANCE)))
    return hits / (k * len(queries))


def expansion_ladder(settings: IndexSettings) -> list[int]:
    """``min_expansion_search``, doubling, up to ``expansion_search`` (always the last step)."""
    steps, step = [], settings.min_expansion_search
    while step < settings.expansion_search:
        steps.append(step)
        step *= 2
    return [*steps, settings.expansion_search]


def tune_expansion_search(
    index: AnnIndex,
    vectors: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    ladder: Sequence[int],
    floor: float,
    threads: int,
) -> tuple[int, dict[int, float]]:
    """The first ``expansion_search`` of ``ladder`` at which recall@10 reaches ``floor`` (the
    last one when none does), and the recall at each step tried. Leaves the index set to it::

        chosen, recalls = tune_expansion_search(index, vectors, ids, queries, [64, 128], 0.97, 2)
    """
    exact = exact_neighbours(vectors, ids, queries, threads)
    recalls: dict[int, float] = {}
    for step in ladder:
        index.expansion_search = step
        recalls[step] = ann_recall(index, vectors, ids, queries, threads, exact)
        if recalls[step] >= floor:
            break
    return step, recalls


def check_completeness(
    index: AnnIndex, table: KeyTable, ids: np.ndarray, keys: Sequence[str]
) -> Completeness:
    """Every snapshot id in the index and in the key table, resolving to the snapshot's key."""
    in_index = index.contains(ids)
    wrong_keys = [
        key for image_id, key in zip(ids.tolist(), keys, strict=True) if table.key(image_id) != key
    ]
    missing = int((~in_index).sum())
    return Completeness(
        snapshot_count=len(ids),
        index_count=len(index),
        key_table_count=len(table),
        missing_from_index=missing,
        wrong_or_missing_keys=len(wrong_keys),
        complete=missing == 0 and not wrong_keys and len(index) == len(table) == len(ids),
        example_wrong_key=wrong_keys[0] if wrong_keys else None,
    )


def measure_latency(index: AnnIndex, queries: np.ndarray, k: int = K) -> Latency:
    """Single-query, single-thread search times, as the query API runs them."""
    for query in queries[: min(5, len(queries))]:
        index.search(query, k, threads=1)  # warm caches before timing
    timings = []
    for query in queries:
        started = time.perf_counter()
        index.search(query, k, threads=1)
        timings.append((time.perf_counter() - started) * 1000)
    return Latency(
        probes=len(timings),
        p50_ms=round(float(np.percentile(timings, 50)), 4),
        p99_ms=round(float(np.percentile(timings, 99)), 4),
        max_ms=round(float(np.max(timings)), 4),
    )


def retrieval_quality(
    snapshot: LocalSnapshot,
    table: KeyTable,
    text_vectors: np.ndarray,
    golden: GoldenSet,
    baseline_version: str = "",
) -> Quality:
    """The golden set's figures on the exact top ``K`` (``exact_rankings``) of the snapshot."""
    found = exact_rankings(snapshot.vectors, snapshot.ids, text_vectors)
    rankings = [table.lookup(row) for row in found]
    scores = score_rankings(rankings, golden.relevant, k=K).as_dict()
    known = set()
    for relevant in golden.relevant:
        known |= {k for k in relevant if table.key(image_id(k)) == k}
    total = len(set().union(*golden.relevant))
    return Quality(
        **{name: round(float(value), 6) for name, value in scores.items()},
        golden_key=golden.key,
        golden_sha256=golden.sha256,
        relevant_keys=total,
        relevant_keys_not_indexed=total - len(known),
        baseline_version=baseline_version,
    )


def quality_gates(
    quality: Quality, baseline: Quality | None, gate: GateSettings, challenger: bool = False
) -> list[Gate]:
    """Each metric against the serving index's on the same golden set, less the margin; a
    ``challenger`` (another model than the serving one) must also beat its nDCG@10 by
    ``promotion_margin`` when that is set."""
    if baseline is None or baseline.golden_sha256 != quality.golden_sha256:
        return [
            Gate(
                name="retrieval_quality",
                passed=True,
                value=None,
                op=">=",
                threshold=None,
                detail="no serving figures on this golden set to compare with",
            )
        ]
    gates = []
    for name in QUALITY_METRICS:
        value, served = getattr(quality, name), getattr(baseline, name)
        floor = round(served - gate.quality_margin, 6)
        gates.append(
            Gate(
                name=name,
                passed=value >= floor,
                value=value,
                op=">=",
                threshold=floor,
                detail=f"serving {served:.4f} - margin {gate.quality_margin}",
            )
        )
    if challenger and gate.promotion_margin > 0:
        target = round(baseline.ndcg_at_10 * (1 + gate.promotion_margin), 6)
        gates.append(
            Gate(
                name="promotion",
                passed=quality.ndcg_at_10 >= target,
                value=quality.ndcg_at_10,
                op=">=",
                threshold=target,
                detail=f"the serving model's nDCG@10 {baseline.ndcg_at_10:.4f} "
                f"+ {gate.promotion_margin:.0%}",
            )
        )
    return gates


def serving_report(settings: Settings, s3: Any, manifest: SnapshotManifest) -> IndexReport | None:
    """The report of the version serving when the snapshot was taken (the baseline)."""
    if not manifest.serving_version:
        return None
    return read_report(s3, settings.bucket, settings.index.prefix, manifest.serving_version)


def default_text_encoder(settings: Settings, s3: Any, model_id: str) -> TextEncoder:
    """The text tower of ``model_id``: the configured bundle's, else a registered model's (a
    rollout's candidate). Neither: the configured one, and the query_model gate fails."""
    from imgsearch.model import ClipModel

    uri = settings.model.uri
    if (
        bundle_model_id(uri, s3, settings.model.cache_dir) != model_id
        and read_record(s3, settings.bucket, model_id) is not None
    ):
        uri = bundle_uri(settings.bucket, model_id)
    return ClipModel.load(
        uri,
        threads=settings.model.threads,
        cache_dir=settings.model.cache_dir,
        s3_client=s3,
    )


def validate_version(
    settings: Settings,
    s3: Any,
    manifest: SnapshotManifest,
    build: BuildResult,
    text_encoder: Callable[[Settings, Any, str], TextEncoder] = default_text_encoder,
    workdir: str | None = None,
) -> ValidationOutcome:
    """Measure ``build.version``, write its ``report.json``, return whether every gate passed."""
    gate = settings.gate
    threads = settings.model.threads
    golden = load_golden(s3, settings.bucket, gate.golden_key)
    rng = content_rng(manifest)
    gates: list[Gate] = []
    quality: Quality | None = None
    with tempfile.TemporaryDirectory(dir=workdir) as name:
        folder = Path(name)
        local = LocalSnapshot.download(s3, settings.bucket, manifest, folder)
        index_name = index_file(build.engine)
        for key, file in ((build.index_key, index_name), (build.keys_key, KEYS_FILE)):
            s3.download_file(settings.bucket, key, str(folder / ("built-" + file)))
        index = open_index(build.engine, folder / ("built-" + index_name), view=True)
        table = KeyTable.open(folder / ("built-" + KEYS_FILE))

        probes = noisy_queries(local.vectors, local.ids, gate.sample_queries, rng)
        text_vectors = None
        if golden is not None:
            encoder = text_encoder(settings, s3, manifest.model)
            if encoder.model_id != manifest.model:
                gates.append(
                    Gate(
                        name="query_model",
                        passed=False,
                        value=encoder.model_id,
                        op="==",
                        threshold=manifest.model,
                        detail="no bundle of the index's model: queries would use another one",
                    )
                )
            else:
                text_vectors = encoder.encode_text(golden.queries).astype(np.float32)
        queries = probes if text_vectors is None else np.vstack([probes, text_vectors])

        expansion_search, recalls = tune_expansion_search(
            index,
            local.vectors,
            local.ids,
            queries,
            expansion_ladder(settings.index),
            gate.tune_floor,
            threads,
        )
        recall = round(recalls[expansion_search], 6)
        ann = AnnFigures(
            recall_at_10=recall,
            expansion_search=expansion_search,
            recall_at_10_by_expansion_search={
                str(step): round(value, 6) for step, value in recalls.items()
            },
            tune_floor=round(gate.tune_floor, 6),
            queries=len(queries),
            noisy_vector_queries=len(probes),
            text_queries=0 if text_vectors is None else len(text_vectors),
            query_noise=QUERY_NOISE,
            ground_truth="usearch exact search over the snapshot's float16 vectors",
        )
        gates.append(
            Gate(
                name=f"ann_recall_at_{K}",
                passed=recalls[expansion_search] >= gate.min_recall,
                value=recall,
                op=">=",
                threshold=gate.min_recall,
            )
        )

        completeness = check_completeness(index, table, local.ids, local.keys())
        gates.append(
            Gate(
                name="completeness",
                passed=completeness.complete,
                value=completeness.missing_from_index + completeness.wrong_or_missing_keys,
                op="==",
                threshold=0,
                detail="ids missing from the index + ids whose key is wrong or missing",
            )
        )

        if golden is not None and text_vectors is not None:
            quality = retrieval_quality(
                local, table, text_vectors, golden, manifest.serving_version
            )
            baseline = serving_report(settings, s3, manifest)
            challenger = baseline is not None and baseline.model != manifest.model
            gates.extend(
                quality_gates(quality, baseline and baseline.quality, gate, challenger=challenger)
            )

        latency = measure_latency(index, probes)
        gates.append(
            Gate(
                name="p99_ms",
                passed=latency.p99_ms <= gate.max_p99_ms,
                value=latency.p99_ms,
                op="<=",
                threshold=gate.max_p99_ms,
            )
        )

    failed = [g.name for g in gates if not g.passed]
    headline: dict[str, Figure] = {
        f"recall_at_{K}": ann.recall_at_10,
        "expansion_search": ann.expansion_search,
        "p50_ms": latency.p50_ms,
        "p99_ms": latency.p99_ms,
    }
    if quality is not None:
        # recall_at_10 is the ANN figure; the golden set's recall gets its own name.
        headline.update(
            {HEADLINE_NAMES.get(name, name): getattr(quality, name) for name in QUALITY_METRICS}
        )
    summary = (
        f"version {build.version}: every gate passed"
        if not failed
        else f"version {build.version} rejected: "
        + "; ".join(
            f"{g.name} = {g.value} (needs {g.op} {g.threshold})" for g in gates if not g.passed
        )
    )
    report = IndexReport(
        version=build.version,
        model=manifest.model,
        snapshot=manifest,
        build=build,
        gate_settings=asdict(gate),
        ann=ann,
        completeness=completeness,
        quality=quality,
        latency=latency,
        gates=gates,
        passed=not failed,
        summary=summary,
        headline=headline,
        validated_at=now_iso(),
    )
    report_key = write_report(s3, settings.bucket, settings.index.prefix, report)
    logger.info(summary)
    return ValidationOutcome(
        version=build.version,
        passed=not failed,
        summary=summary,
        report_key=report_key,
        headline=headline,
        failed_gates=failed,
    )
