"""``imgsearch dlq redrive``: move dead-lettered messages back to the ingest queue.

On AWS, SQS moves them itself (``StartMessageMoveTask``, followed with
``ListMessageMoveTasks``); moto does not implement that, so the local stack, and a redrive of
at most ``limit`` messages (which a move task cannot do), use a receive / send / delete loop. A
message is deleted from the DLQ only after the ingest queue accepted its copy, so nothing is
lost (a crash in between leaves a duplicate, which the embed function's version-aware writes
absorb)::

    moved = redrive_target(target, on_progress=lambda moved, total: ...)
    moved = redrive(sqs, dlq_url, queue_url, limit=10)        # the loop
    moved = move_task(sqs, dlq_url, queue_url)                # SQS's own move task
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from imgsearch.core.errors import ImgsearchError
from imgsearch_devkit.ops.stats import queue_depth
from imgsearch_devkit.target import Target

Progress = Callable[[int, int | None], None]
"""``on_progress(moved so far, how many to move (None: unknown))``."""

MOVE_TASK_POLL_SECONDS = 2.0
# Message attributes SQS returns that ``SendMessage`` accepts back as they are.
_ATTRIBUTE_FIELDS = (
    "DataType",
    "StringValue",
    "BinaryValue",
    "StringListValues",
    "BinaryListValues",
)


class RedriveError(ImgsearchError):
    """The ingest queue refused messages, or SQS's move task failed."""


def redrive(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    limit: int | None = None,
    on_progress: Progress | None = None,
) -> int:
    """Move up to ``limit`` messages (all when ``None``) one batch at a time; returns how many
    moved."""
    moved = 0
    total = limit if limit is not None else sum(queue_depth(sqs, dlq_url))
    while limit is None or moved < limit:
        want = 10 if limit is None else min(10, limit - moved)
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=want,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            # Long enough to send the copies before another reader could see them again.
            VisibilityTimeout=60,
        ).get("Messages", [])
        if not messages:
            return moved
        entries = []
        for index, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            attributes = {
                name: {k: v for k, v in value.items() if k in _ATTRIBUTE_FIELDS}
                for name, value in message.get("MessageAttributes", {}).items()
            }
            if attributes:
                entry["MessageAttributes"] = attributes
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        accepted = {s["Id"] for s in sent.get("Successful", [])}
        done = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(messages)
            if str(i) in accepted
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=done)
        moved += len(done)
        if on_progress:
            on_progress(moved, max(total, moved))
        if sent.get("Failed"):
            failure = sent["Failed"][0]
            raise RedriveError(
                f"the ingest queue refused {len(sent['Failed'])} message(s): "
                f"{failure.get('Code')}: {failure.get('Message')}"
            )
    return moved


def queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def move_task(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    on_progress: Progress | None = None,
    poll_seconds: float = MOVE_TASK_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Start SQS's message move task from the DLQ to the ingest queue and follow it until it
    ends; returns how many messages it moved. Raises ``RedriveError`` if it fails or is
    cancelled."""
    source = queue_arn(sqs, dlq_url)
    sqs.start_message_move_task(SourceArn=source, DestinationArn=queue_arn(sqs, queue_url))
    while True:
        # The newest task of the source comes first; a finished one has no TaskHandle any more.
        results = sqs.list_message_move_tasks(SourceArn=source, MaxResults=1)["Results"]
        if not results:
            raise RedriveError(f"SQS lists no message move task for {source}")
        task = results[0]
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        to_move = task.get("ApproximateNumberOfMessagesToMove")
        if on_progress:
            on_progress(moved, None if to_move is None else int(to_move))
        status = task["Status"]
        if status == "COMPLETED":
            return moved
        if status in ("FAILED", "CANCELLED", "CANCELLING"):
            reason = task.get("FailureReason") or status.lower()
            raise RedriveError(f"the message move task {status.lower()} after {moved}: {reason}")
        sleep(poll_seconds)


def redrive_target(
    target: Target, limit: int | None = None, on_progress: Progress | None = None
) -> int:
    """Redrive ``target``'s DLQ: SQS's move task on AWS, the loop locally or with ``limit``."""
    if not (target.dlq_url and target.queue_url):
        raise RedriveError("the stack names no ingest queue or DLQ")
    sqs = target.client("sqs")
    if target.is_local or limit is not None:
        return redrive(sqs, target.dlq_url, target.queue_url, limit=limit, on_progress=on_progress)
    return move_task(sqs, target.dlq_url, target.queue_url, on_progress=on_progress)
