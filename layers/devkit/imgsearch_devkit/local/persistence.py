"""The local stack's data between runs: the bucket's objects, the table's items, the queues.

moto keeps everything in memory, so without this a Ctrl-C would lose the user's uploads and
indexes. On stop the stack saves what its resources hold into a data folder (beside the state
file, ``.imgsearch/data/`` by default); on the next start it puts it back before the handlers
are built, so the query function serves the restored index at once. Saving is incremental:
an object whose ETag is unchanged is not written again::

    data = DataFolder(Path(".imgsearch/data"))
    restored = data.restore(resources)        # Counts(objects=162, items=162, messages=0)
    ...
    saved = data.save(resources)

Objects are stored under the sha256 of their key (any S3 key is a safe file name then), with
``objects.json`` mapping keys to files, ETags and content types; items as DynamoDB JSON lines;
messages waiting in the ingest queue and the DLQ as JSON lines, so that nothing uploaded just
before a stop is left unembedded. Restoring an object makes S3 send its notification again:
those copies are purged from the ingest queue, and the saved messages are sent back instead.
A stack whose images are in a bucket of their own (``existing_bucket``) keeps that bucket's
objects beside the stack's, in ``image-objects/`` and ``image-objects.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

OBJECTS = "objects"
OBJECTS_INDEX = "objects.json"
IMAGE_OBJECTS = "image-objects"
IMAGE_OBJECTS_INDEX = "image-objects.json"
ITEMS = "table.jsonl"
MESSAGES = "messages.json"
WRITE_BATCH = 25
"""``BatchWriteItem``'s limit."""


@dataclass(frozen=True)
class Counts:
    objects: int = 0
    items: int = 0
    messages: int = 0

    @property
    def empty(self) -> bool:
        return not (self.objects or self.items or self.messages)


@dataclass(frozen=True)
class StackData:
    """Where the data lives on the stack: the clients and the resources' names."""

    s3: Any
    dynamodb: Any
    sqs: Any
    bucket: str
    table: str
    queues: dict[str, str]
    """Name used in the data folder (``ingest``, ``dlq``) -> queue URL."""
    image_bucket: str = ""
    """The images' bucket when it is not ``bucket`` (``ExistingBucketName``); empty: none."""

    def buckets(self) -> list[tuple[str, str, str]]:
        """(bucket, blob folder, index file) of every bucket whose objects are kept."""
        kept = [(self.bucket, OBJECTS, OBJECTS_INDEX)]
        if self.image_bucket:
            kept.append((self.image_bucket, IMAGE_OBJECTS, IMAGE_OBJECTS_INDEX))
        return kept


def _blob_name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class DataFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def exists(self) -> bool:
        return (self.folder / OBJECTS_INDEX).is_file()

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------ save
    def save(self, data: StackData) -> Counts:
        """Write what the stack holds now; returns the counts saved."""
        items = self._save_items(data)
        messages = self._save_messages(data)
        # The stack bucket's objects.json last: it marks a folder that holds a whole save.
        objects = sum(
            self._save_objects(data.s3, bucket, folder, index_name)
            for bucket, folder, index_name in reversed(data.buckets())
        )
        return Counts(objects, items, messages)

    def _save_objects(self, s3: Any, bucket: str, folder: str, index_name: str) -> int:
        blobs = self.folder / folder
        blobs.mkdir(parents=True, exist_ok=True)
        previous = self._objects_index(index_name)
        index: dict[str, dict[str, str]] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for summary in page.get("Contents", []):
                key = summary["Key"]
                entry = {"file": _blob_name(key), "etag": summary["ETag"]}
                known = previous.get(key)
                if known and known["etag"] == entry["etag"] and (blobs / known["file"]).is_file():
                    index[key] = known
                    continue
                body = s3.get_object(Bucket=bucket, Key=key)
                (blobs / entry["file"]).write_bytes(body["Body"].read())
                entry["content_type"] = body.get("ContentType", "binary/octet-stream")
                index[key] = entry
        for gone in {e["file"] for e in previous.values()} - {e["file"] for e in index.values()}:
            (blobs / gone).unlink(missing_ok=True)
        self._write(index_name, json.dumps(index, indent=1, sort_keys=True))
        return len(index)

    def _save_items(self, data: StackData) -> int:
        count = 0
        lines = []
        for page in data.dynamodb.get_paginator("scan").paginate(TableName=data.table):
            for item in page.get("Items", []):
                lines.append(json.dumps(_encode_item(item), sort_keys=True))
                count += 1
        self._write(ITEMS, "".join(line + "\n" for line in lines))
        return count

    def _save_messages(self, data: StackData) -> int:
        saved: dict[str, list[dict[str, Any]]] = {}
        for name, url in data.queues.items():
            saved[name] = []
            while True:
                received = data.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
                ).get("Messages", [])
                if not received:
                    break
                saved[name].extend({"Body": m["Body"]} for m in received)
        self._write(MESSAGES, json.dumps(saved, indent=1))
        return sum(len(m) for m in saved.values())

    # ------------------------------------------------------------------ restore
    def restore(self, data: StackData) -> Counts:
        """Put the saved data back into the (new, empty) stack; returns the counts restored."""
        if not self.exists:
            return Counts()
        objects = 0
        for bucket, folder, index_name in data.buckets():
            for key, entry in self._objects_index(index_name).items():
                data.s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=(self.folder / folder / entry["file"]).read_bytes(),
                    ContentType=entry.get("content_type", "binary/octet-stream"),
                )
                objects += 1
        # The puts above sent notifications of their own: the embeddings are restored instead.
        data.sqs.purge_queue(QueueUrl=data.queues["ingest"])
        items = self._restore_items(data)
        messages = 0
        saved = json.loads(self._read(MESSAGES) or "{}")
        for name, bodies in saved.items():
            if name in data.queues:
                for message in bodies:
                    data.sqs.send_message(QueueUrl=data.queues[name], MessageBody=message["Body"])
                    messages += 1
        return Counts(objects, items, messages)

    def _restore_items(self, data: StackData) -> int:
        items = [_decode_item(json.loads(line)) for line in self._read(ITEMS).splitlines() if line]
        for begin in range(0, len(items), WRITE_BATCH):
            requests = [{"PutRequest": {"Item": i}} for i in items[begin : begin + WRITE_BATCH]]
            pending = {data.table: requests}
            while pending:
                pending = data.dynamodb.batch_write_item(RequestItems=pending).get(
                    "UnprocessedItems", {}
                )
        return len(items)

    # ------------------------------------------------------------------ files
    def _objects_index(self, name: str = OBJECTS_INDEX) -> dict[str, dict[str, str]]:
        return json.loads(self._read(name) or "{}")

    def _read(self, name: str) -> str:
        path = self.folder / name
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def _write(self, name: str, text: str) -> None:
        # Written whole and renamed: a crash mid-save leaves the previous file.
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / (name + ".part")
        partial.write_text(text, encoding="utf-8")
        partial.replace(self.folder / name)


def _encode_item(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB JSON with binary values as hex (``{"B": bytes}`` is not JSON)."""
    return {
        name: {"Bhex": value["B"].hex()} if "B" in value else value for name, value in item.items()
    }


def _decode_item(item: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"B": bytes.fromhex(value["Bhex"])} if "Bhex" in value else value
        for name, value in item.items()
    }
