"""The index pipeline's test stack: moto resources, the real ASL and the real handlers.

Stored embeddings are four kinds of "image" (red/blue x circle/square), each the tiny test
bundle's text embedding of its caption plus noise, so the golden set's text queries have known
answers and the Validate step measures real retrieval figures::

    with running_stack(pipeline_environment(bundle, tmp_path), bundle) as (stack, dispatch):
        stack.put_images()
        result = stack.run({"force": True})
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from imgsearch_devkit.local.lambda_dispatch import (
    Handler,
    LambdaDispatch,
    create_state_machine,
    install_lambda_dispatch,
    pipeline_routes,
    register_functions,
)
from moto import mock_aws

from imgsearch.catalog.current import read_current
from imgsearch.core.aws import Clients
from imgsearch.core.clock import now_iso
from imgsearch.core.config import Settings
from imgsearch.core.keys import image_id
from imgsearch.model import ClipModel
from imgsearch.store import EmbeddingRecord, EmbeddingStore, table_definition

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "statemachine" / "index_pipeline.asl.json"
BUCKET = "imgsearch-pipeline-test"
TABLE = "imgsearch-pipeline-embeddings"
REGION = "us-east-1"
KINDS = ("red circle", "red square", "blue circle", "blue square")
PER_KIND = 40


def pipeline_environment(bundle: Path, folder: Path) -> dict[str, str]:
    """The handlers' configuration, as the template gives it to the functions."""
    return {
        "IMGSEARCH_BUCKET": BUCKET,
        "IMGSEARCH_TABLE": TABLE,
        "IMGSEARCH_ALERTS_TOPIC_ARN": f"arn:aws:sns:{REGION}:123456789012:imgsearch-alerts",
        "IMGSEARCH_MODEL_URI": str(bundle),
        "IMGSEARCH_MODEL_CACHE_DIR": str(folder / "models"),
        "IMGSEARCH_THREADS": "2",
        "IMGSEARCH_SCAN_SEGMENTS": "3",
        "IMGSEARCH_GATE_SAMPLE_QUERIES": "60",
        "IMGSEARCH_INDEX_KEEP_VERSIONS": "2",
    }


class Stack:
    """moto resources, the state machine and the dispatch of its tasks to the real handlers."""

    def __init__(self, bundle: Path, environment: dict[str, str]) -> None:
        self.environment = environment
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.lambda_ = boto3.client("lambda", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        iam = boto3.client("iam", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition(TABLE))
        self.store = EmbeddingStore(TABLE, dynamodb)
        self.topic = self.sns.create_topic(Name="imgsearch-alerts")["TopicArn"]
        # An SQS subscription lets the test read what the alerts topic received.
        self.alerts_queue = self.sqs.create_queue(QueueName="alerts")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.alerts_queue, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)
        # Not a state of the pipeline: its own function (and the CLI's command).
        register_functions(
            self.lambda_, iam, {"RollbackIndexFunction": "rollback_index.app.handler"}
        )
        self.arn = create_state_machine(
            self.sfn, self.lambda_, iam, DEFINITION, {"AlertsTopicArn": self.topic}
        )
        self.model = ClipModel.load(bundle)
        self.runs = 0

    def put_images(
        self, kinds: tuple[str, ...] = KINDS, per_kind: int = PER_KIND, copies: int = 0
    ) -> None:
        """``per_kind`` images of each kind, and ``copies`` more of each under
        ``images/copies/<n>/`` (the same photo uploaded again: the same vector, exact ties)."""
        rng = np.random.default_rng(len(kinds) * per_kind)
        centres = self.model.encode_text(list(kinds))
        for kind, centre in zip(kinds, centres, strict=True):
            for n in range(per_kind):
                name = f"{kind.replace(' ', '-')}/{n:03d}.png"
                vector = centre + 0.5 * rng.standard_normal(centre.shape) / np.sqrt(len(centre))
                for copy in range(copies + 1):
                    key = f"images/{name}" if copy == 0 else f"images/copies/{copy}/{name}"
                    self.store.put(
                        EmbeddingRecord(
                            key=key,
                            model=self.model.model_id,
                            id=image_id(key),
                            status="ok",
                            sequencer="1",
                            updated_at=now_iso(),
                            vector=vector / np.linalg.norm(vector),
                        )
                    )

    def put_golden(self, kinds: tuple[str, ...] = KINDS) -> None:
        lines = [
            json.dumps(
                {
                    "query": kind,
                    "relevant": [
                        f"images/{kind.replace(' ', '-')}/{n:03d}.png" for n in range(PER_KIND)
                    ],
                }
            )
            for kind in kinds
        ]
        self.s3.put_object(Bucket=BUCKET, Key="eval/golden.jsonl", Body="\n".join(lines).encode())

    def start(self, payload: dict[str, Any] | None = None, name: str = "") -> str:
        self.runs += 1
        return self.sfn.start_execution(
            stateMachineArn=self.arn,
            name=name or f"run-{self.runs}",
            input=json.dumps(payload or {}),
        )["executionArn"]

    def wait(self, execution: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.1)
        raise AssertionError(f"execution {execution} still running after {timeout} s")

    def run(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.wait(self.start(payload))

    def current_version(self) -> str | None:
        current = read_current(self.s3, BUCKET)
        return current.version if current else None

    def report(self, version: str) -> dict[str, Any]:
        body = self.s3.get_object(Bucket=BUCKET, Key=f"indexes/{version}/report.json")["Body"]
        return json.loads(body.read())

    def alerts(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(
            QueueUrl=self.alerts_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def routes(self, **overrides: str) -> dict[str, Handler]:
        """The real handlers, built with this test's settings (and ``overrides`` of them)."""
        settings = Settings.from_env({**self.environment, **overrides})
        return pipeline_routes(settings, Clients.for_settings(settings))


@contextmanager
def running_stack(
    environment: dict[str, str], bundle: Path
) -> Iterator[tuple[Stack, LambdaDispatch]]:
    """moto (Step Functions running the ASL) with the stack's tasks routed to the handlers."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        stack = Stack(bundle, environment)
        with install_lambda_dispatch(stack.routes()) as dispatch:
            yield stack, dispatch


def history_states(stack: Stack, execution: str) -> list[str]:
    events = stack.sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    return [e["stateExitedEventDetails"]["name"] for e in events if "stateExitedEventDetails" in e]
