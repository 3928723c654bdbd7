"""The backfill's test stack: a user's bucket filled before the stack exists, moto running the
real ``statemachine/backfill.asl.json`` (Distributed Map included) and the real handlers::

    with backfill_stack(tmp_path, fill=lambda s3: s3.put_object(...)) as stack:
        described = stack.run({"chunk_size": 3})
        stack.report(described)["embedded"]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import embed.app as embed_app
from imgsearch_devkit.local.lambda_dispatch import (
    BACKFILL_HANDLERS,
    LambdaDispatch,
    create_state_machine,
    install_lambda_dispatch,
    pipeline_routes,
)
from ingest_support import REGION, LambdaContext, Uploader, bundle_uri, sqs_event
from moto import mock_aws

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.store import EmbeddingRecord, EmbeddingStore, table_definition

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "statemachine" / "backfill.asl.json"
USER_BUCKET = "user-photos"
"""The user's bucket, with their images (read only)."""
SERVICE_BUCKET = "imgsearch-service"
"""The stack's own bucket: manifests, results, reports."""
TABLE = "imgsearch-backfill-embeddings"


@dataclass
class BackfillStack:
    s3: Any
    sfn: Any
    sqs: Any
    dynamodb: Any
    store: EmbeddingStore
    arn: str
    dispatch: LambdaDispatch
    settings: Settings
    alerts_queue: str
    embed: Any
    """The embed function's handler, for the S3 events that race with a backfill."""
    uploader: Uploader
    runs: int = 0

    @property
    def model_id(self) -> str:
        return str(self.embed.ingestor.model_id)

    def start(self, payload: dict[str, Any] | None = None) -> str:
        self.runs += 1
        return self.sfn.start_execution(
            stateMachineArn=self.arn, name=f"backfill-{self.runs}", input=json.dumps(payload or {})
        )["executionArn"]

    def wait(self, execution: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.1)
        raise AssertionError(f"execution {execution} still running after {timeout} s")

    def run(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.wait(self.start(payload))

    def report(self, described: dict[str, Any]) -> dict[str, Any]:
        key = f"backfill/{described['name']}/report.json"
        return json.loads(self.s3.get_object(Bucket=SERVICE_BUCKET, Key=key)["Body"].read())

    def items(self) -> dict[str, EmbeddingRecord]:
        found: dict[str, EmbeddingRecord] = {}
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=TABLE):
            for item in page["Items"]:
                record = EmbeddingRecord.from_item(item)
                found[record.key] = record
        return found

    def event(self, *bodies: dict[str, Any]) -> None:
        """Deliver S3 notifications to the embed function, as its SQS mapping would."""
        response = self.embed(sqs_event(*bodies), LambdaContext())
        assert response == {"batchItemFailures": []}, response

    def alerts(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(
            QueueUrl=self.alerts_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


@contextmanager
def backfill_stack(
    folder: Path, fill: Callable[[Any], None] = lambda s3: None, **environment: str
) -> Iterator[BackfillStack]:
    """moto with the user's bucket filled by ``fill`` first, then the stack's resources, the
    backfill state machine and its handlers (settings overridden by ``environment``)."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=USER_BUCKET)
        fill(s3)
        s3.create_bucket(Bucket=SERVICE_BUCKET)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition(TABLE))
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="imgsearch-alerts")["TopicArn"]
        alerts_queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=alerts_queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        settings = Settings.from_env(
            {
                "AWS_REGION": REGION,
                "IMGSEARCH_BUCKET": SERVICE_BUCKET,
                "IMGSEARCH_IMAGE_BUCKET": USER_BUCKET,
                "IMGSEARCH_TABLE": TABLE,
                "IMGSEARCH_ALERTS_TOPIC_ARN": topic,
                "IMGSEARCH_MODEL_URI": bundle_uri(),
                "IMGSEARCH_MODEL_CACHE_DIR": str(folder / "models"),
                "IMGSEARCH_THREADS": "1",
                **environment,
            }
        )
        clients = Clients.for_settings(settings)
        routes = pipeline_routes(settings, clients, handlers=BACKFILL_HANDLERS)
        with install_lambda_dispatch(routes) as dispatch:
            arn = create_state_machine(
                boto3.client("stepfunctions", region_name=REGION),
                boto3.client("lambda", region_name=REGION),
                boto3.client("iam", region_name=REGION),
                DEFINITION,
                {"ServiceBucket": SERVICE_BUCKET, "BackfillPrefix": settings.backfill.prefix},
                name="imgsearch-backfill",
            )
            yield BackfillStack(
                s3=s3,
                sfn=boto3.client("stepfunctions", region_name=REGION),
                sqs=sqs,
                dynamodb=dynamodb,
                store=EmbeddingStore(TABLE, dynamodb),
                arn=arn,
                dispatch=dispatch,
                settings=settings,
                alerts_queue=alerts_queue,
                embed=embed_app.build(settings, clients),
                uploader=Uploader(s3, USER_BUCKET),
            )
