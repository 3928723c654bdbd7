"""Model cleanup: what archived and rejected models leave behind, once past their retention.

Handler ``model_cleanup.app.handler``, on EventBridge Scheduler once a day (the schedule sends
``{"trigger": "schedule"}``). ``{"dry_run": true}`` says what would go and removes nothing;
``{"now": ISO8601}`` judges the retention as of then. Emits ``CleanedModels``, ``CleanedItems``
and ``CleanedBytes``; returns each model's items, bytes and index versions. Logic lives in
``imgsearch.rollout.cleanup``; ``imgsearch model cleanup`` runs the same from a shell.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.clock import parse_iso
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.rollout.cleanup import cleanup_models
from imgsearch.store import EmbeddingStore


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket", "table")
    s3 = function.clients.s3
    store = EmbeddingStore(settings.table, function.clients.dynamodb)
    metrics = function.metrics

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        event = event or {}
        dry_run = bool(event.get("dry_run"))
        now = parse_iso(event["now"]) if event.get("now") else None
        removed = cleanup_models(settings, s3, store, now=now, dry_run=dry_run)
        # Every run reports, a dry run zeros (it removed nothing): the schedule shows as working.
        cleaned = [] if dry_run else removed
        metrics.add_metric(name="CleanedModels", unit=MetricUnit.Count, value=len(cleaned))
        items = sum(r.items for r in cleaned)
        metrics.add_metric(name="CleanedItems", unit=MetricUnit.Count, value=items)
        size = sum(r.bytes for r in cleaned)
        metrics.add_metric(name="CleanedBytes", unit=MetricUnit.Bytes, value=size)
        return {"dry_run": dry_run, "models": [r.dump() for r in removed]}

    return function.instrument(handler, metrics=True)


handler = lambda_entry(build)
