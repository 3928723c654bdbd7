"""``indexes/<version>/report.json``: what a version was built from, how, and every figure
Validate measured, with the gates it applied.

Validate writes it; Publish and rollback read it to write ``current.json``; ``imgsearch index
list`` and ``imgsearch pipeline run`` print it. It records the snapshot and build it describes,
so their models (also the Snapshot and Build steps' outputs) are defined here::

    report = read_report(s3, bucket, "indexes/", version)    # None: never validated
    report.passed, report.ann.expansion_search, report.build.count, report.headline
    write_report(s3, bucket, "indexes/", report)              # -> the key written
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, computed_field

from imgsearch.catalog.contract import Contract, Figure, Part, read_object, write_object
from imgsearch.catalog.layout import REPORT_FILE, SNAPSHOT_FILE, version_key
from imgsearch.catalog.recent import RecentImage

HASH_SCHEME = "sum-mod-2^128 of blake2b-128(id int64 LE || vector float16 LE)"


class SnapshotManifest(Contract):
    """The contents of ``snapshot.json`` and what the Snapshot step returns to the state machine."""

    LABEL = "the snapshot manifest"

    snapshot_id: str
    prefix: str
    """S3 prefix of the snapshot's files (``snapshots/<snapshot id>/``)."""
    model: str
    dim: int
    count: int
    content_hash: str
    scan_seconds: float
    segments: int
    taken_at: str
    serving_version: str = ""
    """The version serving when the scan started; Publish replaces only that one."""
    serving_etag: str = ""
    unchanged: bool = False
    """Same embedding set as the serving index: the run can stop here."""
    reason: str = ""
    hash_scheme: str = HASH_SCHEME
    recent: tuple[RecentImage, ...] = ()
    """The newest ``IMGSEARCH_RECENT_IMAGES`` items scanned, newest first; Build writes them
    to ``recent.json``. Empty in manifests written before the field existed."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def manifest_key(self) -> str:
        return self.prefix + SNAPSHOT_FILE


class BuildResult(Contract):
    """What the Build step returns to the state machine (and Validate copies into the report)."""

    LABEL = "the build result"

    version: str
    index_key: str
    keys_key: str
    count: int
    dim: int
    engine: Literal["faiss", "usearch"] = "usearch"
    """The index engine (``imgsearch.ann``); versions built before faiss was one are usearch."""
    metric: str
    dtype: str
    connectivity: int
    expansion_add: int
    threads: int
    build_seconds: float
    index_bytes: int
    keys_bytes: int
    memory_bytes: int
    built_at: str
    mode: Literal["full", "incremental"] = "full"
    mode_reason: str = ""
    """Why this mode: what made a full build necessary, or the change an incremental one made."""
    base_version: str = ""
    """The serving version an incremental build started from."""
    added: int = 0
    removed: int = 0
    changed: int = 0
    """Vectors added, removed and replaced (a new embedding of the same key) by an incremental
    build; a full build reports none."""
    removed_since_full: int = 0
    """Entries removed (tombstones) since the last full build, this build's included."""


class Gate(Part):
    name: str
    passed: bool
    value: float | int | str | None
    op: Literal[">=", "<=", "=="]
    """How ``value`` must compare with ``threshold``."""
    threshold: float | int | str | None
    detail: str = ""


class AnnFigures(Part):
    """Recall@10 of the index against exact search, at the ``expansion_search`` chosen."""

    recall_at_10: float
    expansion_search: int
    recall_at_10_by_expansion_search: dict[str, float]
    """Each step of the ladder tried (``"64"``: recall), up to the one chosen."""
    tune_floor: float
    queries: int
    noisy_vector_queries: int
    text_queries: int
    query_noise: float
    ground_truth: str


class Completeness(Part):
    snapshot_count: int
    index_count: int
    key_table_count: int
    missing_from_index: int
    wrong_or_missing_keys: int
    complete: bool
    example_wrong_key: str | None = None


class Quality(Part):
    """Retrieval figures on the golden set's text queries."""

    precision_at_10: float
    recall_at_10: float
    ndcg_at_10: float
    mrr: float
    golden_key: str
    golden_sha256: str
    relevant_keys: int
    relevant_keys_not_indexed: int
    baseline_version: str = ""
    """The version whose figures the gates compared with (the one serving at the snapshot)."""


class Latency(Part):
    """Single-query, single-thread search times."""

    probes: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class IndexReport(Contract):
    """The contents of ``report.json``."""

    LABEL = "report.json"

    version: str
    model: str
    snapshot: SnapshotManifest
    build: BuildResult
    gate_settings: dict[str, float | int | str]
    ann: AnnFigures
    completeness: Completeness
    quality: Quality | None = None
    """Only with a golden set (and a bundle of the snapshot's model to embed its queries)."""
    latency: Latency
    gates: list[Gate]
    passed: bool
    summary: str
    headline: dict[str, Figure] = Field(default_factory=dict)
    """Key figures, copied into ``current.json``: recall_at_10, p99_ms, precision_at_10 ..."""
    validated_at: str


def read_report(s3: Any, bucket: str, prefix: str, version: str) -> IndexReport | None:
    """The version's report; ``None`` when it has none (it was never validated)."""
    return read_object(s3, bucket, version_key(prefix, version, REPORT_FILE), IndexReport)


def write_report(s3: Any, bucket: str, prefix: str, report: IndexReport) -> str:
    return write_object(s3, bucket, version_key(prefix, report.version, REPORT_FILE), report)
