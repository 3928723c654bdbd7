"""Typed reads and conditional writes of the embeddings table (DynamoDB).

A delete leaves a tombstone (no vector) rather than removing the item: it still holds the
sequencer, so a put event that arrives late, out of order, cannot bring the image back::

    store = EmbeddingStore("imgsearch-embeddings")
    store.put(record)            # False when the table already holds a newer or equal event
    store.put_if_unchanged(record, read)   # False when the item changed since it was read
    store.get("images/cat.jpg", "demo-clip@1")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from imgsearch.store.schema import (
    DELETIONS_INDEX,
    FRESH_INDEX,
    SHA256_INDEX,
    EmbeddingRecord,
    Status,
    decode_vector,
    fresh_shard,
)


class EmbeddingStore:
    """Typed access to the embeddings table through a low-level boto3 DynamoDB client."""

    def __init__(self, table: str, client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.table = table
        self.client = client

    def get(self, key: str, model: str, consistent: bool = True) -> EmbeddingRecord | None:
        response = self.client.get_item(
            TableName=self.table,
            Key={"key": {"S": key}, "model": {"S": model}},
            ConsistentRead=consistent,
        )
        return EmbeddingRecord.from_item(response["Item"]) if "Item" in response else None

    def batch_get(self, keys: Iterable[str], model: str) -> dict[str, EmbeddingRecord]:
        """Records by key (strongly consistent); missing keys are absent."""
        found: dict[str, EmbeddingRecord] = {}
        pending = list(dict.fromkeys(keys))
        while pending:
            chunk, pending = pending[:100], pending[100:]
            request: dict[str, Any] = {
                "Keys": [{"key": {"S": k}, "model": {"S": model}} for k in chunk],
                "ConsistentRead": True,
            }
            unprocessed: dict[str, Any] = {self.table: request}
            while unprocessed:
                response = self.client.batch_get_item(RequestItems=unprocessed)
                for item in response.get("Responses", {}).get(self.table, []):
                    record = EmbeddingRecord.from_item(item)
                    found[record.key] = record
                unprocessed = response.get("UnprocessedKeys") or {}
        return found

    def put(self, record: EmbeddingRecord) -> bool:
        """Write unless the table holds an event at least as new (same or newer sequencer)."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=record.to_item(),
                ConditionExpression="attribute_not_exists(#k) OR #s < :s",
                ExpressionAttributeNames={"#k": "key", "#s": "sequencer"},
                ExpressionAttributeValues={":s": {"S": record.sequencer}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def put_if_unchanged(self, record: EmbeddingRecord, read: EmbeddingRecord | None) -> bool:
        """Write only if the item is still what ``read`` was (absent when ``None``).

        The backfill's write: it decided from the item it read, so any write since (an S3
        event's put or tombstone) changed ``sequencer`` or ``updated_at`` and wins.
        """
        if read is None:
            condition: dict[str, Any] = {
                "ConditionExpression": "attribute_not_exists(#k)",
                "ExpressionAttributeNames": {"#k": "key"},
            }
        else:
            condition = {
                "ConditionExpression": "#s = :s AND #u = :u",
                "ExpressionAttributeNames": {"#s": "sequencer", "#u": "updated_at"},
                "ExpressionAttributeValues": {
                    ":s": {"S": read.sequencer},
                    ":u": {"S": read.updated_at},
                },
            }
        try:
            self.client.put_item(TableName=self.table, Item=record.to_item(), **condition)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def models_for_key(self, key: str) -> list[str]:
        response = self.client.query(
            TableName=self.table,
            KeyConditionExpression="#k = :k",
            ExpressionAttributeNames={"#k": "key", "#m": "model"},
            ExpressionAttributeValues={":k": {"S": key}},
            ProjectionExpression="#m",
            ConsistentRead=True,
        )
        return [item["model"]["S"] for item in response.get("Items", [])]

    def delete_model(self, model: str, segments: int = 4) -> tuple[int, int]:
        """Remove every item of ``model`` (a parallel scan, batch deletes); (items, bytes of
        vectors) removed. For an archived model's cleanup: nothing may still serve it."""
        items = size = 0
        for segment in range(segments):
            for page in self.scan_pages(model, segment, segments, status=None):
                for start in range(0, len(page), 25):
                    batch = page[start : start + 25]
                    pending: dict[str, Any] = {
                        self.table: [
                            {"DeleteRequest": {"Key": {"key": {"S": r.key}, "model": {"S": model}}}}
                            for r in batch
                        ]
                    }
                    while pending:
                        response = self.client.batch_write_item(RequestItems=pending)
                        pending = response.get("UnprocessedItems") or {}
                    items += len(batch)
                    size += sum(2 * r.vector.size for r in batch if r.vector is not None)
        return items, size

    def find_by_sha256(self, sha256: str, model: str) -> EmbeddingRecord | None:
        """An ``ok`` record of the same bytes under any key (the GSI is eventually consistent)."""
        response = self.client.query(
            TableName=self.table,
            IndexName=SHA256_INDEX,
            KeyConditionExpression="sha256 = :h AND #m = :m",
            ExpressionAttributeNames={"#m": "model"},
            ExpressionAttributeValues={":h": {"S": sha256}, ":m": {"S": model}},
        )
        for item in response.get("Items", []):
            record = self.get(item["key"]["S"], model, consistent=False)
            if record and record.status == "ok" and record.sha256 == sha256:
                return record
        return None

    def scan_pages(
        self,
        model: str,
        segment: int = 0,
        total_segments: int = 1,
        status: Status | None = "ok",
        page_size: int = 1000,
    ) -> Iterator[list[EmbeddingRecord]]:
        """One segment of a parallel scan, a page at a time (bounded memory). Strongly
        consistent: every write made before the scan began is read (the fresh segment
        relies on it)."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "Segment": segment,
            "TotalSegments": total_segments,
            "Limit": page_size,
            "FilterExpression": "#m = :m",
            "ExpressionAttributeNames": {"#m": "model"},
            "ExpressionAttributeValues": {":m": {"S": model}},
        }
        if status:
            request["FilterExpression"] += " AND #st = :st"
            request["ExpressionAttributeNames"]["#st"] = "status"
            request["ExpressionAttributeValues"][":st"] = {"S": status}
        while True:
            response = self.client.scan(**request)
            items = response.get("Items", [])
            if items:
                yield [EmbeddingRecord.from_item(item) for item in items]
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def deleted_since(self, model: str, since: str = "") -> Iterator[tuple[str, str]]:
        """(key, deleted_at) of tombstones written after ``since`` (ISO time), oldest first."""
        for item in self._query_after(DELETIONS_INDEX, ("model", model), "deleted_at", since):
            yield item["key"]["S"], item["deleted_at"]["S"]

    def embedded_since(self, model: str, shard: int, since: str = "") -> Iterator[EmbeddingRecord]:
        """Records (``ok``, with their id and vector) of one of ``model``'s ``FRESH_SHARDS``
        embedded after ``since`` (ISO time), oldest first, from the ``fresh`` GSI (eventually
        consistent)."""
        partition = ("fresh_shard", fresh_shard(model, shard))
        for item in self._query_after(FRESH_INDEX, partition, "embedded_at", since):
            yield EmbeddingRecord(
                key=item["key"]["S"],
                model=model,
                id=int(item["id"]["N"]),
                status="ok",
                sequencer="",
                updated_at=item["embedded_at"]["S"],
                vector=decode_vector(item["vector"]["B"]),
            )

    def _query_after(
        self, index: str, partition: tuple[str, str], sort_key: str, since: str
    ) -> Iterator[dict[str, Any]]:
        """The items of one partition (attribute, value) of a GSI sorted by time, after
        ``since``, oldest first, every page."""
        name, value = partition
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": f"#p = :p AND {sort_key} > :t",
            "ExpressionAttributeNames": {"#p": name},
            # DynamoDB refuses an empty key value; "0" sorts before every ISO time.
            "ExpressionAttributeValues": {":p": {"S": value}, ":t": {"S": since or "0"}},
        }
        while True:
            response = self.client.query(**request)
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
