"""Incremental against full index builds: what a 1 % change costs each way, at the same recall.

For each size, clustered synthetic 512-d vectors (``benchmarks/index.py``'s generator) are
built into the serving index with the pipeline's ``build_index`` and saved. Then 1 % of the
collection changes (``--change``: half of it new images, a quarter deleted, a quarter embedded
again) and the next version is built both ways, from the same snapshot:

- incremental: the serving index file opened into memory (``imgsearch.ann.open_index``) and
  changed by ``imgsearch.pipeline.incremental.apply_changes`` (the Build step's own code), then
  saved;
- full: ``build_index`` over the whole changed snapshot, then saved.

The engine is the configured one (``IMGSEARCH_INDEX_ENGINE``, faiss by default). Both are timed
on 2 threads (restore and save included), and both are searched with the same
1,000 held-out queries at ``IMGSEARCH_INDEX_EXPANSION_SEARCH`` (512, the most Validate gives a
version) against exact ground truth (recall@10). The target: at 1M, ≥ 20x faster at the same
recall@10 (±0.005)::

    python benchmarks/incremental.py --sizes 100000 1000000

Prints a markdown table and writes ``benchmarks/results/incremental.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import environment, markdown_table, write_results
from index import K, clustered, recall

import imgsearch  # noqa: F401  (loads onnxruntime before usearch: see imgsearch/__init__.py)
from imgsearch.ann import open_index
from imgsearch.core.config import Settings
from imgsearch.pipeline.build import build_index
from imgsearch.pipeline.incremental import apply_changes

THREADS = 2


def changed_snapshot(
    data: np.ndarray, ids: np.ndarray, share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The next snapshot: ``share`` of ``len(data)`` changed, half new, a quarter deleted, a
    quarter re-embedded (another vector drawn from the collection)."""
    n = len(data)
    count = max(4, int(n * share))
    new, deleted, again = count // 2, count // 4, count - count // 2 - count // 4
    order = rng.permutation(n)
    removed, replaced = order[:deleted], order[deleted : deleted + again]
    keep = np.setdiff1d(np.arange(n), removed)
    vectors = np.array(data[keep], dtype=np.float16)
    kept_ids = ids[keep]
    positions = np.searchsorted(keep, replaced)
    vectors[positions] = data[rng.integers(0, n, again)]
    extra = np.array(data[rng.integers(0, n, new)], dtype=np.float16)
    extra += rng.standard_normal(extra.shape).astype(np.float16) * np.float16(0.02)
    fresh_ids = ids.max() + 1 + np.arange(new, dtype=np.int64)
    counts = {"added": new, "removed": deleted, "changed": again}
    return np.concatenate([vectors, extra]), np.concatenate([kept_ids, fresh_ids]), counts


def searched(index: Any, queries: np.ndarray, truth: np.ndarray, effort: int) -> float:
    index.expansion_search = effort
    found = index.search(queries, K, threads=THREADS).ids
    return recall(found, truth)


def measure(n: int, share: float, queries_count: int) -> dict[str, Any]:
    from usearch.index import search as exact_search

    settings = Settings.from_env().index
    rng = np.random.default_rng(n)
    data, queries = clustered(n, queries_count, seed=n)
    ids = np.arange(1, n + 1, dtype=np.int64) * 7919
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        print(f"n={n}: building the serving index", flush=True)
        serving = build_index(data, ids, settings, THREADS)
        serving.save(folder / "serving.index")
        del serving
        vectors, next_ids, counts = changed_snapshot(data, ids, share, rng)
        truth_rows = exact_search(vectors, queries, K, "cos", exact=True, threads=THREADS).keys
        truth = next_ids[truth_rows]

        print(f"n={n}: incremental", flush=True)
        started = time.perf_counter()
        base = open_index(settings.engine, folder / "serving.index")
        change = apply_changes(base, vectors, next_ids, THREADS)
        base.save(folder / "incremental.index")
        incremental_seconds = time.perf_counter() - started
        assert change is not None and len(base) == len(next_ids)

        print(f"n={n}: full", flush=True)
        started = time.perf_counter()
        full = build_index(vectors, next_ids, settings, THREADS)
        full.save(folder / "full.index")
        full_seconds = time.perf_counter() - started

        effort = settings.expansion_search
        result = {
            "n": n,
            "engine": settings.engine,
            "change_share": share,
            "expected": counts,
            "applied": {
                "added": change.added,
                "removed": change.removed,
                "changed": change.changed,
            },
            "incremental_seconds": incremental_seconds,
            "full_seconds": full_seconds,
            "speedup": full_seconds / incremental_seconds,
            "expansion_search": effort,
            "incremental_recall_at_10": searched(base, queries, truth, effort),
            "full_recall_at_10": searched(full, queries, truth, effort),
            "incremental_bytes": (folder / "incremental.index").stat().st_size,
            "full_bytes": (folder / "full.index").stat().st_size,
        }
    print(f"  {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--change", type=float, default=0.01, help="share changed (0.01: 1 %%)")
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    results = [measure(n, args.change, args.queries) for n in args.sizes]
    rows = [
        [
            f"{r['n']:,}",
            f"{r['change_share']:.0%} ({r['applied']['added']} new, {r['applied']['removed']} "
            f"deleted, {r['applied']['changed']} re-embedded)",
            f"{r['full_seconds']:.1f}",
            f"{r['incremental_seconds']:.1f}",
            f"{r['speedup']:.1f}x",
            f"{r['full_recall_at_10']:.3f}",
            f"{r['incremental_recall_at_10']:.3f}",
        ]
        for r in results
    ]
    headers = [
        "vectors",
        "change",
        "full s",
        "incremental s",
        "speed-up",
        "recall full",
        "recall incr.",
    ]
    print(markdown_table(headers, rows))
    info = environment("faiss-cpu", "usearch", "numpy")
    print(f"CPU: {info['cpu']} ({info['cpu_count']} cores), {THREADS} threads")
    print(f"wrote {write_results('incremental', {'environment': info, 'results': results})}")


if __name__ == "__main__":
    main()
