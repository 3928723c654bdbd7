"""``imgsearch stats``: what the stack holds and how far behind it is.

One scan of the embeddings table (keys, model, status and reason only), the two queues' depths
and ``indexes/current.json``::

    stats = collect(target)
    stats.embedded, stats.quarantined, stats.queue_depth, stats.index_version
    stats.as_dict()            # what ``imgsearch stats --json`` prints
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from imgsearch.catalog.current import read_current
from imgsearch_devkit.target import Target


@dataclass(frozen=True)
class ModelCounts:
    embedded: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    deleted: int = 0


@dataclass(frozen=True)
class StackStats:
    model: str
    """The model the counts are for: the serving index's, else every model's sum."""
    embedded: int
    quarantined: dict[str, int]
    """Reason -> images quarantined for it."""
    deleted: int
    queue_depth: int
    """Ingest messages waiting (visible)."""
    queue_in_flight: int
    """Ingest messages being handled (received, not yet deleted)."""
    dlq_depth: int
    index_version: str | None
    index_count: int | None
    index_published_at: str | None
    index_age_seconds: float | None
    models: dict[str, ModelCounts]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_table(dynamodb: Any, table: str) -> dict[str, ModelCounts]:
    """Per model: ok items, quarantined items by reason, tombstones (one projected scan)."""
    embedded: Counter[str] = Counter()
    deleted: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    paginator = dynamodb.get_paginator("scan")
    pages = paginator.paginate(
        TableName=table,
        ProjectionExpression="#m, #s, reason",
        ExpressionAttributeNames={"#m": "model", "#s": "status"},
    )
    for page in pages:
        for item in page.get("Items", []):
            model = item["model"]["S"]
            status = item.get("status", {}).get("S", "")
            reasons.setdefault(model, Counter())
            if status == "ok":
                embedded[model] += 1
            elif status == "quarantined":
                reasons[model][item.get("reason", {}).get("S", "unknown")] += 1
            elif status == "deleted":
                deleted[model] += 1
    return {
        model: ModelCounts(embedded[model], dict(sorted(reasons[model].items())), deleted[model])
        for model in sorted(reasons)
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


def _age_seconds(timestamp: str, now: datetime) -> float | None:
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round((now - moment).total_seconds(), 1)


def collect(target: Target, now: datetime | None = None) -> StackStats:
    settings = target.settings()
    sqs = target.client("sqs")
    models = count_table(target.client("dynamodb"), target.table)
    current = read_current(target.client("s3"), target.bucket, settings.index.prefix)
    visible, in_flight = queue_depth(sqs, target.queue_url)
    dlq_visible, dlq_in_flight = queue_depth(sqs, target.dlq_url)
    if current:
        model = current.model
        counts = models.get(model, ModelCounts())
    else:
        model = "*"
        quarantined: Counter[str] = Counter()
        for per_model in models.values():
            quarantined.update(per_model.quarantined)
        counts = ModelCounts(
            embedded=sum(m.embedded for m in models.values()),
            quarantined=dict(sorted(quarantined.items())),
            deleted=sum(m.deleted for m in models.values()),
        )
    published = (current.published_at or current.built_at) if current else None
    return StackStats(
        model=model,
        embedded=counts.embedded,
        quarantined=counts.quarantined,
        deleted=counts.deleted,
        queue_depth=visible,
        queue_in_flight=in_flight,
        dlq_depth=dlq_visible + dlq_in_flight,
        index_version=current.version if current else None,
        index_count=current.count if current else None,
        index_published_at=published,
        index_age_seconds=_age_seconds(published, now or datetime.now(UTC)) if published else None,
        models=models,
    )
