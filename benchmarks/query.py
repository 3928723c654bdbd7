"""Query API speed: warm handler latency for text, image and similar queries, and cold start.

A randomly initialised ViT-B/32-shaped CLIP (timings do not depend on weight values) is exported
to an fp32 bundle and an int8 one (``benchmarks/embed.py``'s cached bundles). For each index size,
clustered synthetic 512-d vectors (``benchmarks/index.py``'s generator) are indexed with the
pipeline's ``build_index`` at the configured settings (cached under ``benchmarks/.cache/``) and
published to a moto S3 server with ``current.json`` naming the ``expansion_search`` that
Validate's tuning chooses for it (``imgsearch.pipeline.validate.tune_expansion_search``). Then,
for each text tower, a fresh Python process builds the real handler
(``functions/query/app.py``'s ``build``, from its environment as on Lambda) and times:

- init: the handler's import and build in the new interpreter (model load, index open with
  ``view``), the index files already in its cache directory; the S3 download is timed on its own;
- warm p50/p99 of ``handler(event, context)`` with API Gateway HTTP API events: text queries
  never seen before (no cache hit), repeated text queries (embedding cache hits), a 640x480 JPEG
  upload, and "more like this" on indexed keys; and, for the text query, the model's share;
- the usage log's cost: repeated text queries with the log on and off, interleaved (off still
  builds the search record, a few microseconds, but neither serialises nor writes it).

    python benchmarks/query.py --sizes 100000 1000000 --threads 2

Prints a markdown table and writes ``benchmarks/results/query.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
BUCKET = "bench-images"
TABLE = "bench-embeddings"
EXPANSION_FILE = "expansion_search"
"""Beside a cached index: the ``expansion_search`` Validate's tuning chose for it."""
ANCHORS = [
    ("clip-retrieval back end (published)", "~50 ms a query"),
    ("Amazon S3 Vectors (published, warm)", "~100 ms a query"),
]
TARGETS = {"text_p50_ms": 20.0, "text_p99_ms": 50.0, "init_s": 2.0}


# -- worker: one fresh interpreter, the real handler -------------------------------------------


def worker(rounds: int, image_rounds: int) -> dict[str, Any]:
    started = time.perf_counter()
    sys.path.insert(0, str(ROOT / "functions"))
    # The heavy libraries first, then the handler's own init: usearch, the model bundle,
    # current.json, the index and key table opened with view, the deleted keys.
    import aws_lambda_powertools.event_handler  # noqa: F401
    import boto3  # noqa: F401

    import imgsearch  # noqa: F401  (onnxruntime)

    imports_seconds = time.perf_counter() - started
    import query.app

    from imgsearch.core.config import Settings

    handler = query.app.build(Settings.from_env())
    init_seconds = time.perf_counter() - started
    import numpy as np
    import psutil

    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT / "tools"))
    from _common import api_event, percentile, photo_like_jpeg
    from imgsearch_devkit.local.lambda_context import LambdaContext
    from random_clip import WORDS

    rss_after_init = psutil.Process().memory_info().rss
    service = handler.api.service
    served = service.server.require()
    rng = np.random.default_rng(0)

    def text() -> str:
        return " ".join(rng.choice(WORDS.split(), size=int(rng.integers(3, 9))))

    fresh = [text() for _ in range(rounds + 10)]
    repeated = fresh[:5]
    photo = photo_like_jpeg(640, 480, seed=1)
    keys = [served.keys.key(int(i)) for i in rng.choice(np.asarray(served.keys.ids), rounds + 10)]

    def call(request: dict) -> float:
        begin = time.perf_counter()
        response = handler(request, LambdaContext("imgsearch-query"))
        elapsed = (time.perf_counter() - begin) * 1000
        assert response["statusCode"] == 200, response["body"][:300]
        return elapsed

    cases = {
        "text (new query)": lambda i: api_event("GET", "/search", {"q": fresh[i], "k": "20"}),
        "text (cached query)": lambda i: api_event(
            "GET", "/search", {"q": repeated[i % 5], "k": "20"}
        ),
        "image (640x480 JPEG)": lambda i: api_event("POST", "/search", {"k": "20"}, photo),
        "similar": lambda i: api_event(
            "GET", f"/images/{keys[i].replace('/', '%2F')}/similar", {"k": "20"}
        ),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # EMF and log lines
        for name, build in cases.items():
            count = image_rounds if name.startswith("image") else rounds
            for i in range(min(3, count)):  # warm-up
                call(build(i + count))
            for i in range(count):
                timings[name].append(call(build(i)))
        # The usage log's cost: cached text queries (the cheapest, where it weighs most) with
        # the log on and off, interleaved so that drift in the machine's speed hits both.
        logged, unlogged = service.usage, _Unlogged()
        paired: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(rounds):
            order = (("on", logged), ("off", unlogged))
            for state, usage in order if i % 2 else order[::-1]:
                service.usage = usage
                paired[state].append(call(cases["text (cached query)"](i)))
        service.usage = logged
        model_ms = []  # the text tower alone, on queries it has not seen
        for i in range(rounds):
            begin = time.perf_counter()
            service.model.encode_text([fresh[i] + " again"])
            model_ms.append((time.perf_counter() - begin) * 1000)
    return {
        "init_seconds": init_seconds,
        "library_imports_seconds": imports_seconds,
        "rss_after_init_mb": rss_after_init / 2**20,
        "rss_after_queries_mb": psutil.Process().memory_info().rss / 2**20,
        "model": service.model.model_id,
        "index_count": len(served.index),
        "expansion_search": served.index.expansion_search,
        "latency_ms": {
            name: {"p50": percentile(values, 50), "p99": percentile(values, 99), "n": len(values)}
            for name, values in timings.items()
        },
        "text_tower_ms": {"p50": percentile(model_ms, 50), "p99": percentile(model_ms, 99)},
        "usage_log_ms": {
            state: {"p50": percentile(values, 50), "p99": percentile(values, 99)}
            for state, values in paired.items()
        },
    }


class _Unlogged:
    """A usage log that writes nothing: the search record is still built (a few microseconds)
    but not serialised or written."""

    def emit(self, record: object) -> None:
        return None


# -- orchestrator ------------------------------------------------------------------------------


def build_cached(n: int, threads: int) -> tuple[Path, float | None]:
    """The index and key table for ``n`` vectors at the configured settings, built once, and
    the ``expansion_search`` Validate's tuning chooses for it (``EXPANSION_FILE``)."""
    import numpy as np

    from imgsearch.ann import open_index
    from imgsearch.catalog.keytable import KeyTable
    from imgsearch.catalog.layout import KEYS_FILE, index_file
    from imgsearch.core.config import Settings
    from imgsearch.core.keys import image_id
    from imgsearch.pipeline.build import build_index
    from imgsearch.pipeline.validate import expansion_ladder, noisy_queries, tune_expansion_search

    settings = Settings.from_env({})
    engine = settings.index.engine
    folder = CACHE / f"query-index-{n}-{engine}"
    path = folder / index_file(engine)
    built = path.is_file() and (folder / KEYS_FILE).is_file()
    if built and (folder / EXPANSION_FILE).is_file():
        return folder, None
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from index import clustered

    data, _ = clustered(n, 1, seed=0)
    keys = [f"images/bench/{i:07d}.jpg" for i in range(n)]
    ids = np.array([image_id(k) for k in keys], dtype=np.int64)
    build_seconds = None
    if built:
        index = open_index(engine, path, view=True)
    else:
        print(f"generated {n} clustered vectors; building the index on {threads} threads")
        began = time.perf_counter()
        index = build_index(data, ids, settings.index, threads)
        build_seconds = time.perf_counter() - began
        folder.mkdir(parents=True, exist_ok=True)
        index.save(path.with_name(path.name + ".tmp"))
        path.with_name(path.name + ".tmp").replace(path)
        KeyTable.write(folder / KEYS_FILE, ids, keys)
    # Serve at the search effort Validate would choose for this collection, as Publish does.
    probes = noisy_queries(data, ids, settings.gate.sample_queries, np.random.default_rng(1))
    ladder = expansion_ladder(settings.index)
    chosen, recalls = tune_expansion_search(
        index, data, ids, probes, ladder, settings.gate.tune_floor, threads
    )
    print(f"  Validate's tuning at {n}: recall@10 by expansion_search {recalls}, serves {chosen}")
    (folder / EXPANSION_FILE).write_text(str(chosen))
    return folder, build_seconds


def publish(s3: Any, folder: Path, model_id: str, dim: int, version: str) -> Any:
    """Upload the cached index as ``version`` and serve it; its ``current.json``."""
    from imgsearch.catalog.current import CurrentIndex, read_current, write_current
    from imgsearch.catalog.keytable import KeyTable
    from imgsearch.catalog.layout import KEYS_FILE, index_file, version_key
    from imgsearch.core.clock import now_iso
    from imgsearch.core.config import Settings

    settings = Settings.from_env({}).index
    for name in (index_file(settings.engine), KEYS_FILE):
        if not _exists(s3, version_key("indexes/", version, name)):
            s3.upload_file(str(folder / name), BUCKET, version_key("indexes/", version, name))
    previous = read_current(s3, BUCKET)
    count = len(KeyTable.open(folder / KEYS_FILE))
    current = CurrentIndex(
        version=version,
        model=model_id,
        count=count,
        built_at=now_iso(),
        dim=dim,
        engine=settings.engine,
        dtype=settings.dtype,
        expansion_search=int((folder / EXPANSION_FILE).read_text()),
    )
    write_current(s3, BUCKET, current, previous.etag if previous else None)
    return current


def _exists(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
    except s3.exceptions.ClientError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=200, help="text and similar queries")
    parser.add_argument("--image-rounds", type=int, default=40)
    parser.add_argument("--towers", nargs="+", default=["int8", "fp32"], choices=["int8", "fp32"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.rounds, args.image_rounds)))
        return

    import boto3
    import psutil  # noqa: F401  (fail early when the tools extra is missing)
    from _common import environment, markdown_table, write_results
    from embed import prepare_bundles
    from moto.server import ThreadedMotoServer

    import imgsearch  # noqa: F401  (onnxruntime before usearch)
    from imgsearch.model import ClipModel
    from imgsearch.query.serving import download_version
    from imgsearch.store import table_definition

    load_before = [round(x, 2) for x in os.getloadavg()]
    _, fp32, int8 = prepare_bundles(CACHE, args.threads, rebuild=False)
    bundles = {"fp32": fp32, "int8": int8}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    base_env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "imgsearch-query",
        "POWERTOOLS_METRICS_NAMESPACE": "imgsearch",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "IMGSEARCH_BUCKET": BUCKET,
        "IMGSEARCH_TABLE": TABLE,
        "IMGSEARCH_THREADS": str(args.threads),
    }
    session = boto3.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    dynamodb = session.client("dynamodb", endpoint_url=endpoint)
    s3.create_bucket(Bucket=BUCKET)
    dynamodb.create_table(**table_definition(TABLE))

    rows, results = [], []
    try:
        for n in args.sizes:
            folder, build_seconds = build_cached(n, args.threads)
            for tower in args.towers:
                model = ClipModel.load(bundles[tower], threads=1)
                version = f"bench-{n}"
                current = publish(s3, folder, model.model_id, model.dim, version)
                with tempfile.TemporaryDirectory() as cache:
                    began = time.perf_counter()
                    download_version(s3, BUCKET, "indexes/", current, cache)
                    download_seconds = time.perf_counter() - began
                    index_mb = sum(f.stat().st_size for f in Path(cache, version).iterdir()) / 2**20
                    env = base_env | {
                        "IMGSEARCH_MODEL_URI": str(bundles[tower]),
                        "IMGSEARCH_INDEX_CACHE_DIR": cache,
                    }
                    print(
                        f"n={n} tower={tower}: running the handler in a fresh process", flush=True
                    )
                    done = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--worker",
                            "--rounds",
                            str(args.rounds),
                            "--image-rounds",
                            str(args.image_rounds),
                        ],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                if done.returncode != 0:
                    raise SystemExit(f"worker failed:\n{done.stderr[-3000:]}")
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                result = json.loads(line[len("RESULT ") :]) | {
                    "n": n,
                    "tower": tower,
                    "download_seconds": download_seconds,
                    "index_mb": index_mb,
                    "build_seconds": build_seconds,
                }
                results.append(result)
                latency = result["latency_ms"]
                for case, figures in latency.items():
                    rows.append(
                        [
                            f"{n:,}",
                            tower,
                            case,
                            f"{figures['p50']:.1f}",
                            f"{figures['p99']:.1f}",
                        ]
                    )
                for state, figures in result["usage_log_ms"].items():
                    rows.append(
                        [
                            f"{n:,}",
                            tower,
                            f"text (cached query), usage log {state} (interleaved)",
                            f"{figures['p50']:.2f}",
                            f"{figures['p99']:.2f}",
                        ]
                    )
                rows.append(
                    [
                        f"{n:,}",
                        tower,
                        "text tower alone (new query)",
                        f"{result['text_tower_ms']['p50']:.1f}",
                        f"{result['text_tower_ms']['p99']:.1f}",
                    ]
                )
    finally:
        server.stop()

    print()
    efforts = ", ".join(
        f"{r['n']:,}: {r['expansion_search']}" for r in results[:: len(args.towers)]
    )
    print(f"Warm handler latency, {args.threads} threads (ms); expansion_search served {efforts}")
    print(markdown_table(["vectors", "text tower", "query", "p50", "p99"], rows))
    for anchor, figure in ANCHORS:
        print(f"- anchor: {anchor}: {figure} (not measured here)")
    print()
    print("Cold start (fresh interpreter importing the handler; index already in /tmp)")
    print(
        markdown_table(
            [
                "vectors",
                "text tower",
                "init s",
                "of which library imports s",
                "RSS after init MB",
                "index MB",
                "S3 download s (moto)",
            ],
            [
                [
                    f"{r['n']:,}",
                    r["tower"],
                    f"{r['init_seconds']:.2f}",
                    f"{r['library_imports_seconds']:.2f}",
                    f"{r['rss_after_init_mb']:.0f}",
                    f"{r['index_mb']:.0f}",
                    f"{r['download_seconds']:.2f}",
                ]
                for r in results
            ],
        )
    )
    path = write_results(
        "query",
        {
            "environment": environment(
                "onnxruntime", "faiss-cpu", "usearch", "numpy", "aws-lambda-powertools"
            )
            | {"load_average_before": load_before},
            "threads": args.threads,
            "targets": TARGETS,
            "anchors": dict(ANCHORS),
            "results": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
