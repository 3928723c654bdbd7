"""A stack's workflows on moto: the real ASLs (the rollout nests the backfill and the index
pipeline; retraining hands its winner to the rollout) dispatched to the real handlers.

``workflows`` sets up the bucket, the embeddings table, the alerts topic (with a queue to read
it), the settings and the state machines, and yields a ``Workflows`` to run them; a test adds
what else it needs inside the block::

    with workflows(tmp_path, BUCKET, TABLE, handlers, env={...}) as stack:
        assert stack.run("backfill", {})["status"] == "SUCCEEDED"
        stack.alerts()      # what the alerts topic published since the last call
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from imgsearch_devkit.local.lambda_dispatch import (
    create_rollout_machines,
    create_state_machine,
    install_lambda_dispatch,
    pipeline_routes,
)
from imgsearch_devkit.local.moto_fixes import nested_executions
from ingest_support import REGION, bundle_uri
from moto import mock_aws

from imgsearch.catalog.current import read_current
from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.store import table_definition

ROOT = Path(__file__).resolve().parents[2]


def jpeg(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@dataclass
class Workflows:
    s3: Any
    sfn: Any
    sqs: Any
    dynamodb: Any
    settings: Settings
    clients: Clients
    machines: dict[str, str]
    alerts_queue: str

    def start(self, machine: str, payload: dict[str, Any]) -> str:
        return self.sfn.start_execution(
            stateMachineArn=self.machines[machine],
            name=f"{machine}-{uuid.uuid4().hex[:8]}",
            input=json.dumps(payload),
        )["executionArn"]

    def wait(self, arn: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (described := self.sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline, f"{arn} still running"
            time.sleep(0.1)
        return described

    def run(self, machine: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.wait(self.start(machine, payload))

    def serving(self) -> str:
        current = read_current(self.s3, self.settings.bucket)
        return current.model if current else ""

    def alerts(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.alerts_queue, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


@contextmanager
def workflows(
    tmp_path: Path,
    bucket: str,
    table: str,
    handlers: dict[str, Any],
    env: dict[str, str] | None = None,
    retrain: bool = False,
) -> Iterator[Workflows]:
    """The index pipeline, the backfill and the model rollout (and with ``retrain``, the
    retraining workflow, its training jobs run by the caller's ``training_jobs``)."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=bucket)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition(table))
        sns, sqs = (boto3.client(n, region_name=REGION) for n in ("sns", "sqs"))
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        alerts = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=alerts, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"])
        settings = Settings.from_env(
            {
                "AWS_REGION": REGION,
                "IMGSEARCH_BUCKET": bucket,
                "IMGSEARCH_TABLE": table,
                "IMGSEARCH_ALERTS_TOPIC_ARN": topic,
                "IMGSEARCH_MODEL_URI": bundle_uri(),
                "IMGSEARCH_MODEL_CACHE_DIR": str(tmp_path / "models"),
                "IMGSEARCH_INDEX_CACHE_DIR": str(tmp_path / "indexes"),
                "IMGSEARCH_THREADS": "1",
                "IMGSEARCH_GATE_SAMPLE_QUERIES": "40",
                "IMGSEARCH_WRITE_MODELS_SECONDS": "0.3",
                "IMGSEARCH_INDEX_REFRESH_SECONDS": "1",
                "IMGSEARCH_DELETED_REFRESH_SECONDS": "0",
                **(env or {}),
            }
        )
        clients = Clients.for_settings(settings)
        routes = pipeline_routes(settings, clients, handlers=handlers)
        with nested_executions(), install_lambda_dispatch(routes):
            sfn, lambda_, iam = (
                boto3.client(n, region_name=REGION) for n in ("stepfunctions", "lambda", "iam")
            )
            machines = create_rollout_machines(
                sfn, lambda_, iam, ROOT / "statemachine", topic, bucket
            )
            if retrain:
                machines["retrain"] = create_state_machine(
                    sfn, lambda_, iam, ROOT / "statemachine/retrain.asl.json",
                    {"TrainingImageUri": "local", "TrainingInstanceType": "ml.m5.large",
                     "TrainingRoleArn": "arn:aws:iam::123456789012:role/training",
                     "ModelRolloutStateMachineArn": machines["rollout"]}, name="retrain",
                )  # fmt: skip
            yield Workflows(s3, sfn, sqs, dynamodb, settings, clients, machines, alerts)


def seed_index(stack: Workflows) -> None:
    """Embed what the bucket holds (the backfill) and publish its index (the pipeline)."""
    assert stack.run("backfill", {})["status"] == "SUCCEEDED"
    assert stack.run("index", {})["status"] == "SUCCEEDED"
