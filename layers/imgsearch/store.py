"""The embeddings table (DynamoDB): one item per (image key, model id).

Schema (``table_definition`` creates it; ``template.yaml`` declares the same):

- partition key ``key`` (the decoded S3 key), sort key ``model`` (``name@version``);
- ``id`` (stable 63-bit id), ``status`` (``ok`` | ``quarantined`` | ``deleted``), ``reason``,
  ``vector`` (float16 bytes, only when ``ok``), ``sha256``, ``etag``, ``size``, ``sequencer``
  (S3's, left-padded so that string order is event order), ``updated_at``, ``deleted_at``;
- GSI ``by-sha256`` (``sha256``, ``model``): the same bytes under another key are not embedded
  twice;
- GSI ``deletions`` (``model``, ``deleted_at``), sparse: only tombstones carry ``deleted_at``, so
  readers can hide images deleted after an index was built.

A delete leaves a tombstone (no vector) rather than removing the item: it still holds the
sequencer, so a put event that arrives late, out of order, cannot bring the image back::

    store = EmbeddingStore("imgsearch-embeddings")
    store.put(record)            # False when the table already holds a newer or equal event
    store.get("images/cat.jpg", "demo-clip@1")
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

Status = Literal["ok", "quarantined", "deleted"]
SEQUENCER_WIDTH = 32
SHA256_INDEX = "by-sha256"
DELETIONS_INDEX = "deletions"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pad_sequencer(sequencer: str) -> str:
    """S3 sequencers differ in length: left-pad with zeros, then string order is event order."""
    return sequencer.upper().rjust(SEQUENCER_WIDTH, "0")


def encode_vector(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f2").tobytes()


def decode_vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


@dataclass(frozen=True)
class EmbeddingRecord:
    key: str
    model: str
    id: int
    status: Status
    sequencer: str
    updated_at: str
    vector: np.ndarray | None = None
    reason: str | None = None
    sha256: str | None = None
    etag: str | None = None
    size: int | None = None
    deleted_at: str | None = None

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "key": {"S": self.key},
            "model": {"S": self.model},
            "id": {"N": str(self.id)},
            "status": {"S": self.status},
            "sequencer": {"S": self.sequencer},
            "updated_at": {"S": self.updated_at},
        }
        if self.vector is not None:
            item["vector"] = {"B": encode_vector(self.vector)}
        for name in ("reason", "sha256", "etag", "deleted_at"):
            value = getattr(self, name)
            if value:
                item[name] = {"S": value}
        if self.size is not None:
            item["size"] = {"N": str(self.size)}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> EmbeddingRecord:
        def text(name: str) -> str | None:
            return item[name]["S"] if name in item else None

        return cls(
            key=item["key"]["S"],
            model=item["model"]["S"],
            id=int(item["id"]["N"]),
            status=item["status"]["S"],
            sequencer=item.get("sequencer", {}).get("S", ""),
            updated_at=item.get("updated_at", {}).get("S", ""),
            vector=decode_vector(item["vector"]["B"]) if "vector" in item else None,
            reason=text("reason"),
            sha256=text("sha256"),
            etag=text("etag"),
            size=int(item["size"]["N"]) if "size" in item else None,
            deleted_at=text("deleted_at"),
        )


def table_definition(name: str) -> dict[str, Any]:
    """``create_table`` arguments for the embeddings table (tests and the local stack)."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "key", "AttributeType": "S"},
            {"AttributeName": "model", "AttributeType": "S"},
            {"AttributeName": "sha256", "AttributeType": "S"},
            {"AttributeName": "deleted_at", "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": "key", "KeyType": "HASH"},
            {"AttributeName": "model", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": SHA256_INDEX,
                "KeySchema": [
                    {"AttributeName": "sha256", "KeyType": "HASH"},
                    {"AttributeName": "model", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": DELETIONS_INDEX,
                "KeySchema": [
                    {"AttributeName": "model", "KeyType": "HASH"},
                    {"AttributeName": "deleted_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    }


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

    def delete(self, key: str, model: str) -> None:
        self.client.delete_item(
            TableName=self.table, Key={"key": {"S": key}, "model": {"S": model}}
        )

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
        """One segment of a parallel scan, a page at a time (bounded memory)."""
        request: dict[str, Any] = {
            "TableName": self.table,
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
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": DELETIONS_INDEX,
            "KeyConditionExpression": "#m = :m AND deleted_at > :t",
            "ExpressionAttributeNames": {"#m": "model"},
            # DynamoDB refuses an empty key value; "0" sorts before every ISO time.
            "ExpressionAttributeValues": {":m": {"S": model}, ":t": {"S": since or "0"}},
        }
        while True:
            response = self.client.query(**request)
            for item in response.get("Items", []):
                yield item["key"]["S"], item["deleted_at"]["S"]
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
