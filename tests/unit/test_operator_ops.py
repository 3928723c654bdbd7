"""The operator actions on a stack (``imgsearch_devkit.ops``) against moto, and the AWS-only
paths (SQS's message move task, EventBridge Scheduler) against botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from imgsearch_devkit.cli.stats import render
from imgsearch_devkit.ops.dlq import RedriveError, move_task, redrive
from imgsearch_devkit.ops.quarantine import quarantined
from imgsearch_devkit.ops.schedule import NextBuild, deployed_schedule, next_build, next_rate_run
from imgsearch_devkit.ops.stats import collect, count_table
from imgsearch_devkit.target import Target
from moto import mock_aws

from imgsearch.catalog.current import CurrentIndex, write_current
from imgsearch.core.clock import ISO_FORMAT
from imgsearch.store.schema import table_definition

MODEL = "demo-clip@1"
BUILT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def at(moment: datetime) -> str:
    return moment.strftime(ISO_FORMAT)


def item(key: str, status: str, moment: datetime, **extra: Any) -> dict[str, Any]:
    row = {
        "key": {"S": key},
        "model": {"S": MODEL},
        "id": {"N": "1"},
        "status": {"S": status},
        "updated_at": {"S": at(moment)},
    }
    if status == "deleted":
        row["deleted_at"] = {"S": at(moment)}
    for name, value in extra.items():
        row[name] = {"N": str(value)} if isinstance(value, int) else {"S": value}
    return row


@pytest.fixture
def stack() -> Iterator[Target]:
    """A bucket, table and two queues as a deployed stack has them; 4 images indexed at
    ``BUILT``, 2 embedded and 1 deleted since, 2 refused."""
    with mock_aws():
        target = Target(region="us-east-1", bucket="imgs", table="emb", stack="imgsearch-test")
        s3, dynamodb, sqs = (target.client(s) for s in ("s3", "dynamodb", "sqs"))
        s3.create_bucket(Bucket="imgs")
        dynamodb.create_table(**table_definition("emb"))
        before, after = BUILT - timedelta(hours=1), BUILT + timedelta(minutes=5)
        rows = [item(f"images/old{i}.jpg", "ok", before) for i in range(4)]
        rows += [item("images/new0.jpg", "ok", after), item("images/new1.jpg", "ok", after)]
        rows += [item("images/gone.jpg", "deleted", after)]
        rows += [
            item("images/a.txt.jpg", "quarantined", before, reason="not_an_image", size=10),
            item("images/huge.png", "quarantined", after, reason="too_large", size=99),
        ]
        for row in rows:
            dynamodb.put_item(TableName="emb", Item=row)
        current = CurrentIndex(version="v1", model=MODEL, count=4, built_at=at(BUILT))
        write_current(s3, "imgs", current, None)
        queue = sqs.create_queue(QueueName="ingest")["QueueUrl"]
        dlq = sqs.create_queue(QueueName="ingest-dlq")["QueueUrl"]
        yield replace(target, queue_url=queue, dlq_url=dlq)


def test_stats_say_what_waits_for_the_next_build(stack: Target) -> None:
    scanned: list[int] = []
    stats = collect(stack, now=BUILT + timedelta(hours=1), on_items=scanned.append)
    assert (stats.embedded, stats.image_count) == (6, 4)
    assert (stats.pending, stats.pending_deleted) == (2, 1)
    assert stats.quarantined == {"not_an_image": 1, "too_large": 1}
    assert sum(scanned) == 9  # progress: every item the scan read
    text = render(stats)
    assert "not indexed  2  (embedded since the serving index's snapshot" in text
    assert "drops 1 deleted since" in text
    # moto's CloudFormation holds no such stack: the schedule is unknown, and says why.
    assert "next build   unknown: cannot read the schedule (" in text


def test_stats_json_uses_the_api_names(stack: Target) -> None:
    data = collect(stack).as_dict()
    assert {"index_version", "image_count", "built_at", "published_at"} <= data.keys()
    assert data["index_version"] == "v1" and data["built_at"] == at(BUILT)


def test_approximate_stats_read_the_item_count_without_a_scan(stack: Target) -> None:
    scanned: list[int] = []
    stats = collect(stack, approximate=True, on_items=scanned.append)
    assert scanned == [] and stats.embedded is None and stats.item_count == 9
    assert "~9  (DynamoDB's ItemCount: every status and model, refreshed about every 6 hours)" in (
        render(stats)
    )


def test_count_table_without_an_index_has_nothing_pending(stack: Target) -> None:
    counts = count_table(stack.client("dynamodb"), "emb")
    assert counts[MODEL].embedded == 6 and counts[MODEL].pending == 0


def test_quarantine_list_filters_by_reason(stack: Target) -> None:
    dynamodb = stack.client("dynamodb")
    everything = sorted(quarantined(dynamodb, "emb"), key=lambda q: q.key)
    assert [(q.key, q.reason, q.size) for q in everything] == [
        ("images/a.txt.jpg", "not_an_image", 10),
        ("images/huge.png", "too_large", 99),
    ]
    scanned: list[int] = []
    large = list(quarantined(dynamodb, "emb", reason="too_large", on_scanned=scanned.append))
    assert [q.key for q in large] == ["images/huge.png"] and sum(scanned) == 9
    assert large[0].updated_at == at(BUILT + timedelta(minutes=5))


def test_the_redrive_loop_reports_progress(stack: Target) -> None:
    sqs = stack.client("sqs")
    for i in range(12):
        sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=f"m{i}")
    seen: list[tuple[int, int | None]] = []
    assert redrive(sqs, stack.dlq_url, stack.queue_url, on_progress=lambda *a: seen.append(a)) == 12
    assert seen == [(10, 12), (12, 12)]


def stubbed_sqs() -> tuple[Any, Stubber]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    stub = Stubber(sqs)
    for name in ("dlq", "ingest"):
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"QueueArn": f"arn:aws:sqs:us-east-1:1:{name}"}},
            {"QueueUrl": f"https://sqs/{name}", "AttributeNames": ["QueueArn"]},
        )
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "handle"},
        {
            "SourceArn": "arn:aws:sqs:us-east-1:1:dlq",
            "DestinationArn": "arn:aws:sqs:us-east-1:1:ingest",
        },
    )
    return sqs, stub


def move_status(status: str, moved: int, **extra: Any) -> dict[str, Any]:
    return {
        "Results": [
            {
                "Status": status,
                "ApproximateNumberOfMessagesMoved": moved,
                "ApproximateNumberOfMessagesToMove": 30,
                "SourceArn": "arn:aws:sqs:us-east-1:1:dlq",
                **extra,
            }
        ]
    }


LIST_TASKS = {"SourceArn": "arn:aws:sqs:us-east-1:1:dlq", "MaxResults": 1}


def test_a_deployed_redrive_is_sqs_own_move_task() -> None:
    sqs, stub = stubbed_sqs()
    stub.add_response("list_message_move_tasks", move_status("RUNNING", 10), LIST_TASKS)
    stub.add_response("list_message_move_tasks", move_status("COMPLETED", 30), LIST_TASKS)
    seen: list[tuple[int, int | None]] = []
    with stub:
        moved = move_task(
            sqs, "https://sqs/dlq", "https://sqs/ingest",
            on_progress=lambda *a: seen.append(a), sleep=lambda _: None,
        )  # fmt: skip
    stub.assert_no_pending_responses()
    assert moved == 30 and seen == [(10, 30), (30, 30)]


def test_a_failed_move_task_is_an_error() -> None:
    sqs, stub = stubbed_sqs()
    stub.add_response(
        "list_message_move_tasks",
        move_status("FAILED", 3, FailureReason="AccessDenied on kms:Decrypt"),
        LIST_TASKS,
    )
    with stub, pytest.raises(RedriveError, match="failed after 3: AccessDenied on kms:Decrypt"):
        move_task(sqs, "https://sqs/dlq", "https://sqs/ingest", sleep=lambda _: None)


def test_the_next_build_of_a_deployed_stack_comes_from_its_schedule() -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    scheduler = boto3.client("scheduler", region_name="us-east-1")
    created = datetime(2025, 1, 1, 10, 7, tzinfo=UTC)
    with Stubber(cloudformation) as cfn, Stubber(scheduler) as sch:
        cfn.add_response(
            "describe_stack_resource",
            {
                "StackResourceDetail": {
                    "LogicalResourceId": "IndexPipelineRebuild",
                    "PhysicalResourceId": "imgsearch-prod-IndexPipelineRebuild-X1",
                    "ResourceType": "AWS::Scheduler::Schedule",
                    "LastUpdatedTimestamp": created,
                    "ResourceStatus": "CREATE_COMPLETE",
                }
            },
            {"StackName": "imgsearch-prod", "LogicalResourceId": "IndexPipelineRebuild"},
        )
        sch.add_response(
            "get_schedule",
            {
                "Name": "imgsearch-prod-IndexPipelineRebuild-X1",
                "ScheduleExpression": "rate(60 minutes)",
                "State": "ENABLED",
                "CreationDate": created,
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "Target": {"Arn": "arn:aws:states:::x", "RoleArn": "arn:aws:iam::1:role/r"},
            },
            {"Name": "imgsearch-prod-IndexPipelineRebuild-X1"},
        )
        upcoming = deployed_schedule(cloudformation, scheduler, "imgsearch-prod", BUILT)
    assert upcoming == NextBuild("rate(60 minutes)", True, "2025-01-01T12:07:00.000000Z", 3600)


def test_the_local_stack_schedule_is_its_interval() -> None:
    local = Target(region="us-east-1", bucket="b", table="t", aws_endpoint="http://127.0.0.1:1")
    assert next_build(local) is None
    every = next_build(replace(local, schedule_seconds=60))
    assert every == NextBuild("every 60 s", True, None, 60)


def test_rate_ticks() -> None:
    anchor = datetime(2025, 1, 1, tzinfo=UTC)
    assert next_rate_run(anchor, 3600, anchor - timedelta(days=1)) == anchor
    assert next_rate_run(anchor, 3600, anchor) == anchor  # starting now
    assert next_rate_run(anchor, 3600, anchor + timedelta(minutes=61)) == anchor + timedelta(
        hours=2
    )
