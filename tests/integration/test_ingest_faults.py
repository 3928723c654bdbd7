"""Fault injection: a few hundred uploads through SQS and the real embed handler, as Lambda's
event source mapping would drive it, with transient AWS failures injected into the handler's
own boto3 clients. Nothing may be lost, duplicated or resurrected.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from ingest_support import (
    BAD_KINDS,
    BUCKET,
    REGION,
    EmbedStack,
    bad_image,
    embed_stack,
    image_bytes,
    load_fixture,
)

from imgsearch.core.keys import decode_event_key, image_id
from imgsearch.model import embed_images

SEED = 20240504
FAULT_SHARE = 0.12
"""Share of the handler's S3/DynamoDB calls that fail (while faults are on for a batch)."""
FAULTY_RECEIVES = 2
"""Faults are injected only into batches whose messages were received at most this often, so
that every message but the poisoned ones succeeds before ``MAX_RECEIVES``."""
MAX_RECEIVES = 5


class FaultInjector:
    """Raises transient errors from the handler's clients, the way a throttled AWS would.

    Registered on botocore's ``before-parameter-build`` (before botocore's retries, so the error
    reaches our code as if every retry had failed) and on ``after-call`` for ``PutItem`` (the
    write happened but the answer was lost: the retry must see its own write and stop).
    """

    def __init__(self, seed: int, share: float, poisoned: set[str]) -> None:
        self.rng = random.Random(seed)
        self.share = share
        self.poisoned = poisoned
        self.enabled = False
        self.injected: Counter[str] = Counter()

    def attach(self, *clients: Any) -> None:
        for client in clients:
            client.meta.events.register("before-parameter-build", self.before)
            client.meta.events.register("after-call.dynamodb.PutItem", self.after_put)

    def _error(self, service: str, operation: str) -> Exception:
        choice = self.rng.random()
        if choice < 0.2:
            return ReadTimeoutError(endpoint_url=f"https://{service}.{REGION}.amazonaws.com")
        if choice < 0.3:
            return EndpointConnectionError(endpoint_url=f"https://{service}.{REGION}.amazonaws.com")
        code, status = {
            "s3": [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503)],
            "dynamodb": [
                ("ProvisionedThroughputExceededException", 400),
                ("ThrottlingException", 400),
                ("InternalServerError", 500),
            ],
        }[service][self.rng.randrange(3)]
        return ClientError(
            {
                "Error": {"Code": code, "Message": "injected"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            operation,
        )

    def before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        if model.name == "GetObject" and params.get("Key") in self.poisoned:
            self.injected["poisoned GetObject"] += 1
            raise self._error("s3", "GetObject")
        if self.enabled and self.rng.random() < self.share:
            self.injected[f"{service} {model.name}"] += 1
            raise self._error(service, model.name)

    def after_put(self, model: Any, **_: Any) -> None:
        if self.enabled and self.rng.random() < self.share / 2:
            self.injected["PutItem answer lost"] += 1
            raise ReadTimeoutError(endpoint_url=f"https://dynamodb.{REGION}.amazonaws.com")


@dataclass
class Scenario:
    """What was uploaded and what the table must hold once the queue has drained."""

    early: list[dict[str, Any] | str] = field(default_factory=list)
    late: list[dict[str, Any] | str] = field(default_factory=list)
    ok: dict[str, str] = field(default_factory=dict)
    """key -> sha256 of the bytes it must be embedded from."""
    quarantined: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    poisoned: set[str] = field(default_factory=set)
    data: dict[str, bytes] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)
    """key -> the key that first had the same bytes."""
    kinds: Counter[str] = field(default_factory=Counter)


def build_scenario(stack: EmbedStack, rng: random.Random) -> Scenario:
    up = stack.uploader
    plan = Scenario()

    def put(key: str, data: bytes, expect_ok: bool = True) -> dict[str, Any]:
        body = up.put(key, data)
        if expect_ok:
            plan.ok[key] = hashlib.sha256(data).hexdigest()
            plan.data[key] = data
        return body

    names = ["photo {n}.png", "cat+dog {n}.jpg", "café/ünïcode {n}.png", "日本/画像{n}.jpeg"]
    for n in range(150):  # good images, some with spaces, pluses and non-ASCII in their keys
        key = "images/" + names[n % len(names)].format(n=n)
        fmt = "JPEG" if key.endswith((".jpg", ".jpeg")) else "PNG"
        plan.early.append(put(key, image_bytes(1000 + n, 40, fmt)))
    plan.kinds["good"] = 150
    originals = list(plan.ok)
    for n in range(30):  # the same bytes under other keys
        source = originals[rng.randrange(len(originals))]
        key = f"images/copies/copy {n}.png"
        plan.early.append(put(key, plan.data[source]))
        plan.duplicates[key] = source
    plan.kinds["duplicate content"] = 30
    for kind in BAD_KINDS:
        for n in range(5):
            key = f"images/bad/{kind} {n}.png"
            plan.early.append(put(key, bad_image(kind, n), expect_ok=False))
            plan.quarantined[key] = kind
            plan.kinds[f"bad: {kind}"] += 1
    for n in range(5):  # gone before it is read; its delete was never notified
        key = f"images/bad/vanished {n}.png"
        plan.early.append(put(key, image_bytes(2000 + n), expect_ok=False))
        stack.s3.delete_object(Bucket=BUCKET, Key=key)
        plan.quarantined[key] = "object_missing"
        plan.kinds["bad: object_missing"] += 1
    for n in range(15):  # put then delete; the delete arrives first
        key = f"images/deleted/{n}.png"
        first = put(key, image_bytes(3000 + n), expect_ok=False)
        plan.early.append(up.delete(key))
        plan.late.append(first)
        plan.deleted.add(key)
    plan.kinds["put then delete, delivered reversed"] = 15
    for n in range(10):  # put, delete, put again; delivered newest first
        key = f"images/reuploaded/{n}.png"
        first = put(key, image_bytes(4000 + n), expect_ok=False)
        removed = up.delete(key)
        plan.early.append(put(key, image_bytes(5000 + n)))
        plan.late.extend([removed, first])
    plan.kinds["put, delete, put, delivered reversed"] = 10
    for body in rng.sample(plan.early[:150], 25):  # redelivered copies of the same messages
        plan.late.append(body)
    plan.kinds["redelivered messages"] = 25
    for n in range(3):  # S3 always throttles these: they must end in the DLQ
        key = f"images/poisoned/{n}.png"
        plan.early.append(put(key, image_bytes(6000 + n), expect_ok=False))
        plan.poisoned.add(key)
    plan.kinds["poisoned (always throttled)"] = 3
    for n in range(5):
        plan.early.append(up.put(f"uploads/elsewhere {n}.png", image_bytes(7000 + n)))
        plan.early.append(up.put(f"images/notes {n}.txt", b"not an image key"))
    plan.kinds["outside prefix or not an image key"] = 10
    plan.early.append(json.dumps(load_fixture("s3-test-event.json")))
    plan.kinds["s3:TestEvent"] = 1
    rng.shuffle(plan.early)
    rng.shuffle(plan.late)
    return plan


def lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


@dataclass
class Queues:
    url: str
    arn: str
    dlq_url: str


def create_queues(sqs: Any) -> Queues:
    dlq_url = sqs.create_queue(QueueName="imgsearch-ingest-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName="imgsearch-ingest",
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
            ),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Queues(url, arn, dlq_url)


def send(sqs: Any, url: str, bodies: list[dict[str, Any] | str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": b if isinstance(b, str) else json.dumps(b)}
            for i, b in enumerate(bodies[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


@dataclass
class DrainStats:
    invocations: int = 0
    receives: int = 0
    failed_reports: int = 0


def drain(stack: EmbedStack, queues: Queues, injector: FaultInjector, stats: DrainStats) -> None:
    """Receive batches of 10, invoke the handler, delete what succeeded, release what failed."""
    sqs = stack.sqs
    while True:
        messages = sqs.receive_message(
            QueueUrl=queues.url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return
        stats.invocations += 1
        stats.receives += len(messages)
        receives = max(int(m["Attributes"]["ApproximateReceiveCount"]) for m in messages)
        injector.enabled = receives <= FAULTY_RECEIVES
        response = stack.invoke({"Records": [lambda_record(m, queues.arn) for m in messages]})
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        stats.failed_reports += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=queues.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        if retry:  # visible again at once instead of after the visibility timeout
            sqs.change_message_visibility_batch(
                QueueUrl=queues.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(retry)
                ],
            )


def dead_letters(sqs: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        found.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbedStack]:
    with embed_stack(tmp_path) as opened:
        yield opened


@pytest.mark.slow
def test_queue_drains_to_exactly_the_expected_table(
    stack: EmbedStack, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    queues = create_queues(stack.sqs)
    plan = build_scenario(stack, rng)
    injector = FaultInjector(SEED, FAULT_SHARE, plan.poisoned)
    injector.attach(stack.handler_clients.s3, stack.handler_clients.dynamodb)
    stats = DrainStats()

    send(stack.sqs, queues.url, plan.early)
    drain(stack, queues, injector, stats)
    send(stack.sqs, queues.url, plan.late)
    drain(stack, queues, injector, stats)
    dlq = dead_letters(stack.sqs, queues.dlq_url)
    capsys.readouterr()  # the handler's logs and metrics: not part of the summary

    items = stack.items()
    model = stack.model_id
    assert {m for _, m in items} == {model}
    by_status: dict[str, dict[str, Any]] = {"ok": {}, "quarantined": {}, "deleted": {}}
    for (key, _), record in items.items():
        by_status[record.status][key] = record
    assert {k: r.sha256 for k, r in by_status["ok"].items()} == plan.ok
    assert {k: r.reason for k, r in by_status["quarantined"].items()} == plan.quarantined
    assert set(by_status["deleted"]) == plan.deleted
    for key, record in items.items():
        assert record.id == image_id(key[0])
    for record in by_status["ok"].values():
        assert record.vector is not None and record.vector.shape == (stack.ingestor.model.dim,)
    for key, source in plan.duplicates.items():
        np.testing.assert_array_equal(by_status["ok"][key].vector, by_status["ok"][source].vector)
    sample = sorted(plan.ok)[:: max(1, len(plan.ok) // 8)]
    fresh = embed_images(
        stack.ingestor.model, [plan.data[k] for k in sample], stack.ingestor.limits
    )
    for key, vector in zip(sample, fresh, strict=True):
        np.testing.assert_allclose(by_status["ok"][key].vector, vector, atol=2e-3)

    dead_keys = sorted(
        record["s3"]["object"]["key"] for m in dlq for record in json.loads(m["Body"])["Records"]
    )
    assert [decode_event_key(k) for k in dead_keys] == sorted(plan.poisoned)
    remaining = stack.sqs.get_queue_attributes(QueueUrl=queues.url, AttributeNames=["All"])
    assert remaining["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert remaining["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"

    summary = {
        "uploads": dict(plan.kinds),
        "messages sent": len(plan.early) + len(plan.late),
        "handler invocations": stats.invocations,
        "messages received (with redeliveries)": stats.receives,
        "messages reported failed": stats.failed_reports,
        "faults injected": dict(injector.injected),
        "table ok": len(by_status["ok"]),
        "table quarantined": dict(Counter(r.reason for r in by_status["quarantined"].values())),
        "table deleted (tombstones)": len(by_status["deleted"]),
        "dead-letter queue": len(dlq),
    }
    with capsys.disabled():
        print("\ningest fault injection:", json.dumps(summary, indent=2, ensure_ascii=False))
