"""The Makefile's targets, as a new developer runs them."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_lint_checks_what_git_tracks_and_not_scratch_files() -> None:
    scratch = ROOT / f"scratch_{uuid.uuid4().hex[:8]}.py"
    scratch.write_text("import os\n")  # unused import: ruff would fail on it
    try:
        planned = subprocess.run(
            ["make", "--dry-run", "--always-make", "lint"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        scratch.unlink()
    ruff = [line for line in planned.splitlines() if "ruff check" in line]
    assert len(ruff) == 1, planned
    assert "layers/imgsearch/core/config.py" in ruff[0]
    assert scratch.name not in ruff[0]
