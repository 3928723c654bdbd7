"""The model lifecycle through the CLI against the running local stack: register a bundle, roll
it out (the rollout state machine nests the backfill and the index pipeline on moto), list,
roll back."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imgsearch_devkit.project import project_root
from stack_support import Seeded, run_cli

from imgsearch.rollout.cleanup import cleanup_models
from imgsearch.store import EmbeddingStore

pytestmark = pytest.mark.slow


def test_register_roll_out_and_roll_back(seeded_stack: Seeded, tmp_path: Path) -> None:
    # The demo model's files under another version: a candidate that ranks as well.
    bundle = tmp_path / "demo-clip-2"
    shutil.copytree(project_root() / "models" / "demo-clip", bundle)
    manifest = json.loads((bundle / "model.json").read_text())
    (bundle / "model.json").write_text(json.dumps({**manifest, "version": "2"}))
    serving = json.loads(run_cli(seeded_stack, "model", "list", "--json")[1])["models"]
    champion = next(m["model"] for m in serving if m["serving"])

    try:
        status, out, output = run_cli(seeded_stack, "model", "register", str(bundle), "--json")
        assert status == 0, output
        assert json.loads(out)["model_id"] == "demo-clip@2"

        status, out, output = run_cli(
            seeded_stack, "model", "rollout", "demo-clip@2", "--wait", "--json"
        )
        assert status == 0, output
        result = json.loads(out)
        assert result["status"] == "SUCCEEDED" and result["result"]["candidate"] == "demo-clip@2"
        assert [s["state"] for s in result["states"]][-2:] == ["Promote", "Promoted"]
        models = {
            m["model"]: m
            for m in json.loads(run_cli(seeded_stack, "model", "list", "--json")[1])["models"]
        }
        assert models["demo-clip@2"]["serving"] and models["demo-clip@2"]["state"] == "production"
        status, out, output = run_cli(seeded_stack, "search", "red circle", "-k", "2", "--json")
        assert status == 0 and json.loads(out)["model"] == "demo-clip@2", output

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
