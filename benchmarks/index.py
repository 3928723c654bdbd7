"""Index build and search: imgsearch's usearch engine against faiss HNSW, and snapshot.

Data: clustered synthetic 512-d unit vectors shaped like CLIP image embeddings (a shared
direction, lognormal cluster sizes, a decaying spectrum inside clusters), stored as float16 like
the snapshot. Queries come from the same clusters but are not in the index. Ground truth:
usearch exact (brute-force) search. For each size:

- usearch at ``Settings.from_env().index`` (dtype, connectivity, expansion_add/search) with
  ``IMGSEARCH_INDEX_ENGINE=usearch``, built with ``imgsearch.pipeline.build.build_index`` (the
  pipeline's own code), on ``--threads``. The engine imgsearch serves by default is faiss;
  ``benchmarks/peers.py`` compares the two as served;
- faiss HNSW (inner product on unit vectors) at the same M and search effort (``efSearch`` =
  ``expansion_search``), with the cheapest ``efConstruction`` of a ladder that matches
  usearch's recall@10: the build at matched recall. Two storages (``--faiss-storage``):
  ``IndexHNSWFlat`` (float32, faiss's usual HNSW) and ``IndexHNSWSQ`` fp16 (the same float16
  storage as usearch's default, so the same memory);
- build seconds, peak RSS growth while building, index bytes, recall@10, batch queries/s and
  single-query p50/p99 (one thread, as the query API runs).

Thread scaling: the first size is also built on one thread. The machine is shared, so the
growth of CPU seconds from 1 to 2 threads (not the wall-clock speed-up) extrapolates a 6-vCPU
Lambda (``six_vcpu_seconds``), and n log n extrapolates sizes not measured. Snapshot:
``scan_to_folder`` (the Snapshot step's code, through ``EmbeddingStore.scan_pages``) over a
replayed 1M-item table (a client answering Scan pages as DynamoDB does, ~1 MB each), so the
figure is our processing cost; DynamoDB's own read time is estimated from its published
throughput.

    python benchmarks/index.py --sizes 100000 1000000

Prints markdown tables and writes ``benchmarks/results/index.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from _common import environment, markdown_table, median, time_interleaved, write_results

import imgsearch  # noqa: F401  (loads onnxruntime before usearch: see imgsearch/__init__.py)
from imgsearch.core.config import Settings
from imgsearch.core.vectors import metric_for
from imgsearch.pipeline.build import build_index
from imgsearch.pipeline.snapshot import scan_to_folder
from imgsearch.store import EmbeddingStore, encode_vector

DIM = 512
K = 10
LAMBDA_VCPUS = 6
THREADS = 2
"""Build and batch-search threads; the thread scaling compares 1 with these 2."""
RECALL_TOLERANCE = 0.002


class PeakRss:
    """Peak resident memory growth of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self) -> PeakRss:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def clustered(n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n x DIM float16 data, queries x DIM float32 queries), unit vectors, shared clusters."""
    rng = np.random.default_rng(seed)
    clusters = max(10, n // 200)
    shared = rng.standard_normal(DIM)
    shared /= np.linalg.norm(shared)
    centres = rng.standard_normal((clusters, DIM)) / np.sqrt(DIM)
    centres = 0.6 * shared + 0.8 * centres / np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.lognormal(0.0, 1.0, clusters)
    weights /= weights.sum()
    # Inside a cluster, variance falls off like real embeddings' spectra (most in few directions).
    spectrum = 1.0 / np.sqrt(np.arange(1, DIM + 1))
    spectrum *= np.sqrt(DIM) / np.linalg.norm(spectrum)
    basis = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]

    def sample(count: int) -> np.ndarray:
        members = rng.choice(clusters, size=count, p=weights)
        noise = (rng.standard_normal((count, DIM)) * spectrum / np.sqrt(DIM)) @ basis.T
        points = centres[members] + 0.7 * noise
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    data = np.empty((n, DIM), dtype=np.float16)
    for begin in range(0, n, 50_000):
        end = min(n, begin + 50_000)
        data[begin:end] = sample(end - begin)
    return data, sample(queries).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def single_query_latency(
    search: Any, queries: np.ndarray, probes: int = 300
) -> tuple[float, float]:
    timings = []
    for query in queries[:probes]:
        started = time.perf_counter()
        search(query)
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 99))


def bench_usearch(
    data: np.ndarray, queries: np.ndarray, truth: np.ndarray, settings: Any, threads: int
) -> dict[str, Any]:
    ids = np.arange(len(data), dtype=np.int64)
    with PeakRss() as memory:
        started, cpu = time.perf_counter(), time.process_time()
        index = build_index(data, ids, settings, threads)
        build, cpu = time.perf_counter() - started, time.process_time() - cpu
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder) / "index.usearch")
        size = os.path.getsize(os.path.join(folder, "index.usearch"))
    started = time.perf_counter()
    found = index.search(queries, K, threads=threads).ids
    qps = len(queries) / (time.perf_counter() - started)
    p50, p99 = single_query_latency(lambda q: index.search(q, K, threads=1), queries)
    return {
        "engine": "usearch",
        "settings": f"{settings.dtype} {metric_for(settings.dtype)}, M={settings.connectivity}, "
        f"ef_add={settings.expansion_add}, ef_search={settings.expansion_search}",
        "build_seconds": build,
        "build_cpu_seconds": cpu,
        "build_rss_mb": memory.growth_mb,
        "index_mb": size / 2**20,
        "recall_at_10": recall(found, truth),
        "qps": qps,
        "p50_ms": p50,
        "p99_ms": p99,
    }


FAISS_STORAGE = {"f32": "faiss HNSWFlat", "f16": "faiss HNSWSQ fp16"}
"""faiss HNSW variants by the scalar type they store."""


def faiss_build(
    data: np.ndarray, connectivity: int, ef_construction: int, storage: str
) -> tuple[Any, dict]:
    import faiss

    with PeakRss() as memory:
        started, cpu = time.perf_counter(), time.process_time()
        if storage == "f16":
            index = faiss.IndexHNSWSQ(
                DIM, faiss.ScalarQuantizer.QT_fp16, connectivity, faiss.METRIC_INNER_PRODUCT
            )
        else:
            index = faiss.IndexHNSWFlat(DIM, connectivity, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        for begin in range(0, len(data), 65_536):
            index.add(np.ascontiguousarray(data[begin : begin + 65_536], dtype=np.float32))
        build, cpu = time.perf_counter() - started, time.process_time() - cpu
    return index, {
        "build_seconds": build,
        "build_cpu_seconds": cpu,
        "build_rss_mb": memory.growth_mb,
    }


def bench_faiss(
    data: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    settings: Any,
    threads: int,
    target_recall: float,
    storage: str,
) -> dict[str, Any]:
    """faiss HNSW storing ``storage`` (``FAISS_STORAGE``) at the same M and efSearch, with the
    cheapest efConstruction (of a ladder) whose recall@10 reaches ``target_recall``: the build
    at matched recall and search effort.

    Starts at usearch's ``expansion_add`` and walks down while recall holds, or up until it
    is reached (at most 256). "Reaches" allows ``RECALL_TOLERANCE``, about the sampling error
    of recall over 1,000 queries, in faiss's favour."""
    import faiss

    faiss.omp_set_num_threads(threads)
    ladder = sorted({32, 48, 64, 96, 128, 192, 256, settings.expansion_add})
    step = ladder.index(settings.expansion_add)
    tried: list[tuple[int, float]] = []
    best: tuple[Any, dict[str, Any], float] | None = None
    # Down after a match, up after a miss, until the next step was tried already.
    while 0 <= step < len(ladder) and ladder[step] not in dict(tried):
        ef_construction = ladder[step]
        index, build = faiss_build(data, settings.connectivity, ef_construction, storage)
        index.hnsw.efSearch = settings.expansion_search
        reached = recall(index.search(queries, K)[1], truth)
        tried.append((ef_construction, reached))
        print(
            f"  {FAISS_STORAGE[storage]} efConstruction={ef_construction}: recall {reached:.4f}, "
            f"{build['build_seconds']:.1f} s",
            flush=True,
        )
        if reached >= target_recall - RECALL_TOLERANCE:
            best = (index, {**build, "ef_construction": ef_construction}, reached)
            step -= 1
        else:
            step += 1
    if best is None:  # never matched: report the largest build tried
        best = (index, {**build, "ef_construction": ef_construction}, reached)
    index, build, matched = best
    size = len(faiss.serialize_index(index))
    started = time.perf_counter()
    index.search(queries, K)
    qps = len(queries) / (time.perf_counter() - started)
    faiss.omp_set_num_threads(1)
    p50, p99 = single_query_latency(lambda q: index.search(q.reshape(1, -1), K), queries)
    faiss.omp_set_num_threads(threads)
    return {
        "engine": FAISS_STORAGE[storage],
        "settings": f"{storage}, M={settings.connectivity}, "
        f"efConstruction={build['ef_construction']} (matched), "
        f"efSearch={settings.expansion_search}",
        "build_seconds": build["build_seconds"],
        "build_cpu_seconds": build["build_cpu_seconds"],
        "build_rss_mb": build["build_rss_mb"],
        "index_mb": size / 2**20,
        "recall_at_10": matched,
        "qps": qps,
        "p50_ms": p50,
        "p99_ms": p99,
        "ef_construction": build["ef_construction"],
        "ef_construction_tried": tried,
    }


def interleaved_builds(
    data: np.ndarray, settings: Any, threads: int, matched: dict[str, int], rounds: int
) -> dict[str, float]:
    """Median build seconds of usearch and of each faiss storage at its matched
    ``efConstruction``, the builds taking turns ``rounds`` times: on a shared machine, whose
    speed drifts over minutes, the ratio of these is steadier than that of one build each."""
    import faiss

    faiss.omp_set_num_threads(threads)
    ids = np.arange(len(data), dtype=np.int64)
    cases = {"usearch": functools.partial(build_index, data, ids, settings, threads)}
    for storage, ef_construction in matched.items():
        cases[FAISS_STORAGE[storage]] = functools.partial(
            faiss_build, data, settings.connectivity, ef_construction, storage
        )
    times = time_interleaved(cases, rounds, warmup=0)
    print(f"  interleaved build seconds: {times}", flush=True)
    return {name: median(seconds) for name, seconds in times.items()}


class ReplayDynamoDB:
    """A DynamoDB client whose ``scan`` answers from a generated table of ``count`` ok items:
    segments, ``Limit``, ``ExclusiveStartKey`` and DynamoDB's ~1 MB page cap honoured."""

    def __init__(self, count: int, model: str, page_items: int = 900) -> None:
        rng = np.random.default_rng(1)
        pool = rng.standard_normal((997, DIM)).astype(np.float32)
        self.vectors = [encode_vector(v / np.linalg.norm(v)) for v in pool]
        self.count, self.model, self.page_items = count, model, page_items

    def scan(self, **request: Any) -> dict[str, Any]:
        segment, total = request["Segment"], request["TotalSegments"]
        start = int(request.get("ExclusiveStartKey", {"i": {"N": str(segment)}})["i"]["N"])
        limit = min(request["Limit"], self.page_items)
        numbers = range(start, min(self.count, start + limit * total), total)
        items = [
            {
                "key": {"S": f"images/{i:08d}.jpg"},
                "model": {"S": self.model},
                "id": {"N": str(i)},
                "status": {"S": "ok"},
                "sequencer": {"S": "0000000000000000000000000000001"},
                "updated_at": {"S": "2025-01-01T00:00:00.000000Z"},
                "vector": {"B": self.vectors[i % len(self.vectors)]},
            }
            for i in numbers
        ]
        response: dict[str, Any] = {"Items": items, "Count": len(items)}
        following = start + len(items) * total
        if following < self.count:
            response["LastEvaluatedKey"] = {"i": {"N": str(following)}}
        return response


def bench_snapshot(count: int, segments: int) -> dict[str, Any]:
    store = EmbeddingStore("replayed", ReplayDynamoDB(count, "bench@1"))
    with tempfile.TemporaryDirectory() as folder, PeakRss() as memory:
        started = time.perf_counter()
        found, dim, _ = scan_to_folder(store, "bench@1", Path(folder), segments)
        seconds = time.perf_counter() - started
        size = sum(f.stat().st_size for f in Path(folder).iterdir())
    assert found == count and dim == DIM
    item_bytes = 1100  # a 512-d float16 vector plus key, ids and attributes
    read_units = count * item_bytes / 4096 * 0.5  # eventually consistent scan: 0.5 RCU per 4 KB
    return {
        "items": count,
        "segments": segments,
        "processing_seconds": seconds,
        "items_per_second": count / seconds,
        "rss_growth_mb": memory.growth_mb,
        "snapshot_mb": size / 2**20,
        "dynamodb_read_units": read_units,
        "dynamodb_seconds_at_12000_rcu": read_units / 12_000,
    }


def six_vcpu_seconds(cpu_seconds: float, cpu_1: float, cpu_2: float) -> float:
    """Wall seconds on 6 unshared vCPUs of a build that took ``cpu_seconds`` of CPU on 2 threads.

    The machine is shared, so wall-clock speed-ups mislead; CPU seconds do not (much). The
    threading overhead measured from 1 to 2 threads (``cpu_2 / cpu_1``) is assumed to repeat
    for every doubling up to 6 threads, and the work to spread evenly over them.
    """
    overhead = max(1.0, cpu_2 / cpu_1) ** math.log2(LAMBDA_VCPUS / 2)
    return cpu_seconds * overhead / LAMBDA_VCPUS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--snapshot-items", type=int, default=1_000_000)
    parser.add_argument(
        "--faiss-storage",
        nargs="*",
        default=list(FAISS_STORAGE),
        choices=list(FAISS_STORAGE),
        help="faiss HNSW variants to match (default: both; none to skip faiss)",
    )
    parser.add_argument(
        "--other-dtypes",
        nargs="*",
        default=["i8"],
        help="usearch scalar types also measured at the first size (default: i8)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved build rounds of usearch and each matched faiss at the first size, "
        "for the build-time ratio (0 to skip)",
    )
    args = parser.parse_args()
    args.threads = THREADS
    settings = dataclasses.replace(Settings.from_env().index, engine="usearch")
    rows: list[dict[str, Any]] = []
    scaling: dict[str, Any] = {}
    interleaved: dict[str, Any] = {}
    load_before = os.getloadavg()
    for n in args.sizes:
        print(f"generating {n} x {DIM} clustered vectors ...", flush=True)
        data, queries = clustered(n, args.queries, seed=n)
        from usearch.index import search as exact_search

        started = time.perf_counter()
        truth = exact_search(data, queries, K, "cos", exact=True, threads=args.threads).keys
        print(f"  ground truth in {time.perf_counter() - started:.1f} s", flush=True)
        result = bench_usearch(data, queries, truth, settings, args.threads)
        rows.append({"n": n, "threads": args.threads, **result})
        print(f"  usearch: {result}", flush=True)
        if not scaling:
            single = bench_usearch(data, queries, truth, settings, 1)
            rows.append({"n": n, "threads": 1, **single})
            scaling = {
                "n": n,
                "wall_seconds_1_thread": single["build_seconds"],
                "wall_seconds_2_threads": result["build_seconds"],
                "wall_speedup": single["build_seconds"] / result["build_seconds"],
                "cpu_seconds_1_thread": single["build_cpu_seconds"],
                "cpu_seconds_2_threads": result["build_cpu_seconds"],
                "cpu_overhead": result["build_cpu_seconds"] / single["build_cpu_seconds"],
            }
            print(f"  scaling: {scaling}", flush=True)
        if n == args.sizes[0]:
            for dtype in args.other_dtypes:
                other = bench_usearch(
                    data, queries, truth, dataclasses.replace(settings, dtype=dtype), args.threads
                )
                rows.append({"n": n, "threads": args.threads, **other})
                print(f"  usearch {dtype}: {other}", flush=True)
        matched: dict[str, int] = {}  # efConstruction by faiss storage
        for storage in args.faiss_storage:
            competitor = bench_faiss(
                data, queries, truth, settings, args.threads, result["recall_at_10"], storage
            )
            rows.append({"n": n, "threads": args.threads, **competitor})
            matched[storage] = competitor["ef_construction"]
            print(f"  {FAISS_STORAGE[storage]}: {competitor}", flush=True)
        if n == args.sizes[0] and matched and args.rounds > 0:
            medians = interleaved_builds(data, settings, args.threads, matched, args.rounds)
            interleaved = {
                "n": n,
                "rounds": args.rounds,
                "median_build_seconds": medians,
                "usearch_over": {
                    name: medians["usearch"] / seconds
                    for name, seconds in medians.items()
                    if name != "usearch"
                },
            }
        del data
    served = {  # usearch at the configured settings on THREADS, by size
        row["n"]: row
        for row in rows
        if row["engine"] == "usearch"
        and row["threads"] == THREADS
        and row["settings"] == rows[0]["settings"]
    }
    extrapolated = {}
    for row in served.values():
        measured = six_vcpu_seconds(
            row["build_cpu_seconds"],
            scaling["cpu_seconds_1_thread"],
            scaling["cpu_seconds_2_threads"],
        )
        extrapolated[str(row["n"])] = measured
        if row["n"] < 1_000_000 and str(1_000_000) not in extrapolated:
            # HNSW insertion costs ~log(n): scale the largest measured size by n log n.
            growth = (1_000_000 / row["n"]) * math.log(1_000_000) / math.log(row["n"])
            extrapolated["1000000 (from " + str(row["n"]) + ")"] = measured * growth
    build_ratios = {  # one build each; above 1: usearch took longer than faiss at matched recall
        f"{row['n']} {row['engine']}": served[row["n"]]["build_seconds"] / row["build_seconds"]
        for row in rows
        if row["engine"] in FAISS_STORAGE.values()
    }
    snapshot = bench_snapshot(args.snapshot_items, Settings.from_env().index.scan_segments)
    print(
        markdown_table(
            [
                "vectors",
                "engine",
                "settings",
                "threads",
                "build s",
                "build CPU s",
                "build RSS MB",
                "index MB",
                "recall@10",
                "queries/s",
                "p50 ms",
                "p99 ms",
            ],
            [
                [
                    f"{r['n']:,}",
                    r["engine"],
                    r["settings"],
                    r["threads"],
                    f"{r['build_seconds']:.1f}",
                    f"{r['build_cpu_seconds']:.1f}",
                    f"{r['build_rss_mb']:.0f}",
                    f"{r['index_mb']:.0f}",
                    f"{r['recall_at_10']:.4f}",
                    f"{r['qps']:.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                ]
                for r in rows
            ],
        )
    )
    print(
        f"\nbuild at {scaling['n']:,}, 1 -> 2 threads: wall x{scaling['wall_speedup']:.2f} "
        f"(shared machine), CPU seconds x{scaling['cpu_overhead']:.2f}; "
        f"extrapolated wall seconds on {LAMBDA_VCPUS} unshared vCPUs: "
        + ", ".join(f"{n} -> {s:.0f} s" for n, s in extrapolated.items())
    )
    if build_ratios:
        print(
            "usearch build seconds / faiss build seconds at matched recall, one build each: "
            + ", ".join(f"{name} x{ratio:.2f}" for name, ratio in build_ratios.items())
        )
    if interleaved:
        print(
            f"the same at {interleaved['n']:,}, medians of {interleaved['rounds']} interleaved "
            "rounds: "
            + ", ".join(f"{name} x{r:.2f}" for name, r in interleaved["usearch_over"].items())
        )
    print(
        f"snapshot of {snapshot['items']:,} items ({snapshot['segments']} segments): "
        f"{snapshot['processing_seconds']:.1f} s processing "
        f"({snapshot['items_per_second']:,.0f}/s), "
        f"RSS +{snapshot['rss_growth_mb']:.0f} MB, {snapshot['snapshot_mb']:.0f} MB of files; "
        f"DynamoDB read estimate {snapshot['dynamodb_seconds_at_12000_rcu']:.0f} s at 12,000 RCU/s"
    )
    path = write_results(
        "index",
        {
            "environment": {
                **environment("usearch", "faiss-cpu", "numpy"),
                "load_average_before": [round(x, 2) for x in load_before],
            },
            "settings": dataclasses.asdict(settings),
            "rows": rows,
            "thread_scaling": scaling,
            "extrapolated_build_seconds_6_threads": extrapolated,
            "build_seconds_usearch_over_faiss": build_ratios,
            "interleaved_builds": interleaved,
            "snapshot": snapshot,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
