"""The embeddings table's schema: items, their attributes and the table definition.

One item per (image key, model id).

Schema (``table_definition`` creates it; ``template.yaml`` declares the same):

- partition key ``key`` (the decoded S3 key), sort key ``model`` (``name@version``);
- ``id`` (stable 63-bit id), ``status`` (``ok`` | ``quarantined`` | ``deleted``), ``reason``,
  ``vector`` (float16 bytes, only when ``ok``), ``sha256``, ``etag``, ``size``, ``sequencer``
  (S3's, left-padded so that string order is event order), ``updated_at``, ``deleted_at``;
- GSI ``by-sha256`` (``sha256``, ``model``): the same bytes under another key are not embedded
  twice;
- GSI ``deletions`` (``model``, ``deleted_at``), sparse: only tombstones carry ``deleted_at``, so
  readers can hide images deleted after an index was built;
- GSI ``fresh`` (``fresh_shard``, ``embedded_at``) with ``id`` and ``vector``, sparse: only items
  with a vector carry them (``embedded_at`` is their ``updated_at``; ``fresh_shard`` is
  ``<model>#<id mod FRESH_SHARDS>``), so the query function can search the images embedded after
  its index was built. Sharded because one partition key takes about 1,000 write units a second
  and a backfill writes thousands of items a second. It holds a copy of every vector: the
  table's storage and write units for ``ok`` items double.

::

    dynamodb.create_table(**table_definition("imgsearch-embeddings"))
    EmbeddingRecord.from_item(item).vector
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Status = Literal["ok", "quarantined", "deleted"]
SEQUENCER_WIDTH = 32
SHA256_INDEX = "by-sha256"
DELETIONS_INDEX = "deletions"
FRESH_INDEX = "fresh"
FRESH_SHARDS = 16
"""Partition keys of a model in the ``fresh`` GSI; changing it needs every item rewritten."""


def fresh_shard(model: str, shard: int) -> str:
    """The ``fresh`` GSI's partition key of one of a model's shards."""
    return f"{model}#{shard:02d}"


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

    @property
    def embedded_at(self) -> str | None:
        """When its vector was written (the ``fresh`` GSI's sort key); None without one."""
        return self.updated_at if self.status == "ok" and self.vector is not None else None

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
        if self.embedded_at:
            item["embedded_at"] = {"S": self.embedded_at}
            item["fresh_shard"] = {"S": fresh_shard(self.model, self.id % FRESH_SHARDS)}
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
            {"AttributeName": "embedded_at", "AttributeType": "S"},
            {"AttributeName": "fresh_shard", "AttributeType": "S"},
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
            {
                "IndexName": FRESH_INDEX,
                "KeySchema": [
                    {"AttributeName": "fresh_shard", "KeyType": "HASH"},
                    {"AttributeName": "embedded_at", "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": ["id", "vector"],
                },
            },
        ],
    }
