"""A model rollout end to end on moto: the real ASLs (the rollout nests the backfill and the
index pipeline), the real handlers. A stack serves model A; a candidate B (A's int8 quantisation,
another model id) is rolled out while queries run and uploads and deletes keep arriving; a worse
candidate (random weights, another dimension) is rejected by the gates; a rollback brings A back
in one write; past the retention, the daily cleanup removes what B left."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import embed.app as embed_app
import model_cleanup.app as model_cleanup
import pytest
import query.app as query_app
from imgsearch_devkit.demo.scenes import KINDS, generate
from imgsearch_devkit.local.lambda_dispatch import (
    BACKFILL_HANDLERS,
    PIPELINE_HANDLERS,
    ROLLOUT_HANDLERS,
)
from imgsearch_devkit.ops.registry import register_model
from imgsearch_devkit.target import Target
from ingest_support import REGION, LambdaContext, Uploader, bundle_uri, image_bytes, sqs_event
from query_support import QueryHandler, get, query_load
from tiny_bundle import make_tiny_bundle
from workflow_support import Workflows, jpeg, seed_index, workflows

from imgsearch.catalog.current import read_current
from imgsearch.catalog.registry import require_record
from imgsearch.catalog.report import read_report
from imgsearch.catalog.rollout import read_rollout
from imgsearch.core.clock import ISO_FORMAT
from imgsearch.pipeline.rollback import RollbackError
from imgsearch.rollout.cleanup import cleanup_models
from imgsearch.rollout.steps import rollback_model
from imgsearch.store import EmbeddingStore

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from quantize_bundle import quantize  # noqa: E402

BUCKET, TABLE = "imgsearch-rollout", "imgsearch-rollout-embeddings"
PER_KIND = 3
KIND_NAMES = [f"{colour} {shape}" for colour, shape in KINDS[:6]]


@dataclass
class World(Workflows):
    store: EmbeddingStore
    embed: Any
    query: QueryHandler
    uploader: Uploader

    def event(self, *bodies: dict[str, Any]) -> None:
        assert self.embed(sqs_event(*bodies), LambdaContext()) == {"batchItemFailures": []}


def candidate_bundle(folder: Path, version: str) -> Path:
    """The demo model's files under another id: a model that ranks as well as the champion."""
    shutil.copytree(Path(bundle_uri()), folder)
    manifest = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**manifest, "version": version}))
    return folder


@contextmanager
def world(tmp_path: Path) -> Iterator[World]:
    handlers = {**PIPELINE_HANDLERS, **BACKFILL_HANDLERS, **ROLLOUT_HANDLERS}
    with workflows(tmp_path, BUCKET, TABLE, handlers) as stack:
        built = query_app.build(stack.settings, stack.clients)
        yield World(
            **vars(stack),
            store=EmbeddingStore(TABLE, stack.dynamodb),
            embed=embed_app.build(stack.settings, stack.clients),
            query=QueryHandler(built, built.api.service),  # type: ignore[attr-defined]
            uploader=Uploader(stack.s3, BUCKET),
        )


def seed(w: World) -> dict[str, list[str]]:
    """Captioned scenes in the bucket, a golden set of their kinds, model A's index serving."""
    by_kind: dict[str, list[str]] = {name: [] for name in KIND_NAMES}
    scenes = [(i, s) for i, s in generate(60, seed=5) if f"{s.colour} {s.shape}" in by_kind]
    for n, (image, scene) in enumerate(scenes):
        kind = f"{scene.colour} {scene.shape}"
        if len(by_kind[kind]) < PER_KIND:
            key = f"images/{kind.replace(' ', '-')}/{n:02d}.jpg"
            w.s3.put_object(Bucket=BUCKET, Key=key, Body=jpeg(image))
            by_kind[kind].append(key)
    lines = [json.dumps({"query": kind, "relevant": keys}) for kind, keys in by_kind.items()]
    w.s3.put_object(Bucket=BUCKET, Key="eval/golden.jsonl", Body="\n".join(lines).encode())
    seed_index(w)
    return by_kind


def test_a_rollout_swaps_model_and_index_with_no_failed_query_and_rolls_back(
    tmp_path: Path,
) -> None:
    with world(tmp_path) as w:
        seed(w)
        champion = w.serving()
        w.query.service.refresh_now()
        target = Target(REGION, BUCKET, TABLE)
        # B is A's int8 quantisation (tools/quantize_bundle.py): another model id, close figures.
        bundle = quantize(Path(bundle_uri()), tmp_path / "candidate", threads=1)
        register_model(target, str(tmp_path / "candidate"))
        candidate = bundle.model_id
        assert candidate == f"{champion}-int8"

        def traffic() -> None:
            """Uploads and deletes keep arriving while the rollout runs."""
            up = w.uploader
            for n in range(6):
                # Noise, not scenes: the golden set's rankings stay comparable.
                w.event(up.put(f"images/during/{n}.png", image_bytes(90 + n)))
                time.sleep(0.2)
            w.event(up.delete("images/during/0.png"))

        with query_load(w.query, "red circle", threads=3) as load:
            rollout = w.start("rollout", {"model": candidate})
            traffic()
            deadline = time.monotonic() + 300
            while (d := w.sfn.describe_execution(executionArn=rollout))["status"] == "RUNNING":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            w.query.service.refresh_now()
        assert d["status"] == "SUCCEEDED", d
        assert json.loads(d["output"])["status"] == "promoted"
        assert load.failures == [] and len(load.answers) > 10
        assert {model for _, model in load.answers} <= {champion, candidate}
        assert w.serving() == candidate
        assert get(w.query, "/version").json["model"] == candidate
        built = read_report(w.s3, BUCKET, "indexes/", read_current(w.s3, BUCKET).version).build
        assert (built.mode, built.mode_reason) == (
            "full",
            f"the model changed ({champion} -> {candidate})",
        )  # another model's vectors: never an incremental build
        assert read_rollout(w.s3, BUCKET) is None  # dual writes stopped
        assert require_record(w.s3, BUCKET, candidate).state == "production"

        # Every image uploaded before or during the rollout is searchable with B; deleted hidden.
        keys = {r.key for page in w.store.scan_pages(candidate) for r in page}
        assert {f"images/during/{n}.png" for n in range(1, 6)} <= keys
        assert "images/during/0.png" not in keys
        assert w.store.get("images/during/0.png", champion).status == "deleted"

        # A worse candidate (random weights) is refused by the gates: nothing changes.
        register_model(target, str(make_tiny_bundle(tmp_path / "tiny")))
        rejected = w.run("rollout", {"model": "tiny@1"})
        assert rejected["status"] == "FAILED" and rejected["error"] == "Rollout.Rejected"
        assert w.serving() == candidate
        assert require_record(w.s3, BUCKET, "tiny@1").state == "rejected"
        assert read_rollout(w.s3, BUCKET) is None
        assert any("rejected" in a["Subject"] for a in w.alerts())

        # One command brings A back: one conditional write, served at the next check.
        started = time.monotonic()
        back = rollback_model(w.settings, w.s3)
        assert back.model == champion and time.monotonic() - started < 5
        w.query.service.refresh_now()  # (or its own check got there first)
        answer = get(w.query, "/search", q="red circle", k="3").json
        assert (answer["model"], answer["index_version"]) == (champion, back.version)
        assert require_record(w.s3, BUCKET, candidate).state == "archived"

        # Within its retention nothing of B goes; past it, its items and index versions do (the
        # daily cleanup function, as its schedule and a dry run by hand invoke it).
        store = w.store
        cleanup = model_cleanup.build(w.settings, w.clients)
        assert cleanup({"trigger": "schedule"}, LambdaContext())["models"] == []
        later = datetime.now(UTC) + timedelta(days=w.settings.rollout.retention_days + 1)
        at = later.strftime(ISO_FORMAT)
        dry = cleanup({"now": at, "dry_run": True}, LambdaContext())
        planned = {r["model"]: r for r in dry["models"]}
        assert set(planned) == {candidate, "tiny@1"} and planned[candidate]["items"] == 0
        removed = {r["model"]: r for r in cleanup({"now": at}, LambdaContext())["models"]}
        assert removed[candidate]["items"] >= 17 and removed[candidate]["bytes"] > 0
        assert removed[candidate]["versions"] and removed["tiny@1"]["items"] > 0
        assert not list(store.scan_pages(candidate, status=None))
        cleaned = require_record(w.s3, BUCKET, candidate).cleaned
        assert cleaned["items"] == removed[candidate]["items"]
        assert w.serving() == champion  # the serving model is never touched
        with pytest.raises(RollbackError, match=f"no published, validated index of {candidate}"):
            rollback_model(w.settings, w.s3, to=candidate)
        assert cleanup_models(w.settings, w.s3, store, later) == []  # once


def test_a_second_rollout_is_refused_while_one_runs(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        seed(w)
        register_model(Target(REGION, BUCKET, TABLE), str(candidate_bundle(tmp_path / "c", "3")))
        from imgsearch.catalog.rollout import Rollout, start_rollout

        start_rollout(w.s3, BUCKET, Rollout(candidate="other@1", champion="", execution="x"))
        refused = w.run("rollout", {"model": "demo-clip@3"})
        assert refused["status"] == "FAILED"
        assert "a rollout of other@1 (x) is under way" in refused["cause"]
        assert read_rollout(w.s3, BUCKET).execution == "x"  # the running one's pointer stays
        assert require_record(w.s3, BUCKET, "demo-clip@3").state == "registered"


@pytest.mark.parametrize("model", ["nothing@1", "demo-clip@1"])
def test_a_rollout_of_an_unknown_or_serving_model_is_refused(tmp_path: Path, model: str) -> None:
    with world(tmp_path) as w:
        seed(w)
        refused = w.run("rollout", {"model": model})
        assert refused["status"] == "FAILED"
        assert ("not registered" in refused["cause"]) or ("already" in refused["cause"])
