"""The payloads between the backfill's states, and the files a run writes, typed.

``statemachine/backfill.asl.json`` passes these; each is a versioned ``Contract``::

    options = BackfillOptions.parse(execution_input)   # ContractError naming the wrong field
    listing = ListingState.parse(event["listing"])

State by state:

==================  =============================================  ============================
state               input                                          output
==================  =============================================  ============================
(execution)         ``BackfillOptions``                            ``BackfillReport``
List / ListMore     ``ListInput``                                  ``ListingState`` ($.listing)
EmbedChunk (child)  ``ChunkInput``                                 ``ChunkResult`` (also in S3)
ChunkFailed         ``ChunkInput`` with ``error``                  ``ChunkResult`` (failed)
Finish / Failed     ``ReportInput`` (``state``: the whole ``$``)       ``BackfillReport``
==================  =============================================  ============================
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imgsearch.catalog.contract import Contract, Flag, Part
from imgsearch.ingest.pipeline import ListedObject
from imgsearch.pipeline.contracts import CaughtError

MAX_CHUNK_SIZE = 10_000
FAILURES_KEPT = 50
"""Failed keys a chunk result names (the counts are always complete)."""


class BackfillOptions(Contract):
    """The execution input: every field optional (``{}`` backfills the whole image prefix)."""

    LABEL = "the backfill input"

    prefix: str = ""
    """Keys to embed (default: the image prefix); must lie under the image prefix."""
    model: str = ""
    """``name@version`` to embed with (default: the serving model)."""
    chunk_size: int = Field(default=0, ge=0, le=MAX_CHUNK_SIZE)
    """Objects per chunk (0: ``IMGSEARCH_BACKFILL_CHUNK_SIZE``)."""
    max_concurrency: int = Field(default=0, ge=0)
    """Chunks embedding at once (0: the stack's ``BackfillMaxConcurrency``, also the cap)."""
    force: Flag = False
    """Re-embed objects the table already holds for the model."""
    inventory: str = ""
    """``s3://bucket/key/manifest.json`` of an S3 Inventory report (CSV) to read instead of
    listing the bucket."""

    @field_validator("inventory")
    @classmethod
    def _inventory_uri(cls, value: str) -> str:
        if value and not (value.startswith("s3://") and value.endswith("manifest.json")):
            raise ValueError(
                f"inventory must be the s3:// URI of an inventory's manifest.json, got {value!r}"
            )
        return value


class ListInput(Contract):
    """What List gets (``options`` and the run's name) and ListMore (``listing`` to go on)."""

    LABEL = "the List step's input"

    options: BackfillOptions | None = None
    run_id: str = ""
    started_at: str = ""
    listing: ListingState | None = None


class Resume(Part):
    """Where the next listing call goes on: after a key, or at a row of an inventory file."""

    start_after: str = ""
    inventory_file: int = 0
    inventory_row: int = 0


class ListingState(Contract):
    """The run as far as it is decided: its options resolved, what the listing found so far."""

    LABEL = "the listing state"

    run_id: str
    started_at: str
    bucket: str
    """The image bucket (the listed one)."""
    prefix: str
    model: str
    chunk_size: int
    max_concurrency: int
    force: bool
    inventory: str = ""
    listed: int = 0
    """Objects under the prefix the listing saw (image or not)."""
    queued: int = 0
    """Image keys written to chunk manifests."""
    ignored: int = 0
    """Keys that are not images (no image extension, folder markers)."""
    chunks: int = 0
    listing_calls: int = 0
    done: bool = False
    items_key: str = ""
    """The chunk list the Distributed Map reads (written by the last listing call)."""
    resume: Resume = Field(default_factory=Resume)


class ChunkItem(Part):
    """One element of ``chunks.json``: what one Distributed Map child embeds."""

    chunk: int
    manifest: str


class ChunkManifest(Contract):
    LABEL = "a chunk manifest"

    run_id: str
    chunk: int
    bucket: str
    objects: list[ListedObject]


class ChunkInput(Contract):
    """One child's input (the Map's ``ItemSelector``); ``error`` set on the Catch path."""

    LABEL = "the EmbedChunk step's input"

    run_id: str
    model: str
    force: bool = False
    item: ChunkItem
    error: CaughtError | None = None


class KeyFailure(Part):
    key: str
    error: str


class Tally(Part):
    """What was done to a set of objects: a chunk's, or a run's (the sum of its chunks')."""

    embedded: int = 0
    reused: int = 0
    """Embedded without a model call: the same bytes were embedded already."""
    skipped: dict[str, int] = Field(default_factory=dict)
    quarantined: dict[str, int] = Field(default_factory=dict)
    failed: int = 0
    failures: list[KeyFailure] = Field(default_factory=list)
    """The first ``FAILURES_KEPT`` failed keys with their errors."""
    model_images: int = 0
    seconds: float = 0.0
    phase_seconds: dict[str, float] = Field(default_factory=dict)
    """Where the time went: ``s3_read``, ``preprocess``, ``model``, ``dynamodb`` (summed over
    a chunk's rounds; a run's report adds its chunks' up)."""


class ChunkResult(Contract, Tally):
    """What one chunk did; ``results/<chunk>.json`` holds it, and the report adds them up."""

    LABEL = "a chunk result"

    chunk: int
    objects: int
    attempts: int = 1


class ReportState(Part):
    """The state (``$``) at Finish or Failed: the execution input's fields (ignored), the
    listing once List returned, and ``failed.<Step>`` on the Catch path."""

    listing: ListingState | None = None
    failed: dict[str, CaughtError] = Field(default_factory=dict)


class ReportInput(Contract):
    LABEL = "the backfill report's input"

    execution: str = ""
    run_id: str = ""
    state: ReportState = Field(default_factory=ReportState)


Status = Literal["succeeded", "completed_with_failures", "failed"]


class BackfillReport(Contract, Tally):
    """``report.json`` of a run, and the execution's output."""

    LABEL = "a backfill report"

    run_id: str
    execution: str = ""
    status: Status
    started_at: str = ""
    finished_at: str
    bucket: str = ""
    prefix: str = ""
    model: str = ""
    force: bool = False
    listed: int = 0
    queued: int = 0
    ignored: int = 0
    chunks: int = 0
    chunks_failed: int = 0
    """Chunks whose embedding gave up (their keys count as failed)."""
    images_per_second: float = 0.0
    """Image keys decided per second of the run (``seconds``: from its start to the report)."""
    error: str = ""
    """The failed step and its error, when the run itself failed."""
    report_key: str = ""


ListInput.model_rebuild()
ReportState.model_rebuild()
