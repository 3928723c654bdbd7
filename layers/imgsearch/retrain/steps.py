"""The retraining workflow's own steps; a SageMaker training job does the training.

``statemachine/retrain.asl.json``::

    Prepare (lock, new data?, the dataset) -> Train (SageMaker: fine-tune, export, parity)
      -> Evaluate (candidate vs champion, held out) -> Register (validated | rejected)
      -> Rollout (a validated candidate: the model rollout starts) -> Finish
    skip -> Finish;  any failure -> Fail (alert, lock released; nothing serving changes)

::

    prepared = prepare(settings, clients, PrepareInput.parse(event), is_running)
    evaluated = evaluate(settings, clients, EvaluateInput.parse(event))
    registered = register(settings, clients, RegisterInput.parse(event))
    result = finish(settings, clients, FinishInput.parse(event))
    result = fail(settings, clients, FailInput.parse(event))
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import numpy as np
from pydantic import Field

from imgsearch.catalog.contract import Contract, Part, read_object, write_object
from imgsearch.catalog.current import read_current
from imgsearch.catalog.registry import (
    Evaluation,
    bundle_prefix,
    bundle_uri,
    list_records,
    read_record,
    transition,
)
from imgsearch.catalog.retraining import (
    LatestRetrain,
    RetrainLock,
    read_latest_retrain,
    release_lock,
    take_lock,
    write_latest,
)
from imgsearch.core.aws import Clients, object_exists, publish_alert
from imgsearch.core.clock import ISO_FORMAT, now_iso
from imgsearch.core.config import Settings
from imgsearch.core.errors import ImgsearchError
from imgsearch.eval.golden import load_golden
from imgsearch.model import ClipModel
from imgsearch.model.bundle import bundle_model_id, open_bundle
from imgsearch.pipeline.contracts import CaughtError
from imgsearch.pipeline.failure import describe_error
from imgsearch.retrain.candidate import embed_keys, unpack
from imgsearch.retrain.dataset import (
    HELDOUT_FILE,
    TRAIN_FILE,
    DatasetManifest,
    Example,
    build_dataset,
    caption_examples,
    feedback_examples,
    golden_examples,
    read_examples,
    write_dataset,
)
from imgsearch.retrain.evaluate import EvaluationReport, compare, failed_training
from imgsearch.rollout.registration import register_bundle
from imgsearch.store import EmbeddingStore
from imgsearch.usage.join import join
from imgsearch.usage.reader import UsageReader
from imgsearch.usage.records import FeedbackRecord, IngestRecord

logger = logging.getLogger(__name__)

Trigger = Literal["schedule", "new-data", "degradation", "on-demand"]
JOB_NAME_LIMIT = 63
TRAINING_SHARE = 0.8
"""The share of the job's time limit spent training; the rest exports and checks parity."""


class RetrainError(ImgsearchError):
    """A run that cannot go on: not set up, nothing serving, a model without a checkpoint."""


class RetrainInput(Contract):
    """The execution input: ``{"trigger": "on-demand"}``; ``force`` trains on whatever data
    there is, new or not."""

    LABEL = "the retraining input"

    trigger: Trigger = "on-demand"
    detail: dict[str, Any] = Field(default_factory=dict)
    """What fired it: the alarm's name and state, the counts that crossed the threshold."""
    force: bool = False
    by: str = ""


class PrepareInput(Contract):
    LABEL = "the Prepare step's input"

    input: RetrainInput
    execution: str


class Training(Part):
    """What the Train state passes to SageMaker ``CreateTrainingJob``."""

    job_name: str
    hyperparameters: dict[str, str]
    dataset_uri: str
    images_manifest_uri: str
    parent_uri: str
    output_uri: str
    max_runtime_seconds: int
    """SageMaker stops the job after this; the job stops training before it, to export."""


class Prepared(Contract):
    """Prepare's output (``$.prepare``)."""

    LABEL = "the Prepare step's output"

    status: Literal["ready", "skipped"]
    reason: str = ""
    run: str
    execution: str
    trigger: Trigger
    started_at: str
    champion: str = ""
    candidate: str = ""
    new_judgments: int = 0
    new_images: int = 0
    dataset: DatasetManifest | None = None
    training: Training | None = None


class Trained(Part):
    """The Train state's result (``$.train``): from ``DescribeTrainingJob``."""

    model_artifacts: str


class EvaluateInput(Contract):
    LABEL = "the Evaluate step's input"

    prepare: Prepared
    train: Trained


class Evaluated(Contract):
    LABEL = "the Evaluate step's output"

    passed: bool
    registrable: bool
    """A bundle was trained and exported (even if it failed the criteria)."""
    reason: str = ""
    report: str
    """The evaluation report's key (the service's bucket)."""
    training: dict[str, Any] = Field(default_factory=dict)


class RegisterInput(Contract):
    LABEL = "the Register step's input"

    prepare: Prepared
    train: Trained
    evaluate: Evaluated


class Registered(Contract):
    LABEL = "the Register step's output"

    model: str
    state: str


class FinishInput(Contract):
    LABEL = "the Finish step's input"

    prepare: Prepared
    evaluate: Evaluated | None = None
    registered: Registered | None = None
    rollout: dict[str, Any] = Field(default_factory=dict)
    """The started rollout (``execution``), when the candidate was validated."""


class FailState(Part):
    prepare: Prepared | None = None
    failed: dict[str, CaughtError] = Field(default_factory=dict)


class FailInput(Contract):
    LABEL = "the Fail step's input"

    input: RetrainInput
    execution: str
    state: FailState = Field(default_factory=FailState)


class RetrainResult(Contract):
    """A run's end (``<prefix><run>/report.json``, the execution's output)."""

    LABEL = "the retraining result"

    status: Literal["skipped", "validated", "rejected", "failed"]
    run: str
    trigger: str = ""
    reason: str = ""
    step: str = ""
    """The step that failed."""
    champion: str = ""
    candidate: str = ""
    dataset: DatasetManifest | None = None
    evaluation: str = ""
    rollout: str = ""
    """The model rollout's execution a validated candidate started."""
    finished_at: str = ""


def run_name(execution: str) -> str:
    return execution.rpartition(":")[2]


def run_prefix(settings: Settings, run: str) -> str:
    return f"{settings.retrain.prefix}{run}/"


def _code_version() -> str:
    try:
        return version("imgsearch")
    except PackageNotFoundError:
        return "unknown"


def _since(latest: LatestRetrain | None) -> str:
    return latest.started_at if latest else ""


def _next_version(s3: Any, bucket: str, name: str) -> str:
    numbers = [
        int(v)
        for r in list_records(s3, bucket)
        if (parts := r.model_id.partition("@"))[0] == name and (v := parts[2]).isdigit()
    ]
    return str(max(numbers, default=0) + 1)


def _parent(settings: Settings, s3: Any, champion: str) -> str:
    """The champion's bundle in the registry, with its checkpoint: registered first if it is
    this function's own bundle (the embedded demo model) and was never registered."""
    record = read_record(s3, settings.bucket, champion)
    if record is None:
        uri = settings.model.uri
        if bundle_model_id(uri, s3, settings.model.cache_dir) != champion:
            raise RetrainError(
                f"{champion} serves but is neither registered nor this function's bundle: "
                "register it (imgsearch model register) to retrain from it"
            )
        bundle = open_bundle(uri, settings.model.cache_dir, s3)
        record, _ = register_bundle(s3, settings.bucket, bundle, source=uri, by="retrain")
        # It serves already: recorded as production, so that a rollout archives it and a
        # rollback to it brings it back as production.
        why = "serving when it was registered"
        record = transition(s3, settings.bucket, record, "validated", by="retrain", reason=why)
        transition(s3, settings.bucket, record, "production", by="retrain", reason=why)
    manifest_key = bundle_prefix(champion) + "model.json"
    manifest = json.loads(s3.get_object(Bucket=settings.bucket, Key=manifest_key)["Body"].read())
    checkpoint = manifest.get("checkpoint")
    file = checkpoint.get("file") if isinstance(checkpoint, dict) else None
    if not file or not object_exists(s3, settings.bucket, bundle_prefix(champion) + file):
        raise RetrainError(
            f"{champion} has no training checkpoint in the registry (model.json's "
            '"checkpoint"), so there is nothing to fine-tune from: register its bundle from a '
            "folder that holds the checkpoint (imgsearch model register models/demo-clip; the "
            "Lambda image leaves checkpoints out), see docs/retraining.md"
        )
    return bundle_uri(settings.bucket, champion)


def _existing(store: EmbeddingStore, model: str) -> Callable[[Any], set[str]]:
    def existing(keys: Any) -> set[str]:
        return {k for k, r in store.batch_get(keys, model).items() if r.status == "ok"}

    return existing


def _captions(settings: Settings, s3: Any) -> list[Any]:
    examples = []
    prefix = settings.retrain.captions_prefix
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".jsonl"):
                body = s3.get_object(Bucket=settings.bucket, Key=item["Key"])["Body"].read()
                examples += caption_examples(body, item["Key"])
    return examples


def prepare(
    settings: Settings,
    clients: Clients,
    payload: PrepareInput,
    is_running: Callable[[str], bool],
    now: datetime | None = None,
) -> Prepared:
    """Take the lock, decide whether there is enough new data, write the dataset."""
    options = settings.retrain
    if not options.training_image:
        raise RetrainError(
            "retraining is not set up: the stack has no training image (TrainingImageUri; "
            "build layers/training/Dockerfile and push it to ECR, docs/retraining.md)"
        )
    s3, run = clients.s3, run_name(payload.execution)
    started = (now or datetime.now(UTC)).astimezone(UTC)
    started_at = started.strftime(ISO_FORMAT)
    take_lock(
        s3,
        settings.bucket,
        options.prefix,
        RetrainLock(
            execution=payload.execution, trigger=payload.input.trigger, started_at=started_at
        ),
        is_running,
    )
    base = Prepared(
        status="skipped",
        run=run,
        execution=payload.execution,
        trigger=payload.input.trigger,
        started_at=started_at,
    )
    current = read_current(s3, settings.bucket, settings.index.prefix)
    if current is None:
        raise RetrainError("nothing serves yet (no indexes/current.json): nothing to retrain")
    champion = current.model
    parent_uri = _parent(settings, s3, champion)

    since = _since(read_latest_retrain(s3, settings.bucket, options.prefix))
    reader = UsageReader(s3, settings.bucket, settings.usage.prefix)
    records = list(reader.records(started - timedelta(days=options.data_days), started))
    new_judgments = sum(isinstance(r, FeedbackRecord) and r.time > since for r in records)
    new_images = sum(isinstance(r, IngestRecord) and r.time > since for r in records)
    base = base.model_copy(
        update={"champion": champion, "new_judgments": new_judgments, "new_images": new_images}
    )
    if (
        not payload.input.force
        and new_judgments < options.min_new_judgments
        and new_images < options.min_new_images
    ):
        return base.model_copy(
            update={
                "reason": f"too little new data since the last run ({since or 'never'}): "
                f"{new_judgments} judgments (needs {options.min_new_judgments}) and "
                f"{new_images} images (needs {options.min_new_images})"
            }
        )

    joined, _ = join(records)
    feedback, dropped = feedback_examples(joined)
    golden = load_golden(s3, settings.bucket, settings.gate.golden_key)
    store = EmbeddingStore(settings.table, clients.dynamodb)
    dataset = build_dataset(
        feedback,
        _captions(settings, s3),
        golden_examples(golden),
        _existing(store, champion),
        options.heldout_fraction,
        dropped,
    )
    if len(dataset.train) < options.min_train_queries:
        return base.model_copy(
            update={
                "reason": f"too little data to train on: {len(dataset.train)} training queries "
                f"(needs {options.min_train_queries})"
            }
        )
    prefix = run_prefix(settings, run)
    manifest = write_dataset(
        s3,
        settings.bucket,
        prefix + "dataset/",
        dataset,
        settings.image_bucket,
        prefix + "images.manifest",
        created_at=started_at,
    )
    name = champion.partition("@")[0]
    candidate = f"{name}@{_next_version(s3, settings.bucket, name)}"
    hyperparameters = {
        "name": name,
        "version": candidate.partition("@")[2],
        "parent": champion,
        "max_seconds": str(int(options.training_max_seconds * TRAINING_SHARE)),
        **{str(k): str(v) for k, v in json.loads(options.hyperparameters).items()},
    }
    job = re.sub(r"[^A-Za-z0-9-]", "-", f"imgsearch-{run}")[:JOB_NAME_LIMIT].rstrip("-")
    logger.info(
        "retraining %s from %s: %d training and %d held-out queries, %d images",
        candidate,
        champion,
        manifest.train_queries,
        manifest.heldout_queries,
        manifest.images,
    )
    return base.model_copy(
        update={
            "status": "ready",
            "candidate": candidate,
            "dataset": manifest,
            "training": Training(
                job_name=job,
                hyperparameters=hyperparameters,
                dataset_uri=f"s3://{settings.bucket}/{prefix}dataset/",
                images_manifest_uri=f"s3://{settings.bucket}/{prefix}images.manifest",
                parent_uri=parent_uri,
                output_uri=f"s3://{settings.bucket}/{prefix}output/",
                max_runtime_seconds=options.training_max_seconds,
            ),
        }
    )


def _champion_vectors(
    store: EmbeddingStore, model: str, keys: list[str]
) -> tuple[list[str], np.ndarray]:
    found = store.batch_get(keys, model)
    kept = [k for k in keys if k in found and found[k].vector is not None]
    rows = [found[k].vector for k in kept]
    return kept, np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)


def evaluate(settings: Settings, clients: Clients, payload: EvaluateInput) -> Evaluated:
    """Candidate vs champion on the held-out queries; the report under the run's prefix."""
    s3, prepared = clients.s3, payload.prepare
    key = run_prefix(settings, prepared.run) + "evaluation.json"
    output = unpack(s3, payload.train.model_artifacts, settings.model.cache_dir)
    if output.bundle is None:
        report = failed_training(
            prepared.candidate,
            prepared.champion,
            output.status,
            str(output.training.get("reason", "")),
        )
    else:
        candidate = ClipModel(output.bundle, settings.model.threads)
        if candidate.model_id != prepared.candidate:
            raise RetrainError(
                f"the training job wrote {candidate.model_id}, not {prepared.candidate}"
            )
        champion = ClipModel.load(
            bundle_uri(settings.bucket, prepared.champion),
            settings.model.threads,
            settings.model.cache_dir,
            s3,
        )
        heldout = read_examples(s3, settings.bucket, _dataset_key(settings, prepared, HELDOUT_FILE))
        store = EmbeddingStore(settings.table, clients.dynamodb)
        keys = _evaluation_keys(settings, s3, prepared, heldout)
        keys, champion_images = _champion_vectors(store, prepared.champion, keys)
        embedded, candidate_images = embed_keys(candidate, s3, settings.image_bucket, keys)
        row = {key: i for i, key in enumerate(keys)}
        report = compare(
            candidate,
            champion,
            heldout,
            embedded,
            candidate_images,
            champion_images[[row[k] for k in embedded]],
            settings.retrain,
        )
    write_object(s3, settings.bucket, key, report)
    logger.info(
        "evaluated %s against %s: %s",
        prepared.candidate,
        prepared.champion,
        "passed" if report.passed else report.reason,
    )
    return Evaluated(
        passed=report.passed,
        registrable=output.bundle is not None,
        reason=report.reason,
        report=key,
        training=output.training,
    )


def _dataset_key(settings: Settings, prepared: Prepared, name: str) -> str:
    return f"{run_prefix(settings, prepared.run)}dataset/{name}"


def _evaluation_keys(
    settings: Settings, s3: Any, prepared: Prepared, heldout: list[Example]
) -> list[str]:
    """The images ranked: the held-out examples' first, then the training ones, up to the
    cap (more distractors make the ranking harder, as the full index is)."""
    train = read_examples(s3, settings.bucket, _dataset_key(settings, prepared, TRAIN_FILE))
    named = (k for e in (*heldout, *train) for k in (*e.positives, *e.negatives))
    return list(dict.fromkeys(named))[: settings.retrain.eval_max_images]


def register(settings: Settings, clients: Clients, payload: RegisterInput) -> Registered:
    """The candidate in the registry with its lineage, ``validated`` or ``rejected``."""
    s3, prepared, evaluated = clients.s3, payload.prepare, payload.evaluate
    output = unpack(s3, payload.train.model_artifacts, settings.model.cache_dir)
    if output.bundle is None:
        raise RetrainError("the training job produced no bundle to register")
    report = read_object(s3, settings.bucket, evaluated.report, EvaluationReport)
    figures = report.figures.get("candidate", {}) if report else {}
    lineage = {
        "trigger": prepared.trigger,
        "trigger_detail": prepared.execution,
        "dataset_sha256": prepared.dataset.sha256 if prepared.dataset else "",
        "dataset": f"{run_prefix(settings, prepared.run)}dataset/",
        "parameters": prepared.training.hyperparameters if prepared.training else {},
        "code_version": {"imgsearch": _code_version(), "image": settings.retrain.training_image},
        "training": {k: v for k, v in output.training.items() if k != "history"},
    }
    by = f"retrain {prepared.run}"
    record, _ = register_bundle(
        s3,
        settings.bucket,
        output.bundle,
        source=payload.train.model_artifacts,
        by=by,
        parent=prepared.champion,
        lineage=lineage,
    )
    if record.state == "registered":
        evaluation = Evaluation(
            at=now_iso(),
            kind="retrain",
            figures=figures,
            report=evaluated.report,
            passed=evaluated.passed,
        )
        record = record.model_copy(update={"evaluations": [*record.evaluations, evaluation]})
        state = "validated" if evaluated.passed else "rejected"
        record = transition(s3, settings.bucket, record, state, by=by, reason=evaluated.reason)
    return Registered(model=record.model_id, state=record.state)


def _end(
    settings: Settings,
    clients: Clients,
    result: RetrainResult,
    execution: str,
    prepared: Prepared | None,
) -> None:
    """The run's report, ``latest.json`` (once its data was read, and not for a skip: that
    data is still new to the next run), the lock released if this run holds it."""
    s3 = clients.s3
    write_object(s3, settings.bucket, run_prefix(settings, result.run) + "report.json", result)
    if prepared is not None and result.status != "skipped":
        write_latest(
            s3,
            settings.bucket,
            settings.retrain.prefix,
            LatestRetrain(
                execution=prepared.execution,
                trigger=prepared.trigger,
                started_at=prepared.started_at,
                status=result.status,
                candidate=result.candidate,
                finished_at=result.finished_at,
            ),
        )
    release_lock(s3, settings.bucket, settings.retrain.prefix, execution)


def finish(settings: Settings, clients: Clients, payload: FinishInput) -> RetrainResult:
    """Record the run's end: its report, ``latest.json`` (not for a skip: its data is still
    new to the next run), the lock released; an alert unless the candidate was validated."""
    prepared, evaluated, registered = payload.prepare, payload.evaluate, payload.registered
    if prepared.status == "skipped":
        status, reason = "skipped", prepared.reason
    elif registered is not None:
        status = "validated" if registered.state == "validated" else "rejected"
        reason = evaluated.reason if evaluated else ""
    else:
        status, reason = "failed", evaluated.reason if evaluated else "no evaluation"
    result = RetrainResult(
        status=status,
        run=prepared.run,
        trigger=prepared.trigger,
        reason=reason,
        step="Evaluate" if status == "failed" else "",
        champion=prepared.champion,
        candidate=prepared.candidate,
        dataset=prepared.dataset,
        evaluation=evaluated.report if evaluated else "",
        rollout=str(payload.rollout.get("execution", "")),
        finished_at=now_iso(),
    )
    _end(settings, clients, result, prepared.execution, prepared)
    if status in ("rejected", "failed"):
        publish_alert(
            clients.sns,
            settings.alerts_topic_arn,
            f"imgsearch retraining {status}: {reason}",
            result.to_json().decode(),
        )
    logger.info("retraining run %s: %s %s", prepared.run, status, reason)
    return result


def fail(settings: Settings, clients: Clients, payload: FailInput) -> RetrainResult:
    """A step failed: report it, release the lock, alert with the step and the reason."""
    state, step, reason = payload.state, "", "unknown"
    if state.failed:
        step, caught = next(iter(state.failed.items()))
        name, message, _details = describe_error(caught)
        reason = f"{name}: {message}"
    prepared = state.prepare
    result = RetrainResult(
        status="failed",
        run=run_name(payload.execution),
        trigger=payload.input.trigger,
        reason=reason,
        step=step,
        champion=prepared.champion if prepared else "",
        candidate=prepared.candidate if prepared else "",
        dataset=prepared.dataset if prepared else None,
        finished_at=now_iso(),
    )
    # Prepare itself may have failed after it took the lock: released by the execution's id.
    _end(settings, clients, result, payload.execution, prepared)
    publish_alert(
        clients.sns,
        settings.alerts_topic_arn,
        f"imgsearch retraining failed at {step}: {reason}",
        result.to_json().decode(),
    )
    logger.error("retraining run %s failed at %s: %s", result.run, step, reason)
    return result
