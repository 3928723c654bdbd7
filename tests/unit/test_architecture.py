"""The shape of the code: imports run one way, and nothing configures a handler through the
process environment.

Tiers (docs/architecture.md): ``core`` -> ``model``/``store``/``catalog``/``usage``/``ann`` ->
``eval`` -> ``ingest``/``pipeline``/``query``/``monitor`` -> ``backfill``/``rollout`` ->
``functions/``;
packages of one tier are independent of each other, and the developer kit (``imgsearch_devkit``)
imports the runtime, never the reverse. The training job (``imgsearch_training``, the SageMaker
image) imports the runtime and never the developer kit; nothing in the runtime imports it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "layers" / "imgsearch"
DEVKIT = ROOT / "layers" / "devkit" / "imgsearch_devkit"
TRAINING = ROOT / "layers" / "training" / "imgsearch_training"
FUNCTIONS = ROOT / "functions"

TIERS = {
    "core": 0,
    "model": 1,
    "store": 1,
    "catalog": 1,
    "usage": 1,
    "ann": 1,
    "eval": 2,
    "ingest": 3,
    "pipeline": 3,
    "query": 3,
    "monitor": 3,
    "backfill": 4,
    "rollout": 4,
    "retrain": 5,
}
OUTSIDE_THE_IMAGE = {"imgsearch_devkit", "imgsearch_client", "imgsearch_training"}
"""Distributions the Lambda image never installs."""
OUTSIDE_THE_TRAINING_IMAGE = {"imgsearch_devkit", "imgsearch_client"}
"""Distributions the training image never installs (it has the runtime and the job only)."""


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names), including imports inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def runtime_package(module: str) -> str | None:
    """``imgsearch.query.http.api`` -> ``query``; ``None`` outside the runtime's packages."""
    parts = module.split(".")
    if parts[0] != "imgsearch" or len(parts) < 2:
        return None
    return parts[1]


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "egg-info" not in str(p))


def wrong_way_imports(runtime: Path = RUNTIME, functions: Path = FUNCTIONS) -> list[str]:
    problems = []
    for path in python_files(runtime):
        relative = path.relative_to(runtime)
        own = relative.parts[0] if len(relative.parts) > 1 else None
        for module in imported_modules(path):
            if module.split(".")[0] in OUTSIDE_THE_IMAGE:
                problems.append(f"{relative}: the runtime imports {module}, not in the image")
            target = runtime_package(module)
            if own is None or target is None or target == own:
                continue
            if target not in TIERS:
                problems.append(f"{relative}: imports {module}, a package outside the tiers")
            elif TIERS[target] >= TIERS[own]:
                problems.append(
                    f"{relative} (tier {TIERS[own]}, {own}) imports {module} "
                    f"(tier {TIERS[target]}, {target})"
                )
    for path in python_files(functions):
        for module in imported_modules(path):
            if module.split(".")[0] in OUTSIDE_THE_IMAGE:
                problems.append(f"functions/{path.relative_to(functions)} imports {module}")
    return problems


def training_imports(training: Path = TRAINING) -> list[str]:
    """What the training job imports that its image does not have."""
    return [
        f"{path.relative_to(training)} imports {module}"
        for path in python_files(training)
        for module in sorted(imported_modules(path))
        if module.split(".")[0] in OUTSIDE_THE_TRAINING_IMAGE
    ]


def test_imports_run_one_way() -> None:
    assert wrong_way_imports() == []


def test_the_training_job_imports_the_runtime_and_never_the_developer_kit() -> None:
    assert python_files(TRAINING), "no training package found"
    assert training_imports() == []
    imports = {m for path in python_files(TRAINING) for m in imported_modules(path)}
    assert any(m.startswith("imgsearch.") for m in imports)


def test_the_training_check_catches_the_developer_kit(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text("def f():\n    from imgsearch_devkit.demo import users\n")
    assert training_imports(tmp_path) == ["job.py imports imgsearch_devkit.demo"]


def test_every_runtime_package_has_a_tier() -> None:
    packages = {p.name for p in RUNTIME.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(TIERS)


def test_the_check_catches_wrong_way_imports(tmp_path: Path) -> None:
    runtime, functions = tmp_path / "imgsearch", tmp_path / "functions"
    modules = {
        runtime / "core" / "config.py": "from imgsearch.query.service import SearchService\n",
        runtime / "store" / "table.py": "def f():\n    import imgsearch.catalog.current\n",
        runtime / "query" / "service.py": "from imgsearch_devkit.target import Target\n",
        runtime / "model" / "bundle.py": "import imgsearch_training.checkpoint\n",
        runtime / "pipeline" / "build.py": "from imgsearch.core.vectors import prepare\n",
        functions / "query" / "app.py": "from imgsearch_devkit.local import stack\n",
    }
    for path, text in modules.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert wrong_way_imports(runtime, functions) == [
        "core/config.py (tier 0, core) imports imgsearch.query.service (tier 3, query)",
        "model/bundle.py: the runtime imports imgsearch_training.checkpoint, not in the image",
        "query/service.py: the runtime imports imgsearch_devkit.target, not in the image",
        "store/table.py (tier 1, store) imports imgsearch.catalog.current (tier 1, catalog)",
        "functions/query/app.py imports imgsearch_devkit.local",
    ]


ENVIRONMENT_WRITES = re.compile(
    r"monkeypatch\.(setenv|delenv)|os\.environ\[[^]]+\]\s*=|os\.environ\.(update|pop|setdefault)"
    r"|putenv|del\s+sys\.modules|sys\.modules\.pop|importlib\.reload"
)
ALLOWED = {
    # moto's own setting (moto.settings.moto_server_port), not a handler's: the local stack's
    # Step Functions interpreter calls Lambda at localhost:$MOTO_PORT.
    DEVKIT / "local" / "stack.py": {'os.environ["MOTO_PORT"] =', 'os.environ.pop("MOTO_PORT"'},
    # cuBLAS's own setting, read when CUDA starts: deterministic GPU training, not a handler's.
    TRAINING / "finetune.py": {'os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG"'},
    # Keep boto3 away from a real account, whatever the developer's shell holds.
    ROOT / "tests" / "conftest.py": {"os.environ.pop(name", "os.environ.update("},
}


@pytest.mark.parametrize("folder", [RUNTIME, DEVKIT, TRAINING, FUNCTIONS, ROOT / "tests"])
def test_nothing_configures_a_handler_through_the_environment(folder: Path) -> None:
    found = []
    for path in python_files(folder):
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ENVIRONMENT_WRITES.search(line) and not any(
                allowed in line for allowed in ALLOWED.get(path, ())
            ):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
