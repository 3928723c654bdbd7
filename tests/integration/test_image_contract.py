"""The container image's contract, proven without Docker (there is no Docker engine here).

``functions/Dockerfile`` is replayed step by step into a temporary folder: its COPY steps copy
what Docker would send (``.dockerignore`` applied) to the same paths under a fake image root, and
its ``pip install -r functions/requirements.txt`` runs into a FRESH virtual environment on the
image's Python (3.12), from that requirements file alone. Then every handler that
``template.yaml`` names is imported by that venv's interpreter, isolated from this repository,
with the task root as Lambda sets it and exactly the environment the template gives that
function. A handler that is missing, needs a package the image lacks, needs a file the Dockerfile
does not copy, or needs a setting the template does not set fails here.

AWS is a moto server on a local port holding the stack's (empty) bucket, table, queues and topic,
so a handler that reads AWS at init (the serving index pointer, say) does so as on a fresh stack.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from template_support import (
    REGION,
    REPO,
    function_environment,
    function_setting,
    functions,
    handler_command,
    load_template,
    resolve,
)

from imgsearch.core.config import PREFIX
from imgsearch.store import table_definition

pytestmark = pytest.mark.slow  # a fresh venv with the image's dependencies: minutes

DOCKERFILE = REPO / "functions" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
BASE_IMAGE = "public.ecr.aws/lambda/python:3.12"
IMAGE_PYTHON = (3, 12)
BASE_ENV = {"LAMBDA_TASK_ROOT": "/var/task"}  # set by the AWS Lambda base image

TEMPLATE = load_template()
FUNCTIONS = sorted(functions(TEMPLATE))


# ---------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: ``*`` and ``?`` stay inside one path segment, ``**`` crosses them."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def load_dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines() if DOCKERIGNORE.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip("/"))
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Last matching rule wins; a rule matching a parent folder applies to what it holds."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            verdict = not negate
    return verdict


# ---------------------------------------------------------------- replaying the Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


@dataclass
class ImageBuild:
    """The fake image: a root folder standing in for ``/`` and a venv for the image's Python."""

    root: Path
    venv: Path
    env: dict[str, str] = field(default_factory=lambda: dict(BASE_ENV))
    workdir: str = "/"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.env.get(m[1], m[0]), text)

    def path(self, image_path: str) -> Path:
        absolute = os.path.normpath(os.path.join(self.workdir, self.expand(image_path)))
        return self.root / absolute.lstrip("/")

    @property
    def task_root(self) -> Path:
        return self.path(self.env["LAMBDA_TASK_ROOT"])


def copy_step(build: ImageBuild, args: str, rules: list[tuple[bool, re.Pattern[str]]]) -> None:
    *sources, destination = shlex.split(args)
    assert not any(s.startswith("--") for s in sources), f"COPY flags not replayed: {args}"
    target = build.path(destination)
    for source in sources:
        origin = REPO / source
        assert origin.exists(), f"COPY {source}: not in the build context (the repository root)"
        relative = os.path.normpath(source).strip("/")
        assert not ignored(relative, rules) or origin.is_dir(), f"COPY {source}: .dockerignore'd"
        if origin.is_file():
            dest = target / origin.name if destination.endswith("/") else target
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, dest)
            continue
        copied = 0
        for file in sorted(p for p in origin.rglob("*") if p.is_file()):
            inside = file.relative_to(REPO).as_posix()
            if ignored(inside, rules):
                continue
            dest = target / file.relative_to(origin)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, dest)
            copied += 1
        assert copied, f"COPY {source}: nothing left to copy after .dockerignore"


def run_step(build: ImageBuild, args: str) -> None:
    """RUN steps the test understands; anything else fails so the test is taught it."""
    for command in (c.strip() for c in build.expand(args).split("&&")):
        words = shlex.split(command)
        if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
            # The image installs its lock (-r, every dependency) and then layers/ alone: both
            # without resolving anything, so nothing but the lock's packages gets in.
            assert "--no-deps" in words, f"the image installs without resolving: {command}"
            if "-r" in words:
                requirements = words[words.index("-r") + 1]
                assert requirements == "functions/requirements.txt", command
                assert "--require-hashes" in words, command
                what = ["--require-hashes", "-r", requirements]
            else:
                assert words[-1] == "./layers", f"the image installs the runtime alone: {command}"
                what = [words[-1]]
            subprocess.run(
                [str(build.python), "-m", "pip", "install", "--quiet", "--no-deps", *what],
                cwd=build.path("."),
                check=True,
                env=_pip_env(),
                timeout=1800,
            )
        elif words[:2] == ["rm", "-rf"]:
            for path in words[2:]:
                shutil.rmtree(build.path(path), ignore_errors=True)
        elif words[0] == "python":
            subprocess.run(
                [str(build.python), *[_image_arg(build, w) for w in words[1:]]],
                cwd=build.path("."),
                check=True,
                timeout=600,
                env={**_pip_env(), **build.env, "LAMBDA_TASK_ROOT": str(build.task_root)},
            )
        else:
            pytest.fail(f"the image-contract test cannot replay `RUN {command}`: teach it")


def _image_arg(build: ImageBuild, word: str) -> str:
    return str(build.path(word)) if word.startswith("/") else word


def _pip_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}


def image_python() -> str:
    """The Lambda image's Python (3.12): IMGSEARCH_IMAGE_PYTHON, python3.12, or pyenv's."""
    candidates = [os.environ.get("IMGSEARCH_IMAGE_PYTHON", ""), shutil.which("python3.12") or ""]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python")))
    candidates += ["/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(IMAGE_PYTHON):
            return candidate
    pytest.fail(
        "no Python 3.12 found (the Lambda image's runtime): install it, or point "
        "IMGSEARCH_IMAGE_PYTHON at one"
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageBuild:
    folder = tmp_path_factory.mktemp("image")
    build = ImageBuild(root=folder / "root", venv=folder / "venv")
    subprocess.run([image_python(), "-m", "venv", str(build.venv)], check=True)
    rules = load_dockerignore()
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", BASE_IMAGE), instructions[0]
    for keyword, args in instructions[1:]:
        if keyword == "WORKDIR":
            build.workdir = os.path.normpath(os.path.join(build.workdir, build.expand(args)))
            build.path(".").mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            copy_step(build, args, rules)
        elif keyword == "RUN":
            run_step(build, args)
        elif keyword == "ENV":
            key, _, value = args.partition("=")
            build.env[key.strip()] = build.expand(value.strip().strip('"'))
        elif keyword in ("CMD", "LABEL", "ARG"):
            continue
        else:
            pytest.fail(f"the image-contract test cannot replay {keyword}: teach it")
    return build


@pytest.fixture(scope="module")
def aws_endpoint() -> Iterator[str]:
    """A moto server holding what the template creates, as a fresh stack has it: empty."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    resources = TEMPLATE["Resources"]

    def client(service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint)

    for name, resource in resources.items():
        ref = resolve(TEMPLATE, {"Ref": name})
        if resource["Type"] == "AWS::S3::Bucket":
            client("s3").create_bucket(Bucket=ref)
        elif resource["Type"] == "AWS::DynamoDB::Table":
            client("dynamodb").create_table(**table_definition(ref))
        elif resource["Type"] == "AWS::SQS::Queue":
            client("sqs").create_queue(QueueName=ref.rsplit("/", 1)[1])
        elif resource["Type"] == "AWS::SNS::Topic":
            client("sns").create_topic(Name=ref.rsplit(":", 1)[1])
        elif resource["Type"] == "AWS::SecretsManager::Secret":
            client("secretsmanager").create_secret(Name=ref, SecretString="generated-by-cfn")
    yield endpoint
    server.stop()


# ---------------------------------------------------------------- the contract


RUNTIME_MODULES = (
    "imgsearch",
    "onnxruntime",
    "faiss",
    "usearch",
    "tokenizers",
    "PIL",
    "aws_lambda_powertools",
)
# tqdm stays: usearch imports it at import (usearch/index.py). huggingface_hub (and with it click,
# fsspec, httpx, yaml) is declared by tokenizers but left out by the lock (scripts/lock_runtime.py).
TOOL_MODULES = ("torch", "transformers", "moto", "pytest", "samcli", "checkov")
TOOL_MODULES += ("huggingface_hub", "click", "fsspec", "httpx2", "yaml")
DEVKIT_MODULES = (
    "imgsearch_devkit",
    "imgsearch_client",
    "imgsearch_training",  # the training job: its own image (layers/training/Dockerfile)
    # Where the developer kit's modules lived before it became a distribution of its own.
    "imgsearch.cli",
    "imgsearch.ops",
    "imgsearch.local",
    "imgsearch.target",
    "imgsearch.synthetic",
    "imgsearch.model_eval",
)


def test_image_holds_only_runtime_dependencies(image):
    modules = RUNTIME_MODULES + TOOL_MODULES + DEVKIT_MODULES
    probe = subprocess.run(
        [
            str(image.python),
            "-I",
            "-c",
            "import importlib.util as u, json, sys; "
            "print(json.dumps({m: bool(u.find_spec(m)) for m in sys.argv[1:]}))",
            *modules,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(probe.stdout)
    assert all(found[m] for m in RUNTIME_MODULES), found
    leaked = [m for m in TOOL_MODULES + DEVKIT_MODULES if found[m]]
    assert not leaked, f"tools or the developer kit leaked into the image: {leaked}"


def test_image_holds_the_demo_model_where_the_configuration_looks(image):
    bundle = image.task_root / "models" / "demo-clip"
    for name in ("model.json", "visual.onnx", "textual.onnx", "tokenizer.json"):
        assert (bundle / name).is_file(), f"the image lacks models/demo-clip/{name}"
    # the training checkpoint is not in any function's way (.dockerignore leaves it out)
    assert not (bundle / "checkpoint.pt").exists()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_handler_imports_in_the_image_with_the_template_environment(
    image, aws_endpoint, function, tmp_path
):
    command = handler_command(TEMPLATE["Resources"][function])
    module, _, attribute = command.rpartition(".")
    memory = function_setting(TEMPLATE, function, "MemorySize")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "LAMBDA_TASK_ROOT": str(image.task_root),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_LAMBDA_FUNCTION_NAME": f"imgsearch-test-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_ENDPOINT_URL": aws_endpoint,
        **function_environment(TEMPLATE, function),
    }
    # /tmp paths of the configuration point into this test's tmp folder instead.
    env.setdefault("IMGSEARCH_MODEL_CACHE_DIR", str(tmp_path / "models"))
    env.setdefault("IMGSEARCH_INDEX_CACHE_DIR", str(tmp_path / "indexes"))
    script = (
        "import importlib, sys, json\n"
        f"sys.path.insert(0, {str(image.task_root)!r})\n"
        f"handler = getattr(importlib.import_module({module!r}), {attribute!r})\n"
        "assert callable(handler), 'handler is not callable'\n"
        "import imgsearch\n"
        "print(json.dumps({'imgsearch': imgsearch.__file__}))\n"
    )
    result = subprocess.run(
        [str(image.python), "-I", "-c", script],
        cwd=image.task_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{function}: `{command}` does not import in the image:\n{result.stderr[-4000:]}"
    )
    # The library came from the venv the requirements file built, not from this checkout.
    assert str(image.venv) in result.stdout.splitlines()[-1], result.stdout


def required_settings(module_path: Path) -> set[str]:
    """``Function.wire(settings, clients, "bucket", ...)`` (or ``settings.require``) names in a
    handler module, as environment variables."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module_path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("require", "wire")
        ):
            names |= {
                PREFIX + arg.value.upper()
                for arg in node.args
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            }
    return names


@pytest.mark.parametrize("function", FUNCTIONS)
def test_settings_a_handler_requires_are_set_in_the_template(function):
    command = handler_command(TEMPLATE["Resources"][function])
    module_path = REPO / "functions" / (command.rpartition(".")[0].replace(".", "/") + ".py")
    assert module_path.is_file(), f"{function} names {command}, but {module_path} is missing"
    environment = function_environment(TEMPLATE, function)
    for name in sorted(required_settings(module_path)):
        assert environment.get(name), f"{function} requires {name}; template.yaml does not set it"
