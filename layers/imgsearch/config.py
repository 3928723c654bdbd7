"""Configuration: every environment variable the service reads, read here and nowhere else.

Handlers build one ``Settings`` at import time and pass it (or the parts they need) down::

    from imgsearch.config import Settings

    settings = Settings.from_env()
    settings.bucket, settings.index.dtype, settings.gate.min_recall

Tests and the local stack pass a mapping instead of touching ``os.environ``::

    Settings.from_env({"IMGSEARCH_BUCKET": "b", "IMGSEARCH_TABLE": "t"})
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "IMGSEARCH_"
DEMO_BUNDLE_NAME = "demo-clip"


class ConfigError(ValueError):
    """An environment variable is missing or has a value that cannot be used."""


def _repo_models_dir() -> Path:
    # layers/imgsearch/config.py -> repository root (editable install or source checkout).
    return Path(__file__).resolve().parents[2] / "models"


def default_model_uri(environ: Mapping[str, str]) -> str:
    """Where the embedded demo bundle lives: the image's task root, else the source checkout."""
    candidates = [
        Path(environ.get("LAMBDA_TASK_ROOT", "/var/task")) / "models" / DEMO_BUNDLE_NAME,
        _repo_models_dir() / DEMO_BUNDLE_NAME,
    ]
    for candidate in candidates:
        if (candidate / "model.json").is_file():
            return str(candidate)
    return str(candidates[-1])


def lambda_threads(environ: Mapping[str, str]) -> int:
    """Threads for onnxruntime and usearch.

    ``IMGSEARCH_THREADS`` wins. On Lambda, vCPUs grow with memory (one full vCPU per 1,769 MB,
    up to 6 at 10,240 MB), so the count is derived from ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``;
    elsewhere it is the machine's CPU count.
    """
    explicit = environ.get(PREFIX + "THREADS", "").strip()
    if explicit and explicit != "0":
        return _positive_int(PREFIX + "THREADS", explicit)
    memory = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "").strip()
    if memory:
        return max(1, min(6, round(int(memory) / 1769)))
    return max(1, os.cpu_count() or 1)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


class _Reader:
    """Typed reads of ``IMGSEARCH_*`` variables with defaults and clear errors."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def str(self, name: str, default: str = "") -> str:
        return self.environ.get(PREFIX + name, default).strip() or default

    def int(self, name: str, default: int) -> int:
        raw = self.environ.get(PREFIX + name, "").strip()
        return _positive_int(PREFIX + name, raw) if raw else default

    def float(self, name: str, default: float) -> float:
        raw = self.environ.get(PREFIX + name, "").strip()
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}{name} must be a number, got {raw!r}") from exc

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.str(name, default).lower()
        if value not in allowed:
            raise ConfigError(f"{PREFIX}{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value


@dataclass(frozen=True)
class ModelSettings:
    uri: str
    """Bundle folder or ``s3://bucket/prefix/``."""
    cache_dir: str = "/tmp/imgsearch/models"
    threads: int = 1
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 64_000_000
    batch_size: int = 16


@dataclass(frozen=True)
class IndexSettings:
    prefix: str = "indexes/"
    snapshot_prefix: str = "snapshots/"
    dtype: str = "f16"
    """f16 by default; i8 halves the index for about 0.01 of recall@10 (benchmarks/index.py)."""
    connectivity: int = 24
    expansion_add: int = 64
    """With connectivity 24, half the build of connectivity 16 at ``expansion_add`` 128 for
    the same recall, so a 1M rebuild fits in 5 minutes on 6 vCPUs (benchmarks/index.py)."""
    expansion_search: int = 512
    """The most search effort Validate may give a version, and what a version published without
    a tuned value searches at. 64 serves 100k at recall@10 0.98 but 1M at 0.79; 512 reaches 0.95
    at 1M (benchmarks/index.py, clustered vectors)."""
    min_expansion_search: int = 64
    """Validate tries this, twice this, ... up to ``expansion_search`` and serves the first whose
    recall clears the gate by ``GateSettings.tune_margin``: small collections search less.
    Set it to ``expansion_search`` to serve that value always."""
    keep_versions: int = 5
    scan_segments: int = 4
    cache_dir: str = "/tmp/imgsearch/indexes"
    refresh_seconds: int = 60


@dataclass(frozen=True)
class GateSettings:
    min_recall: float = 0.95
    """ANN recall@10 against exact search."""
    quality_margin: float = 0.02
    """How far precision/recall/nDCG/MRR may fall below the serving index's report."""
    max_p99_ms: float = 50.0
    tune_margin: float = 0.02
    """Recall@10 above ``min_recall`` that a tuned ``expansion_search`` must reach: about twice
    the sampling error of recall over ``sample_queries`` probes."""
    sample_queries: int = 200
    golden_key: str = "eval/golden.jsonl"

    @property
    def tune_floor(self) -> float:
        """The recall@10 at which Validate stops raising ``expansion_search``."""
        return self.min_recall + self.tune_margin


@dataclass(frozen=True)
class ApiSettings:
    max_upload_bytes: int = 6 * 1024 * 1024
    default_k: int = 20
    max_k: int = 100
    presign_seconds: int = 900
    query_cache_size: int = 256
    deleted_refresh_seconds: float = 1.0
    """How stale the query function's set of deleted keys may get (0: checked every search)."""


@dataclass(frozen=True)
class Settings:
    bucket: str = ""
    image_prefix: str = "images/"
    table: str = ""
    queue_url: str = ""
    dlq_url: str = ""
    state_machine_arn: str = ""
    alerts_topic_arn: str = ""
    region: str = "us-east-1"
    model: ModelSettings = field(default_factory=lambda: ModelSettings(uri=""))
    index: IndexSettings = field(default_factory=IndexSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        read = _Reader(env)
        prefix = read.str("IMAGE_PREFIX", "images/")
        return cls(
            bucket=read.str("BUCKET"),
            image_prefix=prefix if prefix.endswith("/") else prefix + "/",
            table=read.str("TABLE"),
            queue_url=read.str("QUEUE_URL"),
            dlq_url=read.str("DLQ_URL"),
            state_machine_arn=read.str("STATE_MACHINE_ARN"),
            alerts_topic_arn=read.str("ALERTS_TOPIC_ARN"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            model=ModelSettings(
                uri=read.str("MODEL_URI") or default_model_uri(env),
                cache_dir=read.str("MODEL_CACHE_DIR", "/tmp/imgsearch/models"),
                threads=lambda_threads(env),
                max_image_bytes=read.int("MAX_IMAGE_BYTES", 20 * 1024 * 1024),
                max_image_pixels=read.int("MAX_IMAGE_PIXELS", 64_000_000),
                batch_size=read.int("EMBED_BATCH_SIZE", 16),
            ),
            index=IndexSettings(
                prefix=read.str("INDEX_PREFIX", "indexes/"),
                snapshot_prefix=read.str("SNAPSHOT_PREFIX", "snapshots/"),
                dtype=read.choice("INDEX_DTYPE", "f16", ("f32", "f16", "i8")),
                connectivity=read.int("INDEX_CONNECTIVITY", 24),
                expansion_add=read.int("INDEX_EXPANSION_ADD", 64),
                expansion_search=read.int("INDEX_EXPANSION_SEARCH", 512),
                min_expansion_search=read.int("INDEX_MIN_EXPANSION_SEARCH", 64),
                keep_versions=read.int("INDEX_KEEP_VERSIONS", 5),
                scan_segments=read.int("SCAN_SEGMENTS", 4),
                cache_dir=read.str("INDEX_CACHE_DIR", "/tmp/imgsearch/indexes"),
                refresh_seconds=read.int("INDEX_REFRESH_SECONDS", 60),
            ),
            gate=GateSettings(
                min_recall=read.float("GATE_MIN_RECALL", 0.95),
                quality_margin=read.float("GATE_QUALITY_MARGIN", 0.02),
                max_p99_ms=read.float("GATE_MAX_P99_MS", 50.0),
                tune_margin=read.float("GATE_TUNE_MARGIN", 0.02),
                sample_queries=read.int("GATE_SAMPLE_QUERIES", 200),
                golden_key=read.str("GOLDEN_KEY", "eval/golden.jsonl"),
            ),
            api=ApiSettings(
                max_upload_bytes=read.int("MAX_UPLOAD_BYTES", 6 * 1024 * 1024),
                default_k=read.int("DEFAULT_K", 20),
                max_k=read.int("MAX_K", 100),
                presign_seconds=read.int("PRESIGN_SECONDS", 900),
                query_cache_size=read.int("QUERY_CACHE_SIZE", 256),
                deleted_refresh_seconds=read.float("DELETED_REFRESH_SECONDS", 1.0),
            ),
        )

    def require(self, *names: str) -> None:
        """Fail fast, at init, when a handler's required settings are empty.

        >>> Settings.from_env({}).require("bucket")
        Traceback (most recent call last):
        imgsearch.config.ConfigError: missing configuration: IMGSEARCH_BUCKET
        """
        missing = [PREFIX + name.upper() for name in names if not getattr(self, name)]
        if missing:
            raise ConfigError("missing configuration: " + ", ".join(missing))
