"""The model lifecycle through the CLI against the running local stack: register the int8
quantisation of the serving demo model (another model id), roll it out (the rollout state
machine nests the backfill and the index pipeline on moto), list, search, roll back."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imgsearch_devkit.project import project_root
from stack_support import Seeded, run_cli

from imgsearch.rollout.cleanup import cleanup_models
from imgsearch.store import EmbeddingStore

pytestmark = pytest.mark.slow


def int8_demo_bundle(out: Path) -> str:
    """``tools/quantize_bundle.py`` on the committed demo bundle; returns its model id."""
    tools = str(project_root() / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from quantize_bundle import quantize

    return quantize(project_root() / "models" / "demo-clip", out, threads=1).model_id


def test_register_roll_out_and_roll_back(seeded_stack: Seeded, tmp_path: Path) -> None:
    bundle = tmp_path / "demo-clip-int8"
    candidate = int8_demo_bundle(bundle)
    serving = json.loads(run_cli(seeded_stack, "model", "list", "--json")[1])["models"]
    champion = next(m["model"] for m in serving if m["serving"])
    assert candidate != champion and candidate.endswith("-int8")

    try:
        status, out, output = run_cli(seeded_stack, "model", "register", str(bundle), "--json")
        assert status == 0, output
        assert json.loads(out)["model_id"] == candidate

        status, out, output = run_cli(
            seeded_stack, "model", "rollout", candidate, "--wait", "--json"
        )
        assert status == 0, output
        result = json.loads(out)
        assert result["status"] == "SUCCEEDED" and result["result"]["candidate"] == candidate
        assert [s["state"] for s in result["states"]][-2:] == ["Promote", "Promoted"]
        models = {
            m["model"]: m
            for m in json.loads(run_cli(seeded_stack, "model", "list", "--json")[1])["models"]
        }
        assert models[candidate]["serving"] and models[candidate]["state"] == "production"
        status, out, output = run_cli(seeded_stack, "search", "red circle", "-k", "2", "--json")
        assert status == 0 and json.loads(out)["model"] == candidate, output

        status, out, output = run_cli(seeded_stack, "model", "rollback", "--json")
        assert status == 0, output
        assert json.loads(out)["model"] == champion
        status, out, output = run_cli(seeded_stack, "search", "red circle", "-k", "2", "--json")
        assert status == 0 and json.loads(out)["model"] == champion, output
    finally:
        # The session's stack serves the other tests: the candidate's items and index versions
        # go again, as a cleanup past its retention would take them.
        target = seeded_stack.target
        store = EmbeddingStore(target.table, target.client("dynamodb"))
        later = datetime.now(UTC) + timedelta(days=target.settings().rollout.retention_days + 1)
        cleanup_models(target.settings(), target.client("s3"), store, now=later)
