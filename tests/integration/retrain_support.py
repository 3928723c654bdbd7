"""The moto world the retraining tests share: the real ASLs and handlers (retraining, the model
rollout, the backfill and the index pipeline), the query function, the usage log through
CloudWatch Logs and Firehose, and the training job's own entry point run in-process as the
SageMaker emulation runs it; a seeded demo corpus, and simulated users who click."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import query.app as query_app
from imgsearch_devkit.demo.model_eval import kind_queries
from imgsearch_devkit.demo.scenes import Scene, describes, generate
from imgsearch_devkit.demo.users import background_queries, choose_clicks
from imgsearch_devkit.local.lambda_dispatch import (
    BACKFILL_HANDLERS,
    PIPELINE_HANDLERS,
    RETRAIN_HANDLERS,
    ROLLOUT_HANDLERS,
)
from imgsearch_devkit.local.training_jobs import training_jobs
from ingest_support import REGION
from query_support import QueryHandler, get, http_event, invoke
from usage_support import feedback_event, usage_log
from workflow_support import Workflows, jpeg, seed_index, workflows

BUCKET, TABLE = "imgsearch-retrain", "imgsearch-retrain-embeddings"
CORPUS = 800
"""Twenty images of each colour x shape kind: about 5 per kind and background. With 400 the
held-out loss rose from the first epoch on (benchmarks/retrain.py --sweep)."""
HYPERPARAMETERS = {"seed": "1", "threads": "1"}
"""The job's defaults, on one thread: the suite runs beside other tests, and two threads would
oversubscribe two cores (measured: 3x slower)."""


@dataclass
class World(Workflows):
    query: QueryHandler
    scenes: dict[str, Scene]
    flush: Any

    def why(self, run: dict[str, Any]) -> str:
        """What a failed run's report says, for an assertion's message."""
        name = run["executionArn"].rpartition(":")[2]
        try:
            report = self.read_json(f"retrain/{name}/report.json")
        except self.s3.exceptions.NoSuchKey:
            report = None
        return f"{run.get('error')}: {run.get('cause')}; report: {report}"

    def read_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@contextmanager
def world(tmp_path: Path) -> Iterator[World]:
    handlers = {**PIPELINE_HANDLERS, **BACKFILL_HANDLERS, **ROLLOUT_HANDLERS, **RETRAIN_HANDLERS}
    env = {
        "IMGSEARCH_TRAINING_IMAGE_URI": "local",
        "IMGSEARCH_RETRAIN_MIN_NEW_JUDGMENTS": "50",
        "IMGSEARCH_RETRAIN_HYPERPARAMETERS": json.dumps(HYPERPARAMETERS),
    }
    with (
        workflows(tmp_path, BUCKET, TABLE, handlers, env, retrain=True) as stack,
        usage_log(BUCKET) as stream,
        training_jobs(lambda: boto3.client("s3", region_name=REGION)),
    ):
        built = query_app.build(stack.settings, stack.clients)
        yield World(
            **vars(stack),
            query=QueryHandler(built, built.api.service),  # type: ignore[attr-defined]
            scenes={},
            flush=stream.flush,
        )


def seed(w: World) -> None:
    """A balanced corpus of demo scenes, a golden set of its colour x shape kinds, demo-clip@1
    serving."""
    for n, (image, scene) in enumerate(generate(CORPUS, seed=77, balanced=True)):
        key = f"images/scene-{n:03d}.jpg"
        w.s3.put_object(Bucket=BUCKET, Key=key, Body=jpeg(image))
        w.scenes[key] = scene
    lines = [
        json.dumps({"query": q, "relevant": [k for k, s in w.scenes.items() if describes(s, q)]})
        for q in kind_queries()
    ]
    w.s3.put_object(Bucket=BUCKET, Key="eval/golden.jsonl", Body="\n".join(lines).encode())
    seed_index(w)
    w.query.service.refresh_now()


def simulate_users(w: World, shuffled: bool) -> int:
    """Every background query searched once; the results that match clicked (or as many
    random ones). Returns the clicks sent."""
    rng = np.random.default_rng(3)
    clicks = 0
    for query in background_queries():
        answer = get(w.query, "/search", q=query, k="10").json
        shown = [r["key"] for r in answer["results"]]
        for key in choose_clicks(query, shown, w.scenes, rng, shuffled=shuffled):
            body = feedback_event(answer["query_id"], key, rank=shown.index(key) + 1)
            headers = {"content-type": "application/json"}
            reply = invoke(w.query, http_event("POST", "/feedback", body=body, headers=headers))
            assert reply.status == 202, reply.text
            clicks += 1
    w.flush()
    return clicks
