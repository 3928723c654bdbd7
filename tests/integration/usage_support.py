"""The usage log's AWS path on moto, for the tests of the log, feedback and the monitor: the
query and embed functions' log groups, the subscription filters that stream the usage records
to a Firehose delivery stream, and the stream writing to the stack's bucket under ``usage/``
(what template.yaml deploys), with ``UsageStream`` standing in for Lambda's capture of a
function's output::

    with usage_log(stack.s3, BUCKET) as stream:   # inside mock_aws
        ...                                       # handlers emit records
        stream.flush()
        records = read_window(stack.s3, BUCKET)   # every record of the last hour
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from imgsearch_devkit.local.usage_stream import UsageStream

from imgsearch.usage.reader import UsageReader
from imgsearch.usage.records import Record

REGION = "us-east-1"
QUERY_GROUP = "/aws/lambda/imgsearch-test/query"
EMBED_GROUP = "/aws/lambda/imgsearch-test/embed"
SECRET_NAME = "imgsearch-test-query-signing"


def create_signing_secret(value: str = "a-test-signing-key-of-enough-bytes") -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    return client.create_secret(Name=SECRET_NAME, SecretString=value)["ARN"]


@contextmanager
def usage_log(bucket: str, **stream_options: Any) -> Iterator[UsageStream]:
    logs = boto3.client("logs", region_name=REGION)
    firehose = boto3.client("firehose", region_name=REGION)
    firehose.create_delivery_stream(
        DeliveryStreamName="imgsearch-test-usage",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "Prefix": "usage/",
        },
    )
    arn = firehose.describe_delivery_stream(DeliveryStreamName="imgsearch-test-usage")[
        "DeliveryStreamDescription"
    ]["DeliveryStreamARN"]
    for group in (QUERY_GROUP, EMBED_GROUP):
        logs.create_log_group(logGroupName=group)
        logs.put_subscription_filter(
            logGroupName=group,
            filterName="usage",
            filterPattern='{ $.usage = "*" }',
            destinationArn=arn,
            roleArn="arn:aws:iam::123456789012:role/logs",
        )
    groups = {"search": QUERY_GROUP, "feedback": QUERY_GROUP, "ingest": EMBED_GROUP}
    stream = UsageStream(logs, groups, **stream_options)
    with stream.installed():
        yield stream


def read_window(
    s3: Any, bucket: str, start: datetime | None = None, end: datetime | None = None
) -> list[Record]:
    now = datetime.now(UTC)
    reader = UsageReader(s3, bucket, "usage/")
    return list(
        reader.records(start or now - timedelta(hours=1), end or now + timedelta(seconds=1))
    )


def feedback_event(query_id: str, key: str, event: str = "click", **extra: Any) -> str:
    return json.dumps({"query_id": query_id, "key": key, "event": event, **extra})
