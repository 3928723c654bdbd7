"""A long schemathesis run, every check, against the local stack's real HTTP endpoint.

Starts the local stack (the template's resources on moto, the real handlers in this process),
uploads demo scenes, runs the index pipeline, then runs schemathesis' ``st run`` (config:
``tests/e2e/schemathesis.toml``) until at least ``--requests`` requests were sent, counting the
answers by status from schemathesis' HAR report::

    python benchmarks/fuzz.py --requests 10000

Writes ``benchmarks/results/fuzz.json``: requests by status, schemathesis' exit code and summary.
Zero 5xx and exit code 0 (no check failed) is the bar.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from _common import environment, write_results
from imgsearch_devkit.demo.scenes import KINDS, generate
from imgsearch_devkit.local.stack import LocalStack, LocalStackConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "e2e" / "schemathesis.toml"
ST = str(Path(sys.executable).with_name("st"))


def seed(stack: LocalStack) -> str:
    """Upload one scene per kind, wait for ingestion, run the pipeline: the published version."""
    target = stack.require_target()

    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=target.aws_endpoint,
            region_name=target.region,
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )

    s3 = client("s3")
    for i, (image, scene) in enumerate(generate(len(KINDS), seed=11, balanced=True)):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        key = f"{target.image_prefix}{i:02d} {scene.colour} {scene.shape}.jpg"
        s3.put_object(Bucket=target.bucket, Key=key, Body=buffer.getvalue())
    stack.wait_for_ingestion(timeout=300)
    sfn = client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=target.state_machine_arn, input="{}")["executionArn"]
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        time.sleep(0.5)
    if described["status"] != "SUCCEEDED":
        raise SystemExit(f"the pipeline run ended {described['status']}")
    version = json.loads(described["output"])["publish"]["version"]
    target.api().wait_for_version(version)
    return version


def fuzz(url: str, examples: int, workdir: Path) -> tuple[int, collections.Counter, str]:
    """One ``st run``: its exit code, the requests by status, its summary."""
    har = workdir / f"run-{examples}.har"
    command = [
        ST, "--config-file", str(CONFIG), "run", f"{url}/openapi.json", "--checks", "all",
        "--max-examples", str(examples), "--continue-on-failure",
        "--report", "har", "--report-har-path", str(har),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    statuses = collections.Counter(entry["response"]["status"] for entry in entries)
    summary = run.stdout[run.stdout.rfind("SUMMARY") :] if "SUMMARY" in run.stdout else run.stdout
    return run.returncode, statuses, summary.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="at least this many")
    parser.add_argument("--examples", type=int, default=1000, help="per operation, first run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        stack = LocalStack(LocalStackConfig.in_folder(workdir))
        stack.start()
        try:
            version = seed(stack)
            url = stack.require_target().api_url
            started = time.perf_counter()
            totals: collections.Counter = collections.Counter()
            runs = []
            examples = args.examples
            while sum(totals.values()) < args.requests:
                code, statuses, summary = fuzz(url, examples, workdir)
                totals.update(statuses)
                count = sum(statuses.values())
                runs.append(
                    {
                        "max_examples": examples,
                        "exit_code": code,
                        "requests": count,
                        "summary": summary,
                    }
                )
                print(f"st run -n {examples}: exit {code}, {count} requests", flush=True)
                examples *= 2
            seconds = time.perf_counter() - started
        finally:
            stack.stop()

    by_status = {str(status): totals[status] for status in sorted(totals)}
    path = write_results(
        "fuzz",
        {
            "environment": environment("schemathesis", "aws-lambda-powertools", "pillow"),
            "index_version": version,
            "requests": sum(totals.values()),
            "seconds": round(seconds, 1),
            "by_status": by_status,
            "server_errors": sum(n for status, n in totals.items() if status >= 500),
            "runs": runs,
        },
    )
    print(json.dumps(by_status), f"-> {path}")
    failed = [run for run in runs if run["exit_code"] != 0]
    if failed or any(status >= 500 for status in totals):
        raise SystemExit("schemathesis found failures: see " + str(path))


if __name__ == "__main__":
    main()
