"""The fresh segment: upload to searchable with no pipeline run, and what it adds to a query.

- **upload → searchable**, on the local stack (moto server, the real handlers, the template's
  SQS batching window): an index of ``--sizes`` synthetic vectors is published for the demo
  model (as Publish does, ``scanned_from`` now), then real photographs (``skimage.data``, each a
  different crop, JPEG) are uploaded one at a time into the image bucket; the time from
  ``PutObject`` until an image search with the same bytes returns the new key first, polled
  every 50 ms through the HTTP API. The serving version is checked to be unchanged at the end:
  no index build ran.
- **text query cost**, in this process: the query engine's search (after the text embedding,
  which does not depend on the fresh set) over an index of ``--index`` 512-d clustered vectors
  (``benchmarks/index.py``'s generator) with an empty fresh set, against the same with each of
  ``--fresh`` vectors read from the ``fresh`` GSI (moto), interleaved query by query.
- **scan kernels**: the exact scan alone at the largest ``--fresh``, float32 as served against
  numkong's f16 and i8 kernels (what half- and quarter-width rows would cost), interleaved.

    python benchmarks/fresh.py --sizes 100000 1000000 --uploads 40
    python benchmarks/fresh.py --fresh 10000 --scan-only   # -> fresh-scan.json

Prints a markdown table and writes ``benchmarks/results/fresh.json``.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import environment, markdown_table, percentile, time_interleaved, write_results

import imgsearch.query.fresh  # noqa: F401  # onnxruntime before usearch

ROOT = Path(__file__).resolve().parents[1]
# The local stack imports handlers as the image does (``retrain.app``): functions/ must win over
# this folder, which holds a benchmark called retrain.py.
sys.path.insert(0, str(ROOT / "functions"))
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "hubble_deep_field")
TARGETS = {"upload_to_searchable_p95_s": 5.0, "text_p50_added_ms": 1.0}


def photos(count: int, seed: int = 0) -> list[bytes]:
    """``count`` distinct JPEGs: random crops of skimage's photographs."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [getattr(data, name)() for name in PHOTOS]
    out = []
    for n in range(count):
        pixels = sources[n % len(sources)]
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        height, width = pixels.shape[:2]
        size = int(min(height, width) * rng.uniform(0.5, 0.9))
        top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
        crop = Image.fromarray(pixels[top : top + size, left : left + size, :3])
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def publish_synthetic(target: Any, s3: Any, model_id: str, dim: int, n: int) -> str:
    """An index of ``n`` random unit vectors, published as Publish does; its version."""
    from imgsearch.catalog.current import CurrentIndex, read_current, write_current
    from imgsearch.catalog.keytable import KeyTable
    from imgsearch.catalog.layout import KEYS_FILE, index_file, new_version, version_key
    from imgsearch.core.clock import now_iso
    from imgsearch.core.config import Settings
    from imgsearch.core.keys import image_id
    from imgsearch.pipeline.build import build_index

    settings = Settings.from_env({}).index
    rng = np.random.default_rng(n)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [f"{target.image_prefix}synthetic/{i:07d}.jpg" for i in range(n)]
    ids = np.array([image_id(k) for k in keys], dtype=np.int64)
    began = time.perf_counter()
    index = build_index(vectors.astype(np.float16), ids, settings, threads=2)
    print(f"  built {n} x {dim} in {time.perf_counter() - began:.0f} s", flush=True)
    version = new_version()
    index_name = index_file(settings.engine)
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder) / index_name)
        KeyTable.write(Path(folder) / KEYS_FILE, ids, keys)
        for name in (index_name, KEYS_FILE):
            key = version_key(settings.prefix, version, name)
            s3.upload_file(str(Path(folder) / name), target.bucket, key)
    previous = read_current(s3, target.bucket, settings.prefix)
    stamp = now_iso()
    current = CurrentIndex(
        version=version,
        model=model_id,
        count=n,
        built_at=stamp,
        scanned_from=stamp,
        published_at=stamp,
        dim=dim,
        engine=settings.engine,
        dtype=settings.dtype,
    )
    write_current(s3, target.bucket, current, previous.etag if previous else None)
    return version


def upload_to_searchable(sizes: list[int], uploads: int) -> list[dict[str, Any]]:
    """One local stack for every size (a second stack in one process would log through the
    first one's closed function logs): each size publishes its own index, then uploads."""
    import boto3
    from imgsearch_devkit.local.stack import LocalStack, LocalStackConfig

    results = []
    with tempfile.TemporaryDirectory() as folder:
        stack = LocalStack(LocalStackConfig.in_folder(Path(folder)))
        stack.start()
        try:
            target = stack.require_target()
            s3 = boto3.client(
                "s3",
                endpoint_url=target.aws_endpoint,
                region_name=target.region,
                aws_access_key_id="any",
                aws_secret_access_key="any",
            )
            api = target.api()
            for n in sizes:
                results.append(uploads_after_publishing(target, s3, api, n, uploads))
        finally:
            stack.stop()
    return results


def uploads_after_publishing(target: Any, s3: Any, api: Any, n: int, uploads: int) -> dict:
    """Publish an index of ``n``, then time ``uploads`` uploads until each is searchable."""
    model = api.version()
    version = publish_synthetic(target, s3, model.model, model.embedding_dim, n)
    api.wait_for_version(version, timeout=600)
    bucket = target.image_bucket or target.bucket
    seconds: list[float] = []
    for number, data in enumerate(photos(uploads, seed=n)):
        key = f"{target.image_prefix}uploads/{n}-{number:03d}.jpg"
        began = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg")
        while True:
            page = api.search_image(data, "upload.jpg", k=3)
            if page.results and page.results[0].key == key:
                break
            if time.perf_counter() - began > 60:
                raise SystemExit(f"{key} was not searchable within 60 s")
            time.sleep(0.05)
        seconds.append(time.perf_counter() - began)
        print(f"  {n}: upload {number} searchable in {seconds[-1]:.2f} s", flush=True)
    served = api.version()
    if served.index_version != version:
        raise SystemExit(f"an index build ran: {served.index_version} serves")
    return {
        "indexed": n,
        "uploads": uploads,
        "p50_s": round(percentile(seconds, 50), 3),
        "p95_s": round(percentile(seconds, 95), 3),
        "max_s": round(max(seconds), 3),
        "seconds": [round(s, 3) for s in seconds],
    }


def text_query_cost(index_size: int, fresh_size: int, queries: int) -> dict[str, Any]:
    """The engine's search with no fresh vectors against ``fresh_size`` of them."""
    import dataclasses

    import boto3
    from index import DIM, clustered
    from moto import mock_aws

    from imgsearch.catalog.current import CurrentIndex
    from imgsearch.catalog.keytable import KeyTable
    from imgsearch.core.config import Settings
    from imgsearch.core.keys import image_id
    from imgsearch.model import ClipModel, ImageLimits
    from imgsearch.pipeline.build import build_index
    from imgsearch.query.cursor import fingerprint
    from imgsearch.query.deletions import DeletedKeys
    from imgsearch.query.engine import SearchEngine
    from imgsearch.query.fresh import FreshVectors
    from imgsearch.query.serving import Served
    from imgsearch.store import EmbeddingRecord, EmbeddingStore, pad_sequencer, table_definition

    settings = Settings.from_env({})
    data, probes = clustered(index_size + fresh_size, queries, seed=3)
    ids = np.array([image_id(f"images/{i:07d}.jpg") for i in range(len(data))], dtype=np.int64)
    began = time.perf_counter()
    index = build_index(data[:index_size], ids[:index_size], settings.index, threads=2)
    index.expansion_search = settings.index.expansion_search
    print(f"  built {index_size} x {DIM} in {time.perf_counter() - began:.0f} s", flush=True)
    model = ClipModel.load(ROOT / "models" / "demo-clip", threads=1)
    with mock_aws(), tempfile.TemporaryDirectory() as folder:
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**table_definition("fresh-bench"))
        store = EmbeddingStore("fresh-bench", client)
        since = "2026-01-01T00:00:00.000000Z"
        for row in range(index_size, len(data)):
            store.put(
                EmbeddingRecord(
                    key=f"images/{row:07d}.jpg",
                    model="bench@1",
                    id=int(ids[row]),
                    status="ok",
                    sequencer=pad_sequencer("01"),
                    updated_at=f"2026-01-01T01:00:00.{row:06d}Z",
                    vector=data[row].astype(np.float32),
                )
            )

        def fresh(limit: int) -> FreshVectors:
            segment = FreshVectors(store, "bench@1", since, DIM, 3600.0, limit)
            segment.refresh()
            return segment

        names = [f"images/{i:07d}.jpg" for i in range(index_size)]
        KeyTable.write(Path(folder) / "keys.bin", ids[:index_size], names)
        current = CurrentIndex(
            version="v",
            model="bench@1",
            count=index_size,
            built_at=since,
            engine=settings.index.engine,
        )
        without = Served(
            current,
            index,
            KeyTable.open(Path(folder) / "keys.bin"),
            DeletedKeys(store, "bench@1", since, 3600.0),
            fresh(0),
            Path(folder),
            model,
        )
        began = time.perf_counter()
        held = fresh(fresh_size)
        load_seconds = time.perf_counter() - began
        with_fresh = dataclasses.replace(without, fresh=held)
        engine = SearchEngine(model, store, ImageLimits(1, 1, 1.0))
        cursor = iter(range(10**9))

        def run(served: Served) -> None:
            probe = probes[next(cursor) % len(probes)]
            engine.search(served, probe, fingerprint("text", "q"), 20, None, None)

        times = time_interleaved(
            {"fresh 0": lambda: run(without), f"fresh {fresh_size}": lambda: run(with_fresh)},
            rounds=queries,
            warmup=20,
        )
    p50 = {name: percentile(values, 50) * 1e3 for name, values in times.items()}
    p99 = {name: percentile(values, 99) * 1e3 for name, values in times.items()}
    names = list(times)
    return {
        "index": index_size,
        "fresh": len(held),
        "dim": DIM,
        "queries": queries,
        "p50_ms": {n: round(v, 3) for n, v in p50.items()},
        "p99_ms": {n: round(v, 3) for n, v in p99.items()},
        "p50_added_ms": round(p50[names[1]] - p50[names[0]], 3),
        "fresh_load_s": round(load_seconds, 2),
    }


def scan_kernels(rows: int, queries: int) -> dict[str, Any]:
    """The fresh set's exact scan (``rows`` unit 512-d float32 rows against one query, as
    ``FreshView.search`` does it) beside the half- and quarter-width kernels of numkong
    (usearch's own dependency): p50 per query, and each one's agreement with float32 on the
    top 20 (an i8 scan is not exact)."""
    import numkong
    from index import DIM, clustered

    from imgsearch.core.vectors import l2_normalise, prepare

    data, probes = clustered(rows, queries, seed=3)
    f32, unit = l2_normalise(data), l2_normalise(probes)
    f16, i8 = f32.astype(np.float16), prepare(f32, "i8")
    kernels = {
        "numpy float32 (BLAS threads)": lambda q: f32 @ q,
        "numkong f16 (one thread)": lambda q: numkong.cdist(
            q.astype(np.float16)[None], f16, metric="dot"
        ),
        "numkong i8 angular (one thread)": lambda q: numkong.cdist(
            prepare(q, "i8")[None], i8, metric="angular"
        ),
    }

    def top(scores: Any, best: bool) -> set[int]:
        flat = np.asarray(scores, dtype=np.float64).ravel()
        return set(np.argsort(flat if not best else -flat)[:20].tolist())

    agreement = {}
    for name, kernel in kernels.items():
        best = "angular" not in name  # numkong's angular is a distance: lower is nearer
        agreement[name] = float(
            np.mean([len(top(kernel(q), best) & top(f32 @ q, True)) / 20 for q in unit[:100]])
        )
    cursor = iter(range(10**9))
    times = time_interleaved(
        {name: lambda k=k: k(unit[next(cursor) % len(unit)]) for name, k in kernels.items()},
        rounds=queries,
        warmup=20,
    )
    return {
        "rows": rows,
        "dim": DIM,
        "p50_ms": {n: round(percentile(v, 50) * 1e3, 3) for n, v in times.items()},
        "top20_agreement": agreement,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--uploads", type=int, default=40)
    parser.add_argument("--index", type=int, default=100_000)
    parser.add_argument("--fresh", type=int, nargs="+", default=[5_000, 10_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--scan-only", action="store_true", help="only the scan kernels, at the largest --fresh"
    )
    args = parser.parse_args()

    scan = scan_kernels(max(args.fresh), args.queries)
    costs = (
        [] if args.scan_only else [text_query_cost(args.index, n, args.queries) for n in args.fresh]
    )
    uploads = [] if args.scan_only else upload_to_searchable(args.sizes, args.uploads)

    rows = [
        [f"upload → searchable, {u['indexed']:,} indexed ({u['uploads']} uploads)",
         f"p50 {u['p50_s']} s, p95 {u['p95_s']} s, max {u['max_s']} s",
         f"p95 ≤ {TARGETS['upload_to_searchable_p95_s']} s"]
        for u in uploads
    ]  # fmt: skip
    for cost in costs:
        names = list(cost["p50_ms"])
        rows.append(
            [
                f"search p50 (p99), {cost['index']:,} x {cost['dim']}-d indexed",
                " vs ".join(f"{n}: {cost['p50_ms'][n]} ms ({cost['p99_ms'][n]})" for n in names),
                "",
            ]
        )
        rows.append(
            [
                f"added to p50 by {cost['fresh']:,} fresh vectors",
                f"{cost['p50_added_ms']} ms",
                f"≤ {TARGETS['text_p50_added_ms']} ms at 10,000",
            ]
        )
    for name, p50 in scan["p50_ms"].items():
        rows.append(
            [
                f"scan of {scan['rows']:,} fresh rows: {name}",
                f"p50 {p50} ms, top-20 agreement {scan['top20_agreement'][name]:.3f}",
                "",
            ]
        )
    print(markdown_table(["measure", "result", "target"], rows))
    path = write_results(
        "fresh-scan" if args.scan_only else "fresh",
        {
            "environment": environment("faiss-cpu", "usearch", "numpy", "moto"),
            "targets": TARGETS,
            "upload_to_searchable": uploads,
            "text_query_cost": costs,
            "scan_kernels": scan,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
