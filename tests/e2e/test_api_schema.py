"""schemathesis, every check, against the seeded local stack's real HTTP endpoint: the OpenAPI
document the function serves is what it does (zero 5xx, zero schema violations). A short,
deterministic run; ``benchmarks/fuzz.py`` runs a long one.

``schemathesis.toml`` beside this module says which answers to schema-valid input are still
right: the schema cannot say which strings are cursors this API made or which bytes an image.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest
from stack_support import Seeded

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = str(Path(sys.executable).with_name("st"))


def test_schemathesis_finds_no_failure(seeded_stack: Seeded, tmp_path: Path) -> None:
    har = tmp_path / "requests.har"
    run = subprocess.run(
        [
            ST,
            "--config-file",
            str(CONFIG),
            "run",
            f"{seeded_stack.target.api_url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "15",
            "--generation-deterministic",
            "--max-time",
            "50",
            "--report",
            "har",
            "--report-har-path",
            str(har),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = collections.Counter(entry["response"]["status"] for entry in entries)
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[200] > 0 and len(entries) > 100, statuses
