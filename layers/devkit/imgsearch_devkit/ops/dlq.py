"""``imgsearch dlq redrive``: move dead-lettered messages back to the ingest queue.

SQS's own ``StartMessageMoveTask`` does the same on AWS, but moto does not implement it, and the
receive / send / delete loop below behaves the same everywhere: a message is deleted from the DLQ
only after its copy was accepted by the ingest queue, so nothing is lost (a crash in between
leaves a duplicate, which the embed function's version-aware writes absorb)::

    moved = redrive(sqs, dlq_url, queue_url)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Message attributes SQS returns that ``SendMessage`` accepts back as they are.
_ATTRIBUTE_FIELDS = (
    "DataType",
    "StringValue",
    "BinaryValue",
    "StringListValues",
    "BinaryListValues",
)


def redrive(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    limit: int | None = None,
    on_moved: Callable[[int], None] | None = None,
) -> int:
    """Move up to ``limit`` messages (all when ``None``); returns how many moved."""
    moved = 0
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
        if on_moved:
            on_moved(len(done))
        if sent.get("Failed"):
            failure = sent["Failed"][0]
            raise RuntimeError(
                f"the ingest queue refused {len(sent['Failed'])} message(s): "
                f"{failure.get('Code')}: {failure.get('Message')}"
            )
    return moved
