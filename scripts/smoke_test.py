#!/usr/bin/env python3
"""Smoke test of a deployed imgsearch stack: upload an image, wait for its embedding, run the index
pipeline, find the image through the HTTP API by searching with its own bytes, then clean up.

    python scripts/smoke_test.py --config-env staging            # stack name from samconfig.toml
    python scripts/smoke_test.py --stack-name imgsearch-dev --region eu-west-1
    python scripts/smoke_test.py --config-env prod --health-only # read-only: GET /health

Needs AWS credentials allowed to use the stack (S3, DynamoDB, Step Functions, and
execute-api:Invoke when the API uses IAM auth; JWT auth reads a token from SMOKE_BEARER_TOKEN)
the API client (``pip install ./layers/client``) and the developer kit for the synthetic test
image (``pip install ./layers ./layers/client ./layers/devkit``). Exits 1 with
the reason on the first failed step; always deletes what it uploaded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from imgsearch_client import ApiError, Client, ClientError, auth_for

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")
TOKEN_VARIABLE = "SMOKE_BEARER_TOKEN"


class SmokeFailure(RuntimeError):
    """A step of the smoke test did not do what it should."""


def log(message: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 5) -> T:
    """Poll ``check`` until it returns something, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise SmokeFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def stack_name_from_samconfig(env: str) -> str:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    try:
        return config[env]["deploy"]["parameters"]["stack_name"]
    except KeyError as exc:
        raise SmokeFailure(f"samconfig.toml has no [{env}.deploy.parameters] stack_name") from exc


def stack_outputs(session: boto3.Session, stack: str) -> dict[str, str]:
    described = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = {"ApiUrl", "BucketName", "TableName", "StateMachineArn", "AuthMode"} - set(outputs)
    if missing:
        raise SmokeFailure(f"stack {stack} lacks outputs {sorted(missing)}")
    return outputs


def test_image() -> bytes:
    from imgsearch_devkit.demo.scenes import generate

    image, _scene = generate(1, seed=int(time.time()) % 100_000)[0]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def embedded_status(dynamodb: Any, table: str, key: str) -> str | None:
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="#k = :k",
        ExpressionAttributeNames={"#k": "key"},
        ExpressionAttributeValues={":k": {"S": key}},
        ConsistentRead=True,
    )["Items"]
    statuses = {item["status"]["S"]: item for item in items}
    if "ok" in statuses:
        return "ok"
    if "quarantined" in statuses:
        reason = statuses["quarantined"].get("reason", {}).get("S", "?")
        raise SmokeFailure(f"{key} was quarantined: {reason}")
    return "deleted" if "deleted" in statuses else None


def run_pipeline(sfn: Any, state_machine: str, name: str, timeout: float) -> None:
    execution = sfn.start_execution(
        stateMachineArn=state_machine, name=name, input=json.dumps({"force": True})
    )["executionArn"]
    log(f"pipeline started: {execution}")

    def finished() -> dict[str, Any] | None:
        described = sfn.describe_execution(executionArn=execution)
        return None if described["status"] == "RUNNING" else described

    described = wait_for("the index pipeline", finished, timeout, every=10)
    if described["status"] != "SUCCEEDED":
        raise SmokeFailure(
            f"pipeline {described['status']}: {described.get('error', '')} "
            f"{described.get('cause', '')[:2000]}"
        )
    log(f"pipeline succeeded: {described.get('output', '')[:300]}")


def search_finds(api: Client, image: bytes, key: str) -> dict[str, Any] | None:
    try:
        page = api.search_image(image, filename="smoke.png", k=10)
    except ApiError as exc:
        if exc.status == 503:  # no index loaded yet on this instance
            return None
        raise SmokeFailure(f"POST /search: {exc}") from exc
    for rank, hit in enumerate(page.results, start=1):
        if hit.key == key:
            return {"rank": rank, "score": hit.score, "index_version": page.index_version}
    return None  # a warm instance may still serve the previous index: it refreshes on its own


def delete_all_versions(s3: Any, bucket: str, key: str) -> None:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key)
    for entry in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
        if entry["Key"] == key:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=entry["VersionId"])


def health(api: Client) -> None:
    try:
        log(f"health: {api.health()}")
    except ClientError as exc:
        raise SmokeFailure(f"GET /health: {exc}") from exc


def smoke(args: argparse.Namespace) -> None:
    session = boto3.Session(region_name=args.region)
    stack = args.stack_name or stack_name_from_samconfig(args.config_env)
    outputs = stack_outputs(session, stack)
    try:
        auth = auth_for(
            outputs["AuthMode"],
            region=session.region_name,
            token=os.environ.get(TOKEN_VARIABLE, ""),
        )
    except ClientError as exc:
        raise SmokeFailure(f"{exc} (set {TOKEN_VARIABLE} for a JWT stack)") from exc
    api = Client(outputs["ApiUrl"], auth=auth, timeout=35)
    log(f"stack {stack}: API {outputs['ApiUrl']} (auth {outputs['AuthMode']})")
    health(api)
    if args.health_only:
        return

    s3, dynamodb = session.client("s3"), session.client("dynamodb")
    sfn = session.client("stepfunctions")
    # The images' bucket: the user's own with ExistingBucketName (the test image is put there
    # and deleted again, as any upload would be), else the stack's.
    bucket = outputs.get("ImageBucketName") or outputs["BucketName"]
    table = outputs["TableName"]
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    key = f"{outputs.get('ImagePrefix', 'images/')}smoke-test/{run_id}.png"
    image = test_image()
    s3.put_object(Bucket=bucket, Key=key, Body=image, ContentType="image/png")
    log(f"uploaded s3://{bucket}/{key} ({len(image)} bytes)")
    try:
        wait_for("the embedding", lambda: embedded_status(dynamodb, table, key), args.embed_timeout)
        log("embedded")
        run_pipeline(sfn, outputs["StateMachineArn"], f"smoke-{run_id}", args.pipeline_timeout)
        found = wait_for(
            "the image in search results",
            lambda: search_finds(api, image, key),
            args.query_timeout,
            every=10,
        )
        log(
            f"found {key} at rank {found['rank']} (score {found['score']:.4f}, "
            f"index {found['index_version']})"
        )
    finally:
        delete_all_versions(s3, bucket, key)
        log(f"deleted s3://{bucket}/{key}")
    wait_for(
        "the delete to reach the table",
        lambda: "gone" if embedded_status(dynamodb, table, key) in ("deleted", None) else None,
        args.embed_timeout,
    )
    log("passed: the delete reached the table; the next index rebuild drops the image")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack-name", help="CloudFormation stack to test")
    target.add_argument("--config-env", help="samconfig.toml environment naming the stack")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's)")
    parser.add_argument("--health-only", action="store_true", help="only GET /health")
    parser.add_argument("--embed-timeout", type=float, default=300, help="seconds (300)")
    parser.add_argument("--pipeline-timeout", type=float, default=1800, help="seconds (1800)")
    parser.add_argument("--query-timeout", type=float, default=300, help="seconds (300)")
    args = parser.parse_args(argv)
    try:
        smoke(args)
    except SmokeFailure as exc:
        log(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
