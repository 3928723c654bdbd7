"""``functions/requirements.txt`` (the image's lock) matches ``layers/pyproject.toml``.

The lock is written by ``scripts/lock_runtime.py``; regenerating it needs the package index, so
this test checks offline what must hold: every runtime dependency is pinned inside its range,
every pin carries a sha256, and nothing of the developer kit is in it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "functions" / "requirements.txt"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.M)


def pins() -> dict[str, str]:
    text = LOCK.read_text(encoding="utf-8")
    entries = [line for line in text.splitlines() if line and not line.startswith(("#", " "))]
    found = {canonicalize_name(name): version for name, version, _ in PIN.findall(text)}
    assert len(found) == len(entries), "every entry is `name==version \\` + one --hash line"
    return found


def project(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))["project"]


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    locked = pins()
    for line in project(ROOT / "layers" / "pyproject.toml")["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is a runtime dependency but not in the lock"
        assert requirement.specifier.contains(locked[name]), (
            f"the lock pins {name}=={locked[name]}, outside {requirement.specifier}: "
            "run scripts/lock_runtime.py"
        )


def test_the_lock_holds_nothing_of_the_developer_kit() -> None:
    locked = pins()
    devkit = project(ROOT / "layers" / "devkit" / "pyproject.toml")["dependencies"]
    own = {canonicalize_name(Requirement(line).name) for line in devkit} - {"imgsearch"}
    # tqdm is a dependency of usearch too (usearch/index.py imports it), so it stays.
    assert own & set(locked) <= {"tqdm"}
    assert "imgsearch" not in locked and "huggingface-hub" not in locked
