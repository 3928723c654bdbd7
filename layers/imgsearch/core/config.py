"""Configuration: every environment variable the service reads, read here and nowhere else.

Each setting is a dataclass field that names its variable and states its default once
(``env(...)``); ``Settings.from_env`` reads them all::

    from imgsearch.core.config import Settings

    settings = Settings.from_env()                 # os.environ, on Lambda
    settings.bucket, settings.index.dtype, settings.gate.min_recall

Tests and the local stack pass a mapping instead of touching ``os.environ``::

    Settings.from_env({"IMGSEARCH_BUCKET": "b", "IMGSEARCH_TABLE": "t"})
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "IMGSEARCH_"
DEMO_BUNDLE = Path("models") / "demo-clip"
"""Where the image holds the embedded demo bundle, relative to the task root."""
LAMBDA_VCPU_MB = 1769
"""Lambda gives one full vCPU per 1,769 MB of memory, up to 6 at 10,240 MB."""
MAX_RECENT_IMAGES = 200
"""The most ``IMGSEARCH_RECENT_IMAGES`` may ask for: ~200 bytes each in the pipeline payloads."""
REFRESH_IN = ("after-response", "background")
ENGINES = ("faiss", "usearch")
"""The index engines (``imgsearch.ann``), the default first."""

T = TypeVar("T")
Parser = Callable[[str, str], Any]


class ConfigError(ValueError):
    """An environment variable is missing or has a value that cannot be used."""


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _text(name: str, raw: str) -> str:
    return raw


def _folder(name: str, raw: str) -> str:
    return raw if raw.endswith("/") else raw + "/"


def one_of(*allowed: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return parse


def up_to(limit: int) -> Parser:
    """An integer from 0 (off) to ``limit``."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
        if not 0 <= value <= limit:
            raise ConfigError(f"{name} must be between 0 and {limit}, got {value}")
        return value

    return parse


_PARSERS: dict[type, Parser] = {int: _positive_int, float: _number, str: _text}


def env(variable: str, default: T, parse: Parser | None = None) -> T:
    """A setting read from ``variable`` (empty or unset: ``default``)."""
    reader = parse or _PARSERS[type(default)]
    return field(default=default, metadata={"env": variable, "parse": reader})


S = TypeVar("S")


def _read(cls: type[S], environ: Mapping[str, str], **computed: Any) -> S:
    """An instance of the settings dataclass ``cls`` from ``environ``; ``computed`` wins."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        variable = item.metadata.get("env")
        raw = environ.get(variable, "").strip() if variable else ""
        if raw:
            values[item.name] = item.metadata["parse"](variable, raw)
    return cls(**{**values, **computed})


def lambda_threads(environ: Mapping[str, str]) -> int:
    """Threads for onnxruntime and the index engine.

    ``IMGSEARCH_THREADS`` wins. On Lambda, vCPUs grow with memory, so the count is derived from
    ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``; elsewhere it is the machine's CPU count.
    """
    explicit = environ.get(PREFIX + "THREADS", "").strip()
    if explicit and explicit != "0":
        return _positive_int(PREFIX + "THREADS", explicit)
    memory = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "").strip()
    if memory:
        return max(1, min(6, round(int(memory) / LAMBDA_VCPU_MB)))
    return max(1, os.cpu_count() or 1)


def running_on_lambda(environ: Mapping[str, str] | None = None) -> bool:
    """True inside a Lambda execution environment (the runtime sets the function name)."""
    return bool((os.environ if environ is None else environ).get("AWS_LAMBDA_FUNCTION_NAME"))


@dataclass(frozen=True)
class ModelSettings:
    uri: str = env("IMGSEARCH_MODEL_URI", "")
    """Bundle folder or ``s3://bucket/prefix/``; empty: the demo bundle in the image's task root."""
    cache_dir: str = env("IMGSEARCH_MODEL_CACHE_DIR", "/tmp/imgsearch/models")
    threads: int = 1
    """From ``lambda_threads``."""
    max_image_bytes: int = env("IMGSEARCH_MAX_IMAGE_BYTES", 20 * 1024 * 1024)
    max_image_pixels: int = env("IMGSEARCH_MAX_IMAGE_PIXELS", 64_000_000)
    batch_size: int = env("IMGSEARCH_EMBED_BATCH_SIZE", 16)


@dataclass(frozen=True)
class IndexSettings:
    prefix: str = env("IMGSEARCH_INDEX_PREFIX", "indexes/", _folder)
    snapshot_prefix: str = env("IMGSEARCH_SNAPSHOT_PREFIX", "snapshots/", _folder)
    engine: str = env("IMGSEARCH_INDEX_ENGINE", ENGINES[0], one_of(*ENGINES))
    """faiss by default: 0.38x usearch's p50 at the same recall over 1M vectors, and 0.22x its
    cold open (docs/peers.md). Each version records its engine: either kind serves."""
    dtype: str = env("IMGSEARCH_INDEX_DTYPE", "f16", one_of("f32", "f16", "i8"))
    """f16 by default; i8 (usearch only) halves the index for about 0.01 of recall@10
    (benchmarks/index.py)."""
    connectivity: int = env("IMGSEARCH_INDEX_CONNECTIVITY", 24)
    expansion_add: int = env("IMGSEARCH_INDEX_EXPANSION_ADD", 64)
    """With connectivity 24, half the build of connectivity 16 at ``expansion_add`` 128 for
    the same recall, so a 1M rebuild fits in 5 minutes on 6 vCPUs (benchmarks/index.py)."""
    expansion_search: int = env("IMGSEARCH_INDEX_EXPANSION_SEARCH", 512)
    """The most search effort Validate may give a version, and what a version published without
    a tuned value searches at. 64 serves 100k at recall@10 0.98 but 1M at 0.79; 512 reaches 0.95
    at 1M (benchmarks/index.py, clustered vectors)."""
    min_expansion_search: int = env("IMGSEARCH_INDEX_MIN_EXPANSION_SEARCH", 64)
    """Validate tries this, twice this, ... up to ``expansion_search`` and serves the first whose
    recall clears the gate by ``GateSettings.tune_margin``: small collections search less.
    Set it to ``expansion_search`` to serve that value always."""
    keep_versions: int = env("IMGSEARCH_INDEX_KEEP_VERSIONS", 5)
    candidate_ttl_seconds: int = env("IMGSEARCH_INDEX_CANDIDATE_TTL_SECONDS", 7200)
    """How long a version that never served is kept: longer than a run may last (the state
    machine's TimeoutSeconds, 3600), so pruning never deletes a racing run's candidate."""
    incremental_max_removed: float = env("IMGSEARCH_INDEX_INCREMENTAL_MAX_REMOVED", 0.1)
    """Build starts from the serving index (adds the new and changed vectors, removes the
    deleted and changed ones) until the entries removed since its last full build pass this
    share of the index: a removed vector stays in the graph as a tombstone, with its memory,
    in either engine (``imgsearch.ann``), so past it a full build is cheaper to search.
    0: always full."""
    scan_segments: int = env("IMGSEARCH_SCAN_SEGMENTS", 4)
    cache_dir: str = env("IMGSEARCH_INDEX_CACHE_DIR", "/tmp/imgsearch/indexes")
    refresh_seconds: int = env("IMGSEARCH_INDEX_REFRESH_SECONDS", 60)
    refresh_in: str = env("IMGSEARCH_INDEX_REFRESH_IN", "after-response", one_of(*REFRESH_IN))
    """Where the query function checks for and swaps in a new version. ``after-response``: on
    Lambda, after a response, in an internal extension that keeps the sandbox for it (Lambda
    sends other requests elsewhere meanwhile; the time is billed and counts against the
    Timeout); off Lambda, as ``background``. ``background``: a thread beside the requests,
    which slows the ones that run while it loads (``benchmarks/swap.py``)."""
    refresh_nice: int = env("IMGSEARCH_INDEX_REFRESH_NICE", 0, up_to(19))
    """The background thread's CPU priority (Linux nice, 0-19; the downloads it starts inherit
    it). At 19 a swap takes only the CPU requests leave, which keeps a busy process's p99 during
    a swap nearer its p99 before; but a Lambda sandbox is frozen between requests, so there a
    swap then takes longer the less busy the sandbox is. 0: the requests' priority."""
    recent_images: int = env("IMGSEARCH_RECENT_IMAGES", 24, up_to(MAX_RECENT_IMAGES))
    """How many of the newest images a snapshot records for the page's first view (``GET
    /recent``); 0 records none. Bounded: they travel in the Step Functions payloads (256 KB)."""

    def __post_init__(self) -> None:
        if self.engine == "faiss" and self.dtype == "i8":
            raise ConfigError(
                "IMGSEARCH_INDEX_DTYPE=i8 needs IMGSEARCH_INDEX_ENGINE=usearch "
                "(the faiss engine stores f16 or f32)"
            )


@dataclass(frozen=True)
class GateSettings:
    min_recall: float = env("IMGSEARCH_GATE_MIN_RECALL", 0.95)
    """ANN recall@10 against exact search."""
    quality_margin: float = env("IMGSEARCH_GATE_QUALITY_MARGIN", 0.02)
    """How far precision/recall/nDCG/MRR may fall below the serving index's report."""
    promotion_margin: float = env("IMGSEARCH_GATE_PROMOTION_MARGIN", 0.0)
    """A rollout's candidate (an index of another model than the serving one) must beat the
    serving index's nDCG@10 by this share (0.05: 5 % better); 0: not worse by ``quality_margin``
    is enough."""
    max_p99_ms: float = env("IMGSEARCH_GATE_MAX_P99_MS", 50.0)
    tune_margin: float = env("IMGSEARCH_GATE_TUNE_MARGIN", 0.02)
    """Recall@10 above ``min_recall`` that a tuned ``expansion_search`` must reach: about twice
    the sampling error of recall over ``sample_queries`` probes."""
    sample_queries: int = env("IMGSEARCH_GATE_SAMPLE_QUERIES", 200)
    golden_key: str = env("IMGSEARCH_GOLDEN_KEY", "eval/golden.jsonl")

    @property
    def tune_floor(self) -> float:
        """The recall@10 at which Validate stops raising ``expansion_search``."""
        return self.min_recall + self.tune_margin


@dataclass(frozen=True)
class ApiSettings:
    max_upload_bytes: int = env("IMGSEARCH_MAX_UPLOAD_BYTES", 4 * 1024 * 1024)
    """The largest image a query may upload. A synchronous Lambda event is at most 6 MiB and
    HTTP APIs base64-encode binary bodies (4/3 larger): 4 MiB raw is 5.33 MiB encoded, leaving
    room for the rest of the event. The only upload limit: the local stack emulates Lambda's."""
    max_image_pixels: int = env("IMGSEARCH_QUERY_MAX_IMAGE_PIXELS", 16_777_216)
    """A query image's pixel budget (4096 x 4096), checked from the header: the model sees
    224 x 224, a 12 MP phone photo fits, and a flat PNG that fits the upload limit cannot make
    a query decode ingest's 64 MP (~650 ms of CPU)."""
    decode_seconds: float = env("IMGSEARCH_QUERY_DECODE_SECONDS", 0.5)
    """How long decoding a query image may take; checked as the decoder reads its input."""
    default_k: int = env("IMGSEARCH_DEFAULT_K", 20)
    max_k: int = env("IMGSEARCH_MAX_K", 100)
    presign_seconds: int = env("IMGSEARCH_PRESIGN_SECONDS", 900)
    query_cache_size: int = env("IMGSEARCH_QUERY_CACHE_SIZE", 256)
    deleted_refresh_seconds: float = env("IMGSEARCH_DELETED_REFRESH_SECONDS", 1.0)
    """How stale the query function's set of deleted keys may get (0: checked every search)."""
    fresh_refresh_seconds: float = env("IMGSEARCH_FRESH_REFRESH_SECONDS", 1.0)
    """How often, at most, the query function reads the images embedded since its index was
    built (the fresh segment: searched exactly beside the index; 0: before every search)."""
    fresh_max_vectors: int = env("IMGSEARCH_FRESH_MAX_VECTORS", 50_000)
    """The most vectors the fresh segment holds (about 2 KB each at 512-d, and a text search
    reads them all): past this it stops growing, starts an early index build and raises the
    ``FreshSegmentFull`` metric; 0 turns the fresh segment off."""


@dataclass(frozen=True)
class BackfillSettings:
    prefix: str = env("IMGSEARCH_BACKFILL_PREFIX", "backfill/", _folder)
    """Where runs keep their chunk manifests, chunk results and report (the service's bucket)."""
    chunk_size: int = env("IMGSEARCH_BACKFILL_CHUNK_SIZE", 1000)
    """Objects per chunk (one Distributed Map child): about a minute and a half of one Lambda on
    photo-sized JPEGs (benchmarks/backfill.py), far inside its 15 minutes."""
    max_concurrency: int = env("IMGSEARCH_BACKFILL_MAX_CONCURRENCY", 50)
    """The most chunks embedding at once, whatever a run asks for (the template's
    ``BackfillMaxConcurrency``): it bounds the Lambda concurrency and DynamoDB writes a run
    takes from the account."""
    list_objects_per_call: int = env("IMGSEARCH_BACKFILL_LIST_OBJECTS_PER_CALL", 1_000_000)
    """One listing invocation writes manifests for at most this many objects, then the state
    machine calls it again from where it stopped: a listing of 100M keys is never one call."""
    attempts: int = env("IMGSEARCH_BACKFILL_ATTEMPTS", 4)
    """Rounds a chunk gives objects that failed for a transient reason, with backoff between."""


@dataclass(frozen=True)
class RolloutSettings:
    retention_days: int = env("IMGSEARCH_MODEL_RETENTION_DAYS", 7)
    """How long an archived (or rejected) model's embeddings and indexes are kept, so that a
    rollback to it is one write; ``imgsearch model cleanup`` removes them after that."""
    write_models_seconds: float = env("IMGSEARCH_WRITE_MODELS_SECONDS", 10.0)
    """How often the embed function reads which models to write with (``current.json`` and
    ``models/rollout.json``); a rollout waits three times this before it lists the bucket."""


@dataclass(frozen=True)
class UsageSettings:
    prefix: str = env("IMGSEARCH_USAGE_PREFIX", "usage/", _folder)
    """Where Firehose writes the usage log (``<prefix>YYYY/MM/DD/HH/``, the service's bucket)."""
    signing_secret_arn: str = env("IMGSEARCH_QUERY_SIGNING_SECRET_ARN", "")
    """The Secrets Manager secret whose value signs query ids (the template makes one); empty:
    a random key per process, so feedback is taken only by the environment that searched."""
    feedback_max_age_seconds: int = env("IMGSEARCH_FEEDBACK_MAX_AGE_SECONDS", 86400)
    """How long after a search its feedback is taken (older query ids get 422)."""


@dataclass(frozen=True)
class MonitorSettings:
    prefix: str = env("IMGSEARCH_MONITOR_PREFIX", "monitor/", _folder)
    """Where each monitor run writes its report (``<prefix><run>/report.json``, ``report.svg``)."""
    window_minutes: int = env("IMGSEARCH_MONITOR_WINDOW_MINUTES", 60)
    """The window a run measures (the schedule's rate): this many minutes, ending
    ``feedback_lag_seconds`` before the run."""
    feedback_lag_seconds: int = env("IMGSEARCH_MONITOR_FEEDBACK_LAG_SECONDS", 300)
    """How long after a window the monitor waits for clicks on its last searches: the window
    ends this long before the run, and feedback is read until the run."""
    low_score: float = env("IMGSEARCH_MONITOR_LOW_SCORE", 0.2)
    """A search whose top score is below this found nothing good (its share is a metric)."""
    max_drop: float = env("IMGSEARCH_MONITOR_MAX_DROP", 0.2)
    """A quality metric that falls this share below its baseline is degraded."""
    min_searches: int = env("IMGSEARCH_MONITOR_MIN_SEARCHES", 30)
    """Fewer searches than this in a window (or its baseline) decide nothing."""
    baseline_days: int = env("IMGSEARCH_MONITOR_BASELINE_DAYS", 7)
    """The baseline: the windows of this many days before the current one."""
    alarm_windows: int = env("IMGSEARCH_MONITOR_ALARM_WINDOWS", 3)
    """Consecutive flagged windows before an alarm (the template's alarms use the same)."""
    drift_alpha: float = env("IMGSEARCH_DRIFT_ALPHA", 0.01)
    drift_permutations: int = env("IMGSEARCH_DRIFT_PERMUTATIONS", 200)
    drift_max_samples: int = env("IMGSEARCH_DRIFT_MAX_SAMPLES", 1000)
    drift_min_samples: int = env("IMGSEARCH_DRIFT_MIN_SAMPLES", 30)
    """A window with fewer new embeddings than this is not tested for drift."""
    reference_samples: int = env("IMGSEARCH_DRIFT_REFERENCE_SAMPLES", 2000)
    """Vectors Build samples from each index version: the reference new images are compared to."""

    def __post_init__(self) -> None:
        """Settings that cannot work together fail at load, not at the first run."""
        if not 0 < self.drift_alpha < 1:
            raise ConfigError(
                f"IMGSEARCH_DRIFT_ALPHA must be between 0 and 1, got {self.drift_alpha}"
            )
        if self.drift_permutations <= 1 / self.drift_alpha - 1:
            raise ConfigError(
                f"IMGSEARCH_DRIFT_PERMUTATIONS={self.drift_permutations} cannot give a p-value "
                f"below IMGSEARCH_DRIFT_ALPHA={self.drift_alpha}: use more than "
                f"{1 / self.drift_alpha - 1:g}"
            )
        if self.drift_max_samples < 2 or self.drift_min_samples < 2:
            raise ConfigError("IMGSEARCH_DRIFT_MAX_SAMPLES and _MIN_SAMPLES must be at least 2")
        if not 0 < self.max_drop < 1:
            raise ConfigError(
                f"IMGSEARCH_MONITOR_MAX_DROP must be between 0 and 1, got {self.max_drop}"
            )


@dataclass(frozen=True)
class RetrainSettings:
    prefix: str = env("IMGSEARCH_RETRAIN_PREFIX", "retrain/", _folder)
    """Each run's dataset, training output and report (``<prefix><run>/``), the lock and the
    last run (``<prefix>run.json``, ``<prefix>latest.json``)."""
    state_machine_arn: str = env("IMGSEARCH_RETRAIN_STATE_MACHINE_ARN", "")
    """The retraining workflow: the monitor starts it when enough new data came in."""
    training_image: str = env("IMGSEARCH_TRAINING_IMAGE_URI", "")
    """The training job's container image (``layers/training/Dockerfile``, pushed to ECR);
    empty: retraining is not set up, and a run says so at its first step."""
    training_max_seconds: int = env("IMGSEARCH_TRAINING_MAX_SECONDS", 3600)
    """The training job's time limit (SageMaker's ``MaxRuntimeInSeconds``)."""
    captions_prefix: str = env("IMGSEARCH_RETRAIN_CAPTIONS_PREFIX", "captions/", _folder)
    """Captioned examples the user keeps (JSON lines of ``{"key", "caption"}``, the service's
    bucket): trained on like judged pairs."""
    data_days: int = env("IMGSEARCH_RETRAIN_DATA_DAYS", 30)
    """How many days of the usage log a run reads."""
    min_new_judgments: int = env("IMGSEARCH_RETRAIN_MIN_NEW_JUDGMENTS", 200)
    """New feedback since the last run that starts one (the monitor) or lets one go on."""
    min_new_images: int = env("IMGSEARCH_RETRAIN_MIN_NEW_IMAGES", 1000)
    """New images since the last run that do the same."""
    min_train_queries: int = env("IMGSEARCH_RETRAIN_MIN_TRAIN_QUERIES", 20)
    """Fewer training queries than this: the run ends as a skip."""
    heldout_fraction: float = env("IMGSEARCH_RETRAIN_HELDOUT_FRACTION", 0.25)
    """The share of queries held out (chosen by a hash of the query: a held-out query stays
    held out in every run, so it never trains); golden-set queries are always held out."""
    min_heldout_queries: int = env("IMGSEARCH_RETRAIN_MIN_HELDOUT_QUERIES", 10)
    """Fewer held-out queries than this: the evaluation fails (too little held-out data)."""
    min_gain: float = env("IMGSEARCH_RETRAIN_MIN_GAIN", 0.02)
    """The promotion threshold: held-out nDCG@10 better than the champion's by this share."""
    tolerance: float = env("IMGSEARCH_RETRAIN_TOLERANCE", 0.02)
    """No other figure may be worse than the champion's by more than this share."""
    significance: float = env("IMGSEARCH_RETRAIN_SIGNIFICANCE", 0.05)
    """The gain must be significant at this level (a one-sided paired randomisation test over
    the held-out feedback queries); 1 accepts any gain."""
    eval_max_images: int = env("IMGSEARCH_RETRAIN_EVAL_MAX_IMAGES", 20000)
    """The most images the evaluation embeds with both models (the dataset's, then sampled)."""
    hyperparameters: str = env("IMGSEARCH_RETRAIN_HYPERPARAMETERS", "{}")
    """A JSON object of the training job's hyperparameters over its defaults
    (``imgsearch_training.job``), e.g. ``{"epochs": "6", "seed": "2"}``."""

    def __post_init__(self) -> None:
        if not 0 < self.heldout_fraction < 1:
            raise ConfigError(
                "IMGSEARCH_RETRAIN_HELDOUT_FRACTION must be between 0 and 1, got "
                f"{self.heldout_fraction}"
            )
        if not 0 < self.significance <= 1:
            raise ConfigError(
                f"IMGSEARCH_RETRAIN_SIGNIFICANCE must be in (0, 1], got {self.significance}"
            )
        try:
            parsed = json.loads(self.hyperparameters)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"IMGSEARCH_RETRAIN_HYPERPARAMETERS is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ConfigError("IMGSEARCH_RETRAIN_HYPERPARAMETERS must be a JSON object")


@dataclass(frozen=True)
class ObservabilitySettings:
    """What Powertools' Logger and Metrics are named (the template sets both for every function)."""

    service: str = env("POWERTOOLS_SERVICE_NAME", "imgsearch")
    namespace: str = env("POWERTOOLS_METRICS_NAMESPACE", "imgsearch")
    log_level: str = env("POWERTOOLS_LOG_LEVEL", "INFO")


@dataclass(frozen=True)
class Settings:
    bucket: str = env("IMGSEARCH_BUCKET", "")
    """The service's own bucket: indexes, snapshots, evaluation sets, backfill manifests."""
    image_bucket: str = env("IMGSEARCH_IMAGE_BUCKET", "")
    """Where the images are (empty: ``bucket``). A bucket the user already has is only read."""
    image_prefix: str = env("IMGSEARCH_IMAGE_PREFIX", "images/", _folder)
    table: str = env("IMGSEARCH_TABLE", "")
    queue_url: str = env("IMGSEARCH_QUEUE_URL", "")
    dlq_url: str = env("IMGSEARCH_DLQ_URL", "")
    state_machine_arn: str = env("IMGSEARCH_STATE_MACHINE_ARN", "")
    alerts_topic_arn: str = env("IMGSEARCH_ALERTS_TOPIC_ARN", "")
    runtime_api: str = env("AWS_LAMBDA_RUNTIME_API", "")
    """The Lambda Runtime API's host:port, set by Lambda; where extensions register."""
    region: str = "us-east-1"
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION``."""
    model: ModelSettings = field(default_factory=ModelSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    backfill: BackfillSettings = field(default_factory=BackfillSettings)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    usage: UsageSettings = field(default_factory=UsageSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env_ = os.environ if environ is None else environ
        task_root = Path(env_.get("LAMBDA_TASK_ROOT") or "/var/task")
        model = _read(ModelSettings, env_, threads=lambda_threads(env_))
        if not model.uri:
            model = dataclasses.replace(model, uri=str(task_root / DEMO_BUNDLE))
        settings = _read(
            cls,
            env_,
            region=env_.get("AWS_REGION") or env_.get("AWS_DEFAULT_REGION") or cls.region,
            model=model,
            index=_read(IndexSettings, env_),
            gate=_read(GateSettings, env_),
            api=_read(ApiSettings, env_),
            backfill=_read(BackfillSettings, env_),
            rollout=_read(RolloutSettings, env_),
            usage=_read(UsageSettings, env_),
            monitor=_read(MonitorSettings, env_),
            retrain=_read(RetrainSettings, env_),
            observability=_read(ObservabilitySettings, env_),
        )
        if not settings.image_bucket:
            settings = dataclasses.replace(settings, image_bucket=settings.bucket)
        return settings

    def require(self, *names: str) -> None:
        """Fail fast, at init, when a handler's required settings are empty.

        >>> Settings.from_env({}).require("bucket")
        Traceback (most recent call last):
        imgsearch.core.config.ConfigError: missing configuration: IMGSEARCH_BUCKET
        """
        variables = {f.name: f.metadata.get("env", f.name) for f in dataclasses.fields(self)}
        missing = [variables[name] for name in names if not getattr(self, name)]
        if missing:
            raise ConfigError("missing configuration: " + ", ".join(missing))
