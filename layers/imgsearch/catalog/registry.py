"""The model registry: every model version's immutable bundle and its record, in the service bucket.

::

    models/<name>@<version>/model.json, visual.onnx, textual.onnx, tokenizer.json   the bundle
    models/<name>@<version>/record.json                                             its record

A record moves through ``registered`` -> ``embedding`` -> ``validated`` | ``rejected`` ->
``production`` -> ``archived`` (``TRANSITIONS``; a rollback brings an ``archived`` model back to
``production``). Every change is a conditional write (``If-Match`` on the ETag it was read with),
so two operators, or a rollout and an operator, never both win::

    record = register_record(s3, bucket, new_record(manifest, source="models/clip", by="me"))
    record = transition(s3, bucket, record, "embedding", by="rollout run-1")
    list_records(s3, bucket)      # every model, oldest first
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from imgsearch.catalog.contract import Contract, Figure, Part, put_if, read_with_etag
from imgsearch.catalog.errors import ContractError, WriteConflict
from imgsearch.core.clock import now_iso
from imgsearch.core.errors import ImgsearchError

MODELS_PREFIX = "models/"
RECORD_FILE = "record.json"

State = Literal["registered", "embedding", "validated", "rejected", "production", "archived"]
TRANSITIONS: dict[str, frozenset[str]] = {
    "registered": frozenset({"embedding", "validated", "rejected", "archived"}),
    "embedding": frozenset({"validated", "rejected"}),
    "validated": frozenset({"embedding", "production", "rejected", "archived"}),
    "rejected": frozenset({"embedding", "archived"}),
    "production": frozenset({"archived"}),
    "archived": frozenset({"production", "embedding"}),
}
"""State -> the states it may go to. ``registered`` -> ``validated`` | ``rejected``: a
retraining run's offline evaluation decided (a validated candidate then goes through the
rollout's own gates: ``validated`` -> ``embedding``). ``rejected`` -> ``embedding``: a second
try of the same bundle (after a fix elsewhere, such as the golden set); ``archived`` ->
``production``: a rollback, while the model's embeddings and index are still kept."""


class RegistryError(ImgsearchError):
    """A registry operation refused: an unknown model, a changed bundle, a forbidden move."""


class RegistryConflict(RegistryError, WriteConflict):
    """The record changed since it was read: someone else moved the model first."""


class Change(Part):
    state: str
    at: str
    by: str = ""
    reason: str = ""


class Evaluation(Part):
    """One evaluation's figures (an index report's headline, a champion/challenger comparison)."""

    at: str
    kind: str
    figures: dict[str, Figure] = Field(default_factory=dict)
    report: str = ""
    """Where the whole report is (an S3 key of the service bucket)."""
    passed: bool | None = None


class ModelRecord(Contract):
    LABEL = "a model registry record"

    model_id: str
    """``name@version``: the embeddings table's sort key and the bundle's folder."""
    state: State = "registered"
    registered_at: str
    registered_by: str = ""
    source: str = ""
    """Where the bundle was registered from (a folder, an ``s3://`` prefix, a training run)."""
    parent: str = ""
    """The model it derives from (a quantisation's fp32 model, a fine-tune's base)."""
    bundle_sha256: str
    """sha256 of the bundle's file -> sha256 list: the same files, the same digest."""
    embedding_dim: int
    lineage: dict[str, Any] = Field(default_factory=dict)
    """What is known of how it was made: export parity, training data and code."""
    evaluations: list[Evaluation] = Field(default_factory=list)
    history: list[Change] = Field(default_factory=list)
    cleaned: dict[str, Any] = Field(default_factory=dict)
    """Set once its embeddings and indexes were removed: ``at``, ``items``, ``bytes``."""
    etag: str = Field(default="", exclude=True, repr=False)
    """The ETag it was read with: not part of the file."""


def bundle_prefix(model_id: str) -> str:
    if "@" not in model_id or "/" in model_id:
        raise RegistryError(f"a model id is name@version, got {model_id!r}")
    return f"{MODELS_PREFIX}{model_id}/"


def bundle_uri(bucket: str, model_id: str) -> str:
    """Where the functions load a registered model from."""
    return f"s3://{bucket}/{bundle_prefix(model_id)}"


def files_digest(files: dict[str, str]) -> str:
    """One sha256 over a bundle's files (name and sha256 of each, in name order)."""
    text = "\n".join(f"{name} {digest}" for name, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def read_record(s3: Any, bucket: str, model_id: str) -> ModelRecord | None:
    return read_with_etag(s3, bucket, bundle_prefix(model_id) + RECORD_FILE, ModelRecord)


def require_record(s3: Any, bucket: str, model_id: str) -> ModelRecord:
    record = read_record(s3, bucket, model_id)
    if record is None:
        raise RegistryError(f"{model_id} is not registered (imgsearch model register)")
    return record


def _write(s3: Any, bucket: str, record: ModelRecord, expected_etag: str | None) -> ModelRecord:
    key = bundle_prefix(record.model_id) + RECORD_FILE
    try:
        etag = put_if(s3, bucket, key, record, expected_etag)
    except WriteConflict as exc:
        raise RegistryConflict(
            f"{record.model_id}'s record changed since it was read: read it again"
        ) from exc
    return record.model_copy(update={"etag": etag})


def register_record(s3: Any, bucket: str, record: ModelRecord) -> ModelRecord:
    """Write a new model's record; registering the same bundle again returns the existing
    record, another bundle under a registered id is refused (bundles are immutable)."""
    existing = read_record(s3, bucket, record.model_id)
    if existing is not None:
        if existing.bundle_sha256 != record.bundle_sha256:
            raise RegistryError(
                f"{record.model_id} is registered with other files (sha256 "
                f"{existing.bundle_sha256[:12]}, these are {record.bundle_sha256[:12]}): a "
                "registered bundle never changes; give the new one another version"
            )
        return existing
    change = Change(state="registered", at=record.registered_at, by=record.registered_by)
    return _write(s3, bucket, record.model_copy(update={"history": [change]}), None)


def transition(
    s3: Any, bucket: str, record: ModelRecord, state: State, by: str = "", reason: str = ""
) -> ModelRecord:
    """Move ``record`` (as read) to ``state``; ``RegistryConflict`` if it changed since."""
    if state not in TRANSITIONS[record.state]:
        allowed = ", ".join(sorted(TRANSITIONS[record.state])) or "nothing"
        raise RegistryError(
            f"{record.model_id} is {record.state}: it can go to {allowed}, not {state}"
        )
    change = Change(state=state, at=now_iso(), by=by, reason=reason)
    moved = record.model_copy(update={"state": state, "history": [*record.history, change]})
    return _write(s3, bucket, moved, record.etag)


def mark_cleaned(s3: Any, bucket: str, record: ModelRecord, cleaned: dict[str, Any]) -> ModelRecord:
    return _write(s3, bucket, record.model_copy(update={"cleaned": cleaned}), record.etag)


def add_evaluation(
    s3: Any, bucket: str, record: ModelRecord, evaluation: Evaluation
) -> ModelRecord:
    updated = record.model_copy(update={"evaluations": [*record.evaluations, evaluation]})
    return _write(s3, bucket, updated, record.etag)


def list_records(s3: Any, bucket: str) -> list[ModelRecord]:
    """Every registered model, oldest first."""
    records = []
    for model_id in _model_ids(s3, bucket):
        try:
            record = read_record(s3, bucket, model_id)
        except ContractError:
            continue  # a record of a newer major schema: not this code's to list
        if record is not None:
            records.append(record)
    return sorted(records, key=lambda r: (r.registered_at, r.model_id))


def _model_ids(s3: Any, bucket: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=MODELS_PREFIX, Delimiter="/"
    ):
        for common in page.get("CommonPrefixes", []):
            yield common["Prefix"][len(MODELS_PREFIX) :].rstrip("/")
