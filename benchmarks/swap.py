"""Query latency while the query function swaps model and index, as a Lambda sandbox sees it.

A query sandbox serves one request at a time and is frozen between requests, so the swap's
background work (the new version's download; a registered model's text tower download, sha256
check and session; the index open; the deleted and fresh sets' first reads) runs only while
requests do: a busy sandbox is the worst case. This benchmark makes one:

- the **query function** runs in its own process, pinned to one core (``QueryFunction``'s
  MemorySize in template.yaml, 2,048 MB, is about 1.16 vCPU): the real handler
  (``functions/query/app.py``'s ``build``, from its environment as on Lambda), its own bundle the
  int8 ViT-B/32-shaped model, answering new text queries back to back, each timed, with the
  model and index version its answer names;
- **S3 and DynamoDB** are a moto server in this process, pinned to the other core (on AWS they
  are another machine);
- ``current.json`` switches ``--swaps`` times between two published (model, index) pairs over
  the same ``--size`` vectors: the function's own int8 model and the fp32 one, registered as a
  rollout registers it (``register_bundle``), so every other swap loads the fp32 text tower from
  the registry (the first one downloads it). The function checks ``current.json`` every second
  (``IMGSEARCH_INDEX_REFRESH_SECONDS=1``; 60 s by default). The next switch comes ``2 x
  --steady`` seconds after the function answers from the new pair.

Each case (``--nice``: the background refresh's ``IMGSEARCH_INDEX_REFRESH_NICE``; 0 is the
requests' own priority, 19 the default) is a fresh function process, the cases one after the
other. Phases, per swap, by when a request started: **before**, the ``--steady`` seconds up to
the write; **swap**, from the write to the first answer from the new pair (the old pair serves
while the new one loads); **after**, the ``--steady`` seconds from there. Pooled by direction
(to the registered fp32 model, back to the function's own int8), since the two text towers
differ in speed. Targets: zero failed queries, every answer from one published pair, p99 during
the swap within 10 % of before, and the function's peak memory within its MemorySize::

    python benchmarks/swap.py                                # 100,000 vectors, 4 swaps a case
    python benchmarks/swap.py --swaps 2 --size 20000 --nice 19      # a smoke test

Prints a markdown table and writes ``benchmarks/results/swap.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    environment,
    fp32_bundle,
    int8_bundle,
    markdown_table,
    percentile,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
TARGETS = {"failed_queries": 0, "swap_p99_over_before": 1.10}
QUERY_CORE, SERVER_CORE = 0, 1
DIRECTIONS = ("to the registered fp32", "back to its own int8")
REGION = "us-east-1"


# -- the query function: a process of its own -----------------------------------------------------


def worker(out: Path) -> None:
    """Serve new text queries back to back until a line on stdin; print SWAPPED when an answer
    names another pair; write every request's (start, end, status, model, version) to ``out``."""
    pin(QUERY_CORE)
    sys.path.insert(0, str(ROOT / "functions"))  # ``query.app`` as in the image
    sys.path.insert(0, str(ROOT / "tools"))
    import query.app
    from _common import api_event
    from imgsearch_devkit.local.lambda_context import LambdaContext
    from random_clip import WORDS

    from imgsearch.core.config import Settings

    words = WORDS.split()
    rng = np.random.default_rng(0)
    context = LambdaContext("imgsearch-query")
    stop = threading.Event()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # EMF and log lines
        handler = query.app.build(Settings.from_env())

        def call() -> tuple[float, float, int, str, str]:
            text = " ".join(rng.choice(words, size=int(rng.integers(3, 9))))
            request = api_event("GET", "/search", {"q": text, "k": "20"})
            began = time.monotonic()
            response = handler(request, context)
            ended = time.monotonic()
            body = json.loads(response["body"]) if response["statusCode"] == 200 else {}
            status, model = response["statusCode"], body.get("model", "")
            return began, ended, status, model, body.get("index_version", "")

        for _ in range(20):  # warm-up: the towers' first runs, the index's first pages
            call()
        threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
        print("READY", file=sys.__stdout__, flush=True)
        calls, serving = [], call()[3:]
        while not stop.is_set():
            calls.append(call())
            if calls[-1][2] == 200 and calls[-1][3:] != serving:
                serving = calls[-1][3:]
                print("SWAPPED", file=sys.__stdout__, flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps({"calls": calls, "peak_rss_mb": peak_mb}), encoding="utf-8")


# -- this process: the moto server, the pairs, the switches ---------------------------------------


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {core})


def query_memory_mb() -> int:
    from imgsearch_devkit.local.template import load_template

    template = load_template(ROOT / "template.yaml")
    return int(template["Resources"]["QueryFunction"]["Properties"]["MemorySize"])


def phases(
    calls: list[list[Any]], switches: list[tuple[float, str, str]], steady: float
) -> tuple[dict[str, dict[str, list[float]]], list[dict[str, Any]]]:
    """Latencies (ms) by direction and phase, and each swap's own figures."""
    starts = np.array([c[0] for c in calls])
    pooled: dict[str, dict[str, list[float]]] = {
        d: {"before": [], "swap": [], "after": []} for d in DIRECTIONS
    }
    swaps = []
    for n, (written, model, version) in enumerate(switches):
        direction = DIRECTIONS[n % 2]
        new = next(c[0] for c in calls if c[0] >= written and (c[3], c[4]) == (model, version))
        windows = {
            "before": (written - steady, written),
            "swap": (written, new),
            "after": (new, new + steady),
        }
        record: dict[str, Any] = {"direction": direction, "swap_seconds": round(new - written, 3)}
        for phase, (start, end) in windows.items():
            chosen = np.flatnonzero((starts >= start) & (starts < end))
            pooled[direction][phase] += [(calls[i][1] - calls[i][0]) * 1e3 for i in chosen]
            record[f"{phase}_queries"] = len(chosen)
        swaps.append(record)
    return pooled, swaps


class Stack:
    """The moto server with the bucket, the table, the registered fp32 model and both pairs."""

    def __init__(self, bundles: dict[str, Path], size: int) -> None:
        import boto3
        from moto.server import ThreadedMotoServer
        from query import BUCKET, TABLE, build_cached

        from imgsearch.model import open_bundle
        from imgsearch.model.bundle import read_manifest
        from imgsearch.rollout.registration import register_bundle
        from imgsearch.store import table_definition

        self.folder, _ = build_cached(size, threads=2)
        manifests = {name: read_manifest(path) for name, path in bundles.items()}
        self.dim = manifests["int8"].embedding_dim
        self.pairs = [(manifests[name].model_id, f"swap-{name}") for name in ("int8", "fp32")]
        pin(SERVER_CORE)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs each request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        credentials = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        client = boto3.session.Session(region_name=REGION, **credentials).client
        self.s3 = client("s3", endpoint_url=self.endpoint)
        self.s3.create_bucket(Bucket=BUCKET)
        client("dynamodb", endpoint_url=self.endpoint).create_table(**table_definition(TABLE))
        fp32 = open_bundle(bundles["fp32"])
        register_bundle(self.s3, BUCKET, fp32, source=str(bundles["fp32"]), by="swap.py")
        self.bucket, self.table = BUCKET, TABLE

    def point(self, pair: tuple[str, str]) -> float:
        """Publish ``pair`` (model id, version); when the write was done."""
        from query import publish

        publish(self.s3, self.folder, pair[0], self.dim, pair[1])
        return time.monotonic()


def run_case(stack: Stack, bundle: Path, nice: int, args: argparse.Namespace) -> dict[str, Any]:
    """One function process at ``nice``: ``args.swaps`` switches, each once the last has
    swapped; its calls, switches and peak memory."""
    stack.point(stack.pairs[0])  # the int8 pair serves first
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "calls.json"
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": stack.endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(args.memory_mb),
            "POWERTOOLS_SERVICE_NAME": "imgsearch-query",
            "POWERTOOLS_METRICS_NAMESPACE": "imgsearch",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "IMGSEARCH_BUCKET": stack.bucket,
            "IMGSEARCH_TABLE": stack.table,
            "IMGSEARCH_MODEL_URI": str(bundle),
            "IMGSEARCH_MODEL_CACHE_DIR": str(Path(tmp) / "models"),
            "IMGSEARCH_INDEX_CACHE_DIR": str(Path(tmp) / "indexes"),
            "IMGSEARCH_INDEX_REFRESH_SECONDS": "1",
            "IMGSEARCH_INDEX_REFRESH_NICE": str(nice),
        }
        process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(out)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None and process.stdout is not None
        if process.stdout.readline().strip() != "READY":
            raise SystemExit(f"the query function did not start (exit {process.wait()})")
        switches = []
        time.sleep(args.steady)
        for n in range(args.swaps):
            pair = stack.pairs[(n + 1) % 2]
            switches.append((stack.point(pair), *pair))
            if process.stdout.readline().strip() != "SWAPPED":
                raise SystemExit(f"the query function stopped (exit {process.wait()})")
            took = time.monotonic() - switches[-1][0]
            print(
                f"  nice {nice}, swap {n + 1}/{args.swaps} to {pair[0]}: {took:.1f} s", flush=True
            )
            time.sleep(2 * args.steady)
        process.stdin.write("STOP\n")
        process.stdin.flush()
        if process.wait() != 0:
            raise SystemExit(f"the query function failed (exit {process.returncode})")
        measured = json.loads(out.read_text(encoding="utf-8"))
    return measured | {"switches": switches}


def summarise(
    case: dict[str, Any], pairs: list[tuple[str, str]], steady: float
) -> tuple[dict[str, Any], list[list[Any]]]:
    calls = case["calls"]
    published = {tuple(p) for p in pairs}
    pooled, swaps = phases(calls, case["switches"], steady)
    summary: dict[str, Any] = {
        "queries": len(calls),
        "failed_queries": sum(1 for c in calls if c[2] != 200),
        "answers_from_an_unpublished_pair": sum(
            1 for c in calls if c[2] == 200 and (c[3], c[4]) not in published
        ),
        "peak_rss_mb": round(case["peak_rss_mb"], 1),
        "swaps": swaps,
    }
    rows = []
    for direction, by_phase in pooled.items():
        figures = {
            phase: {
                "queries": len(values),
                "p50_ms": round(percentile(values, 50), 2),
                "p99_ms": round(percentile(values, 99), 2),
                "max_ms": round(max(values, default=float("nan")), 2),
            }
            for phase, values in by_phase.items()
        }
        ratio = figures["swap"]["p99_ms"] / figures["before"]["p99_ms"]
        seconds = [s["swap_seconds"] for s in swaps if s["direction"] == direction]
        summary[direction] = figures | {
            "swap_p99_over_before": round(ratio, 3),
            "swap_seconds": seconds,
        }
        rows.append(
            [direction, len(seconds)]
            + [f"{figures[p]['p50_ms']} / {figures[p]['p99_ms']}" for p in figures]
            + [f"{ratio:.2f}×", " / ".join(f"{s:.1f}" for s in seconds)]
        )
    return summary, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="indexed vectors")
    parser.add_argument("--swaps", type=int, default=4, help="switches per case")
    parser.add_argument("--steady", type=float, default=3.0, help="seconds before and after")
    parser.add_argument("--nice", type=int, nargs="+", default=[0, 19], choices=range(20))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return

    sys.path.insert(0, str(ROOT / "tools"))
    import imgsearch  # noqa: F401  (onnxruntime before usearch)

    load_before = [round(x, 2) for x in os.getloadavg()]
    bundles = {"int8": int8_bundle(CACHE, threads=2), "fp32": fp32_bundle(CACHE, threads=2)[1]}
    args.memory_mb = query_memory_mb()
    stack = Stack(bundles, args.size)
    print(f"query function on core {QUERY_CORE}, moto on core {SERVER_CORE}", flush=True)
    try:
        cases = {nice: run_case(stack, bundles["int8"], nice, args) for nice in args.nice}
    finally:
        stack.server.stop()

    rows, results = [], {}
    for nice, case in cases.items():
        results[f"nice {nice}"], case_rows = summarise(case, stack.pairs, args.steady)
        rows += [[nice, *row] for row in case_rows]
    headers = ["nice", "swap", "swaps", "before p50 / p99 ms", "swap p50 / p99 ms"]
    headers += ["after p50 / p99 ms", "swap p99 / before", "s to swap"]
    print()
    print(markdown_table(headers, rows))
    for name, result in results.items():
        print(
            f"{name}: {result['queries']} queries, {result['failed_queries']} failed, "
            f"{result['answers_from_an_unpublished_pair']} from a pair never published; "
            f"peak RSS {result['peak_rss_mb']:.0f} MB of {args.memory_mb} MB"
        )
    settings = {k: v for k, v in vars(args).items() if k != "worker"}
    path = write_results(
        "swap",
        {
            "environment": environment("onnxruntime", "usearch", "moto")
            | {"load_average_before": load_before},
            "settings": settings,
            "targets": TARGETS,
            "cases": results,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
