"""Query latency while the query function swaps model and index, as a Lambda sandbox sees it.

A query sandbox serves one request at a time and is frozen between requests. The swap's work
(the new version's download; a registered model's text tower download, sha256 check and
session; the index open; the deleted and fresh sets' first reads) runs either after a response,
in the function's internal extension, which keeps the sandbox for it while Lambda sends other
requests elsewhere (``IMGSEARCH_INDEX_REFRESH_IN=after-response``, the default), or in a
background thread, which runs only while requests do: a busy sandbox is its worst case. This
benchmark makes one sandbox:

- the **query function** runs as Lambda runs it: the image's runtime (``awslambdaric``)
  imports ``query.app.handler`` (init, from its environment) and polls the Runtime and
  Extensions APIs of ``imgsearch_devkit.local.runtime_api``, which hands it the next request
  only when the runtime and every extension have asked for one. It is pinned to one core
  (``QueryFunction``'s MemorySize in template.yaml, 2,048 MB, is about 1.16 vCPU), its own
  bundle the int8 ViT-B/32-shaped model, and answers new text queries back to back; each is
  timed from the runtime receiving it to its response, as its caller waits, with the model
  and index version its answer names and how long the sandbox stayed busy after it;
- the **APIs and the queries** are another process, and **S3 and DynamoDB** a moto server in
  this one, both on the other core (on AWS they are other machines);
- ``current.json`` switches ``--swaps`` times between two published (model, index) pairs over
  the same ``--size`` vectors: the function's own int8 model and the fp32 one, registered as a
  rollout registers it (``register_bundle``), so every other swap loads the fp32 text tower from
  the registry (the first one downloads it). The function checks ``current.json`` every second
  (``IMGSEARCH_INDEX_REFRESH_SECONDS=1``; 60 s by default). The next switch comes ``2 x
  --steady`` seconds after the function answers from the new pair.

Each case (``--cases``: after the response; a background thread at the requests' priority;
one at nice 19, ``IMGSEARCH_INDEX_REFRESH_NICE``) is a fresh sandbox, the cases one after the
other. Phases, per swap, by when a request started: **before**, the ``--steady`` seconds up to
the write; **swap**, from the write to the first answer from the new pair (the old pair serves
while the new one loads); **after**, the ``--steady`` seconds from there. Pooled by direction
(to the registered fp32 model, back to the function's own int8), since the two text towers
differ in speed. Targets: zero failed queries, every answer from one published pair, p99 during
the swap within 10 % of before, and the function's peak memory within its MemorySize. The
seconds the sandbox stays busy after a response are billed, count against the function's
Timeout, and are seconds in which other sandboxes take its requests::

    python benchmarks/swap.py                                # 100,000 vectors, 4 swaps a case
    python benchmarks/swap.py --swaps 2 --size 20000 --cases after-response   # a smoke test

Prints a markdown table and writes ``benchmarks/results/swap.json``.
"""

from __future__ import annotations

import argparse
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


# -- the sandbox: the query function under the image's runtime, and its Lambda APIs -------------


def sandbox(out: Path) -> None:
    """Run the query function as Lambda does (``awslambdaric`` polling this process's Runtime
    and Extensions APIs, on ``QUERY_CORE``) and send it new text queries back to back until a
    line on stdin; print SWAPPED when an answer names another pair; write every request's
    (start, response, status, model, version, seconds the sandbox stayed busy after it)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from _common import api_event
    from imgsearch_devkit.local.runtime_api import Invocation, RuntimeApi
    from random_clip import WORDS

    words = WORDS.split()
    rng = np.random.default_rng(0)
    stop = threading.Event()
    with RuntimeApi(timeout_seconds=query_function("Timeout")) as api:
        function = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "query.app.handler"],
            cwd=ROOT / "functions",
            env={
                **os.environ,
                **api.environment("imgsearch-query", int(os.environ["SWAP_MEMORY_MB"])),
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",  # the image's runtime, its polling
                "PYTHONPATH": str(ROOT / "functions"),
            },
            stdout=subprocess.DEVNULL,  # EMF and log lines
            preexec_fn=lambda: pin(QUERY_CORE),
        )

        def call() -> Invocation:
            text = " ".join(rng.choice(words, size=int(rng.integers(3, 9))))
            return api.invoke(api_event("GET", "/search", {"q": text, "k": "20"}), 300)

        def answer(invocation: Invocation) -> tuple[int, str, str]:
            reply = invocation.json()
            body = json.loads(reply["body"]) if reply["statusCode"] == 200 else {}
            return reply["statusCode"], body.get("model", ""), body.get("index_version", "")

        for _ in range(20):  # warm-up: the towers' first runs, the index's first pages
            call()
        threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
        print("READY", flush=True)
        invocations, serving = [], answer(call())[1:]
        while not stop.is_set():
            invocations.append(call())
            status, *pair = answer(invocations[-1])
            if status == 200 and tuple(pair) != serving:
                serving = tuple(pair)
                print("SWAPPED", flush=True)
        invocations[-1].finished.wait(300)
        function.kill()
        function.wait()
    calls = [
        [i.started, i.responded, *answer(i), (i.ended or i.responded) - i.responded]
        for i in invocations
    ]
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.write_text(json.dumps({"calls": calls, "peak_rss_mb": peak_mb}), encoding="utf-8")


# -- this process: the moto server, the pairs, the switches ---------------------------------------


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {core})


def query_function(setting: str) -> int:
    """``QueryFunction``'s ``MemorySize`` or ``Timeout`` in template.yaml."""
    from imgsearch_devkit.local.template import load_template

    template = load_template(ROOT / "template.yaml")
    return int(template["Resources"]["QueryFunction"]["Properties"][setting])


CASES = {
    "after-response": {"IMGSEARCH_INDEX_REFRESH_IN": "after-response"},
    "background": {"IMGSEARCH_INDEX_REFRESH_IN": "background"},
    "background, nice 19": {
        "IMGSEARCH_INDEX_REFRESH_IN": "background",
        "IMGSEARCH_INDEX_REFRESH_NICE": "19",
    },
}
"""Where the function swaps: after a response, in its extension (the default), or in a thread
beside the requests at the requests' priority or at nice 19."""


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
            if phase == "swap":  # the sandbox held after a response (billed; not serving)
                record["busy_after_seconds"] = round(max(calls[i][5] for i in chosen), 3)
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


def run_case(stack: Stack, bundle: Path, case: str, args: argparse.Namespace) -> dict[str, Any]:
    """One sandbox for ``case``: ``args.swaps`` switches, each once the last has swapped; its
    calls, switches and the function's peak memory."""
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
            "SWAP_MEMORY_MB": str(args.memory_mb),
            "POWERTOOLS_SERVICE_NAME": "imgsearch-query",
            "POWERTOOLS_METRICS_NAMESPACE": "imgsearch",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "IMGSEARCH_BUCKET": stack.bucket,
            "IMGSEARCH_TABLE": stack.table,
            "IMGSEARCH_MODEL_URI": str(bundle),
            "IMGSEARCH_MODEL_CACHE_DIR": str(Path(tmp) / "models"),
            "IMGSEARCH_INDEX_CACHE_DIR": str(Path(tmp) / "indexes"),
            "IMGSEARCH_INDEX_REFRESH_SECONDS": "1",
            **CASES[case],
        }
        process = subprocess.Popen(
            [sys.executable, __file__, "--sandbox", str(out)],
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
            print(f"  {case}, swap {n + 1}/{args.swaps} to {pair[0]}: {took:.1f} s", flush=True)
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
        own = [s for s in swaps if s["direction"] == direction]
        seconds = [s["swap_seconds"] for s in own]
        busy = [s["busy_after_seconds"] for s in own]
        summary[direction] = figures | {
            "swap_p99_over_before": round(ratio, 3),
            "swap_seconds": seconds,
            "busy_after_a_response_seconds": busy,
        }
        rows.append(
            [direction, len(seconds)]
            + [f"{figures[p]['p50_ms']} / {figures[p]['p99_ms']}" for p in figures]
            + [f"{ratio:.2f}×", " / ".join(f"{s:.1f}" for s in seconds)]
            + [" / ".join(f"{s:.1f}" for s in busy)]
        )
    return summary, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="indexed vectors")
    parser.add_argument("--swaps", type=int, default=4, help="switches per case")
    parser.add_argument("--steady", type=float, default=3.0, help="seconds before and after")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--sandbox", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sandbox:
        sandbox(args.sandbox)
        return

    sys.path.insert(0, str(ROOT / "tools"))
    import imgsearch  # noqa: F401  (onnxruntime before usearch)

    load_before = [round(x, 2) for x in os.getloadavg()]
    bundles = {"int8": int8_bundle(CACHE, threads=2), "fp32": fp32_bundle(CACHE, threads=2)[1]}
    args.memory_mb = query_function("MemorySize")
    stack = Stack(bundles, args.size)
    print(f"query function on core {QUERY_CORE}, moto on core {SERVER_CORE}", flush=True)
    try:
        cases = {case: run_case(stack, bundles["int8"], case, args) for case in args.cases}
    finally:
        stack.server.stop()

    rows, results = [], {}
    for name, case in cases.items():
        results[name], case_rows = summarise(case, stack.pairs, args.steady)
        rows += [[name, *row] for row in case_rows]
    headers = ["refresh", "swap", "swaps", "before p50 / p99 ms", "swap p50 / p99 ms"]
    headers += ["after p50 / p99 ms", "swap p99 / before", "s to swap", "s busy after a response"]
    print()
    print(markdown_table(headers, rows))
    for name, result in results.items():
        print(
            f"{name}: {result['queries']} queries, {result['failed_queries']} failed, "
            f"{result['answers_from_an_unpublished_pair']} from a pair never published; "
            f"peak RSS {result['peak_rss_mb']:.0f} MB of {args.memory_mb} MB"
        )
    settings = {k: v for k, v in vars(args).items() if k != "sandbox"}
    path = write_results(
        "swap",
        {
            "environment": environment("onnxruntime", "faiss-cpu", "usearch", "moto")
            | {"load_average_before": load_before},
            "settings": settings,
            "targets": TARGETS,
            "cases": results,
        },
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
