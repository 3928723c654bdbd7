"""``imgsearch stats``: what the stack holds and how far behind it is.

One scan of the embeddings table (model, status, reason and timestamps only), the two queues'
depths, ``indexes/current.json`` and when the next scheduled build runs::

    stats = collect(target, on_items=bar.update)     # bar: a progress bar over the scan
    stats.embedded, stats.pending, stats.queue_depth, stats.index_version
    stats.images               # "s3://my-photos/images/": where the counted images are
    stats.as_dict()            # what ``imgsearch stats --json`` prints

A large table costs a full scan; ``collect(target, approximate=True)`` reads DynamoDB's own item
count instead (``DescribeTable``'s ``ItemCount``, which AWS refreshes about every six hours).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from imgsearch.catalog.current import CurrentIndex, read_current
from imgsearch.catalog.report import read_report
from imgsearch.core.clock import ISO_FORMAT
from imgsearch_devkit.ops.schedule import NextBuild, next_build
from imgsearch_devkit.target import Target

APPROXIMATE_NOTE = "DynamoDB's ItemCount: every status and model, refreshed about every 6 hours"


@dataclass(frozen=True)
class ModelCounts:
    embedded: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    pending: int = 0
    """Embedded since the serving index's snapshot began: the next build takes them."""
    pending_deleted: int = 0
    """Deleted since then: the next build drops them (the API already hides them)."""


@dataclass(frozen=True)
class StackStats:
    model: str
    """The model the counts are for: the serving index's, else every model's sum."""
    embedded: int | None
    """``None`` with ``approximate``: the table was not scanned."""
    quarantined: dict[str, int]
    """Reason -> images quarantined for it."""
    deleted: int | None
    pending: int | None
    pending_deleted: int | None
    queue_depth: int
    """Ingest messages waiting (visible)."""
    queue_in_flight: int
    """Ingest messages being handled (received, not yet deleted)."""
    dlq_depth: int
    # The serving index, under the names of the API's ``GET /version``.
    index_version: str | None
    image_count: int | None
    built_at: str | None
    published_at: str | None
    index_age_seconds: float | None
    next_build: NextBuild | None
    """The next scheduled pipeline run; ``None``: no schedule."""
    models: dict[str, ModelCounts]
    images: str = ""
    """``s3://<image bucket>/<prefix>``: the user's own bucket with ``ExistingBucketName``."""
    approximate: bool = False
    item_count: int | None = None
    """Every item of the table (``approximate`` only), as DynamoDB last counted them."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def approximate_item_count(dynamodb: Any, table: str) -> int:
    """DynamoDB's item count of ``table`` (AWS refreshes it about every six hours)."""
    return int(dynamodb.describe_table(TableName=table)["Table"].get("ItemCount", 0))


def count_table(
    dynamodb: Any,
    table: str,
    since: str = "",
    on_items: Callable[[int], None] | None = None,
) -> dict[str, ModelCounts]:
    """Per model: ok items, quarantined items by reason, tombstones, and those of them written
    after ``since`` (ISO 8601; empty: none pending). One projected scan; ``on_items(n)`` after
    each page."""
    counts: dict[str, Counter[str]] = {}
    reasons: dict[str, Counter[str]] = {}
    paginator = dynamodb.get_paginator("scan")
    pages = paginator.paginate(
        TableName=table,
        ProjectionExpression="#m, #s, reason, updated_at, deleted_at",
        ExpressionAttributeNames={"#m": "model", "#s": "status"},
    )
    for page in pages:
        items = page.get("Items", [])
        for item in items:
            model = item["model"]["S"]
            status = item.get("status", {}).get("S", "")
            tally = counts.setdefault(model, Counter())
            reasons.setdefault(model, Counter())
            if status == "ok":
                tally["embedded"] += 1
                if since and item.get("updated_at", {}).get("S", "") > since:
                    tally["pending"] += 1
            elif status == "quarantined":
                reasons[model][item.get("reason", {}).get("S", "unknown")] += 1
            elif status == "deleted":
                tally["deleted"] += 1
                if since and item.get("deleted_at", {}).get("S", "") > since:
                    tally["pending_deleted"] += 1
        if on_items:
            on_items(len(items))
    return {
        model: ModelCounts(
            embedded=counts[model]["embedded"],
            quarantined=dict(sorted(reasons[model].items())),
            deleted=counts[model]["deleted"],
            pending=counts[model]["pending"],
            pending_deleted=counts[model]["pending_deleted"],
        )
        for model in sorted(counts)
    }


def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages; (0, 0) when the stack has no such queue."""
    if not url:
        return 0, 0
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def _parse(timestamp: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _age_seconds(timestamp: str, now: datetime) -> float | None:
    moment = _parse(timestamp)
    return round((now - moment).total_seconds(), 1) if moment else None


def snapshot_started_at(s3: Any, bucket: str, prefix: str, current: CurrentIndex) -> str:
    """When the serving index's snapshot scan began (``ISO_FORMAT``): items written later are
    not in it. From its report; an index without one falls back to its build time."""
    report = read_report(s3, bucket, prefix, current.version)
    taken = _parse(report.snapshot.taken_at) if report else None
    if taken is None or report is None:
        return current.built_at
    return (taken - timedelta(seconds=report.snapshot.scan_seconds)).strftime(ISO_FORMAT)


def _sum(models: dict[str, ModelCounts]) -> ModelCounts:
    quarantined: Counter[str] = Counter()
    for per_model in models.values():
        quarantined.update(per_model.quarantined)
    return ModelCounts(
        embedded=sum(m.embedded for m in models.values()),
        quarantined=dict(sorted(quarantined.items())),
        deleted=sum(m.deleted for m in models.values()),
    )


def collect(
    target: Target,
    now: datetime | None = None,
    approximate: bool = False,
    on_items: Callable[[int], None] | None = None,
) -> StackStats:
    """The stack's figures; ``approximate`` skips the scan (DynamoDB's item count instead)."""
    now = now or datetime.now(UTC)
    settings = target.settings()
    sqs, s3, dynamodb = target.client("sqs"), target.client("s3"), target.client("dynamodb")
    current = read_current(s3, target.bucket, settings.index.prefix)
    visible, in_flight = queue_depth(sqs, target.queue_url)
    dlq_visible, dlq_in_flight = queue_depth(sqs, target.dlq_url)
    models: dict[str, ModelCounts] = {}
    item_count = None
    if approximate:
        item_count = approximate_item_count(dynamodb, target.table)
    else:
        since = (
            snapshot_started_at(s3, target.bucket, settings.index.prefix, current)
            if current
            else ""
        )
        models = count_table(dynamodb, target.table, since=since, on_items=on_items)
    if current:
        model = current.model
        counts = models.get(model, ModelCounts())
    else:
        model = "*"
        counts = _sum(models)
    served_since = (current.published_at or current.built_at) if current else None
    scanned = not approximate
    return StackStats(
        model=model,
        embedded=counts.embedded if scanned else None,
        quarantined=counts.quarantined,
        deleted=counts.deleted if scanned else None,
        # With no index yet, everything embedded waits for the first build.
        pending=(counts.pending if current else counts.embedded) if scanned else None,
        pending_deleted=counts.pending_deleted if scanned else None,
        queue_depth=visible,
        queue_in_flight=in_flight,
        dlq_depth=dlq_visible + dlq_in_flight,
        index_version=current.version if current else None,
        image_count=current.count if current else None,
        built_at=current.built_at if current else None,
        published_at=(current.published_at or None) if current else None,
        index_age_seconds=_age_seconds(served_since, now) if served_since else None,
        next_build=next_build(target, now),
        models=models,
        images=f"s3://{target.image_bucket}/{target.image_prefix}",
        approximate=approximate,
        item_count=item_count,
    )
