"""Each function's IAM role grants what its code calls, and nothing else.

The code's side is read statically: the handler module (``functions/<dir>/app.py``) and what it
reaches in the runtime (``layers/imgsearch``), followed call by call with ``ast``. A call reaches a
function or class by its imported name, a method through the receiver's annotated or assigned
type, and an AWS operation when the receiver is not one of the runtime's own classes (the boto3
clients are typed ``Any``). ``OPERATIONS`` maps each operation to the IAM actions it needs; a
botocore operation missing from it fails the test, so a new kind of call is never silently
ignored.

The template's side is the roles SAM makes of it (``<Function>Role``), resolved with the
parameters at their defaults, again with a ``ModelBundleUri`` and again with an
``ExistingBucketName`` (the images in a bucket the stack only reads)::

    use = code_use("embed")          # what functions/embed/app.py can reach
    use.calls                        # [Call("get_object", "imgsearch.ingest.pipeline:..."), ...]
    use.actions()                    # {"s3:GetObject", "s3:GetObjectVersion", ...}
    granted_actions(role_statements(stacks()["defaults"], "EmbedFunction"))
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from imgsearch_devkit.local.template import StackTemplate
from template_support import REGION, REPO, STACK_NAME, functions, handler_command, load_template

RUNTIME = REPO / "layers"
FUNCTIONS = REPO / "functions"
SERVICES = ("s3", "dynamodb", "sns", "secretsmanager", "stepfunctions")

OPERATIONS: dict[str, frozenset[str]] = {
    # boto3 client method -> IAM actions. HeadObject and the transfer manager's
    # downloads are authorised as GetObject; its uploads (multipart above 8 MB included) as
    # PutObject; DeleteObjects as DeleteObject per key; ListObjectsV2 as ListBucket.
    "get_object": frozenset({"s3:GetObject"}),
    "head_object": frozenset({"s3:GetObject"}),
    "download_file": frozenset({"s3:GetObject"}),
    "put_object": frozenset({"s3:PutObject"}),
    "upload_file": frozenset({"s3:PutObject"}),
    "delete_objects": frozenset({"s3:DeleteObject"}),
    "delete_object": frozenset({"s3:DeleteObject"}),
    "list_objects_v2": frozenset({"s3:ListBucket"}),
    "get_item": frozenset({"dynamodb:GetItem"}),
    "batch_get_item": frozenset({"dynamodb:BatchGetItem"}),
    "put_item": frozenset({"dynamodb:PutItem"}),
    "delete_item": frozenset({"dynamodb:DeleteItem"}),
    "update_item": frozenset({"dynamodb:UpdateItem"}),
    "batch_write_item": frozenset({"dynamodb:BatchWriteItem"}),
    "query": frozenset({"dynamodb:Query"}),
    "scan": frozenset({"dynamodb:Scan"}),
    "publish": frozenset({"sns:Publish"}),
    "get_secret_value": frozenset({"secretsmanager:GetSecretValue"}),
    "start_execution": frozenset({"states:StartExecution"}),
    "describe_execution": frozenset({"states:DescribeExecution"}),
}
CLIENT_HELPERS = frozenset({"get_paginator", "generate_presigned_url"})
"""Client methods that are not operations: the operation is their first argument."""
LOCAL_HELPERS = frozenset({"download_file", "upload_file"})
"""boto3's transfer-manager methods (not botocore operations, so listed here)."""

MANAGED_POLICIES = {
    # SAM adds these two to every function role: the function's logs and its X-Ray segments.
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
SERVICE_ACTIONS: dict[str, frozenset[str]] = {
    # Called by AWS on the role's behalf, not by the code: the SQS event source mapping polls
    # the ingest queue with the embed function's role (Lambda's documented minimum).
    "EmbedFunction": frozenset(
        {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    ),
}
IMPLIED_ACTIONS: dict[str, frozenset[str]] = {
    # The alerts topic is encrypted with a customer managed key: a publisher needs the key too.
    "sns:Publish": frozenset({"kms:GenerateDataKey", "kms:Decrypt"}),
}
VERSIONED_READ = "s3:GetObjectVersion"
"""A ``get_object`` in a def that names ``VersionId`` reads a given object version."""
S3_READS = frozenset({"get_object", "head_object", "download_file"})
MISSING_IS_404 = "s3:ListBucket"
"""A read in a def that tells a missing key apart (``is_not_found``, ``..._MISSING_CODES``) needs
ListBucket on the key: without it S3 answers 403 AccessDenied, not 404 NoSuchKey."""

MODEL_BUNDLE = "s3://model-bundles-example/clip-b32/"
EXISTING_BUCKET = "photos-example"
VARIANTS = ["defaults", "model bundle", "existing bucket"]


# ---------------------------------------------------------------- the code's side


@dataclass
class Unit:
    """A top-level function or a method (its nested defs and lambdas included)."""

    module: Module
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Module
    owner: ClassInfo | None = None

    @property
    def name(self) -> str:
        own = getattr(self.node, "name", "<module>")
        return f"{self.module.name}:{self.owner.name + '.' if self.owner else ''}{own}"


@dataclass
class ClassInfo:
    module: Module
    node: ast.ClassDef
    methods: dict[str, Unit] = field(default_factory=dict)
    attributes: dict[str, ast.expr] = field(default_factory=dict)
    """Annotations of ``attr: T`` in the body and of ``self.attr = param`` (param: T)."""

    @property
    def name(self) -> str:
        return self.node.name


class Module:
    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.imports: dict[str, tuple[str, str | None]] = {}
        """Local name -> (module, attribute or None for the module itself)."""
        self.functions: dict[str, Unit] = {}
        self.classes: dict[str, ClassInfo] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = (alias.name, None)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (node.module, alias.name)
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[node.name] = Unit(self, node)
            elif isinstance(node, ast.ClassDef):
                self.classes[node.name] = self._class(node)

    def _class(self, node: ast.ClassDef) -> ClassInfo:
        info = ClassInfo(self, node)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                info.methods[item.name] = Unit(self, item, info)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                info.attributes[item.target.id] = item.annotation
        for method in info.methods.values():
            params = annotations_of(method.node)
            for stmt in ast.walk(method.node):
                if isinstance(stmt, ast.AnnAssign) and is_self_attribute(stmt.target):
                    info.attributes.setdefault(stmt.target.attr, stmt.annotation)  # type: ignore[union-attr]
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, (ast.Name, ast.Call)):
                    for target in stmt.targets:
                        if is_self_attribute(target):
                            value = stmt.value
                            hint = params.get(value.id) if isinstance(value, ast.Name) else value
                            if hint is not None:
                                info.attributes.setdefault(target.attr, hint)  # type: ignore[attr-defined]
        return info


def is_self_attribute(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def annotations_of(node: ast.AST) -> dict[str, ast.expr]:
    """Annotated parameters and annotated or constructed locals of a def (nested ones too)."""
    found: dict[str, ast.expr] = {}
    for inner in ast.walk(node):
        if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = inner.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if arg.annotation is not None:
                    found.setdefault(arg.arg, arg.annotation)
        elif isinstance(inner, ast.AnnAssign) and isinstance(inner.target, ast.Name):
            found.setdefault(inner.target.id, inner.annotation)
        elif isinstance(inner, ast.Assign) and isinstance(inner.value, ast.Call):
            for target in inner.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, inner.value)
    return found


class Program:
    """The runtime's modules, loaded on demand, and name resolution across them."""

    def __init__(self) -> None:
        self.modules: dict[str, Module] = {}

    def module(self, name: str) -> Module | None:
        if name in self.modules:
            return self.modules[name]
        parts = name.split(".")
        if parts[0] == "imgsearch":
            base = RUNTIME.joinpath(*parts)
        elif len(parts) == 2 and (FUNCTIONS / parts[0]).is_dir():
            base = FUNCTIONS.joinpath(*parts)
        else:
            return None
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if not path.is_file():
            return None
        self.modules[name] = Module(name, path)
        return self.modules[name]

    def lookup(self, module: Module, name: str, depth: int = 0) -> Any:
        """A module-level name: a ``Unit``, a ``ClassInfo``, a ``Module`` or None (external)."""
        if name in module.functions:
            return module.functions[name]
        if name in module.classes:
            return module.classes[name]
        if name not in module.imports or depth > 10:
            return None
        source, attribute = module.imports[name]
        if attribute is None:
            return self.module(source)
        submodule = self.module(f"{source}.{attribute}")
        if submodule is not None:
            return submodule
        target = self.module(source)
        return self.lookup(target, attribute, depth + 1) if target else None

    def type_of(self, module: Module, hint: ast.expr | None) -> ClassInfo | None:
        """The runtime class an annotation (``T``, ``T | None``, ``"T"``) or a constructor call
        (``T(...)``, ``T.from_settings(...)``) names."""
        if isinstance(hint, ast.Constant) and isinstance(hint.value, str):
            try:  # a quoted annotation; any other string is no type
                hint = ast.parse(hint.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(hint, ast.BinOp):
            return self.type_of(module, hint.left) or self.type_of(module, hint.right)
        if isinstance(hint, ast.Call):
            func = hint.func
            owner = self.type_of(module, func.value) if isinstance(func, ast.Attribute) else None
            if owner is not None:  # T.factory(...): the factory's return type
                method = self.method(owner, func.attr)  # type: ignore[union-attr]
                returns = getattr(method.node, "returns", None) if method else None
                return self.type_of(method.module, returns) if returns is not None else None
            return self.type_of(module, func)
        if isinstance(hint, ast.Name):
            found = self.lookup(module, hint.id)
            return found if isinstance(found, ClassInfo) else None
        if isinstance(hint, ast.Attribute) and isinstance(hint.value, ast.Name):
            found = self.lookup(module, hint.value.id)
            if isinstance(found, Module):
                target = self.lookup(found, hint.attr)
                return target if isinstance(target, ClassInfo) else None
        return None

    def method(self, cls: ClassInfo, name: str, depth: int = 0) -> Unit | None:
        if name in cls.methods:
            return cls.methods[name]
        for base in cls.node.bases:
            parent = self.type_of(cls.module, base)
            if parent is not None and depth < 10:
                found = self.method(parent, name, depth + 1)
                if found is not None:
                    return found
        return None

    def attribute_type(self, cls: ClassInfo, name: str) -> ClassInfo | None:
        hint = cls.attributes.get(name)
        if hint is not None:
            return self.type_of(cls.module, hint)
        prop = self.method(cls, name)
        returns = getattr(prop.node, "returns", None) if prop else None
        return self.type_of(prop.module, returns) if prop and returns is not None else None


@dataclass(frozen=True)
class Call:
    operation: str
    where: str
    versioned: bool = False
    handles_missing: bool = False


class Walker:
    """Follows one unit's calls; ``calls`` collects AWS operations, ``reached`` the units."""

    def __init__(self, program: Program, unit: Unit) -> None:
        self.program, self.unit, self.module = program, unit, unit.module
        self.locals = annotations_of(unit.node) if not isinstance(unit.node, ast.Module) else {}
        self.reached: list[Unit] = []
        self.calls: list[Call] = []
        self.unknown: list[str] = []
        self.resolving: set[str] = set()
        self.versioned = any(
            (isinstance(n, ast.Constant) and n.value == "VersionId")
            or (isinstance(n, ast.keyword) and n.arg == "VersionId")
            for n in ast.walk(unit.node)
        )
        self.handles_missing = any(
            isinstance(n, ast.Name)
            and (n.id == "is_not_found" or "MISSING" in n.id or "NOT_FOUND" in n.id)
            for n in ast.walk(unit.node)
        )

    def run(self) -> Walker:
        for node in ast.walk(self.unit.node):
            if isinstance(node, ast.Call):
                self.call(node)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self.reach(self.program.lookup(self.module, node.id))
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                owner = self.receiver(node.value)
                if isinstance(owner, ClassInfo):  # a method passed on, or a property read
                    self.reach(self.program.method(owner, node.attr))
                elif isinstance(owner, Module):
                    self.reach(self.program.lookup(owner, node.attr))
        return self

    def reach(self, target: Any) -> None:
        if isinstance(target, Unit):
            self.reached.append(target)
        elif isinstance(target, ClassInfo):  # constructed: its initialisers run
            for name in ("__init__", "__post_init__"):
                self.reach(self.program.method(target, name))

    def receiver(self, node: ast.expr) -> ClassInfo | Module | None:
        """The runtime class (or module) an expression is, when the code says so."""
        if isinstance(node, ast.Name):
            if node.id in ("self", "cls") and self.unit.owner is not None:
                return self.unit.owner
            if node.id in self.locals and node.id not in self.resolving:
                self.resolving.add(node.id)  # x = x.method(): no endless recursion
                try:
                    return self.hint_type(self.locals[node.id])
                finally:
                    self.resolving.discard(node.id)
            found = self.program.lookup(self.module, node.id)
            return found if isinstance(found, (ClassInfo, Module)) else None
        if isinstance(node, ast.Attribute):
            owner = self.receiver(node.value)
            if isinstance(owner, ClassInfo):
                return self.program.attribute_type(owner, node.attr)
            if isinstance(owner, Module):
                found = self.program.lookup(owner, node.attr)
                return found if isinstance(found, (ClassInfo, Module)) else None
        if isinstance(node, ast.Call):
            return self.hint_type(node)
        return None

    def hint_type(self, hint: ast.expr) -> ClassInfo | None:
        """The class of an annotation or of what a call returns (a constructor: its class)."""
        if not isinstance(hint, ast.Call):
            return self.program.type_of(self.module, hint)
        if isinstance(hint.func, ast.Attribute):
            owner = self.receiver(hint.func.value)
            method = (
                self.program.method(owner, hint.func.attr) if isinstance(owner, ClassInfo) else None
            )
            returns = getattr(method.node, "returns", None) if method else None
            return self.program.type_of(method.module, returns) if method and returns else None
        target = self.receiver(hint.func)
        return target if isinstance(target, ClassInfo) else None

    def call(self, node: ast.Call) -> None:
        func = node.func
        if not isinstance(func, ast.Attribute):
            return
        owner = self.receiver(func.value)
        if owner is not None:
            return  # a runtime method or function: followed by run()
        name = func.attr
        where = f"{self.unit.name} line {node.lineno}"
        if name in CLIENT_HELPERS:
            argument = node.args[0] if node.args else None
            if not (isinstance(argument, ast.Constant) and isinstance(argument.value, str)):
                self.unknown.append(f"{where}: {name} with a computed operation")
                return
            name = argument.value
        if name in OPERATIONS:
            versioned = self.versioned and name == "get_object"
            missing = self.handles_missing and name in S3_READS
            self.calls.append(Call(name, where, versioned, missing))
        elif name in botocore_operations():
            self.unknown.append(f"{where}: {name} is an AWS operation OPERATIONS does not map")


@functools.cache
def botocore_operations() -> frozenset[str]:
    session = botocore.session.get_session()
    names = {
        xform_name(operation)
        for service in SERVICES
        for operation in session.get_service_model(service).operation_names
    }
    return frozenset(names | LOCAL_HELPERS)


@dataclass
class CodeUse:
    calls: list[Call]
    unknown: list[str]
    reached: list[str]

    def actions(self) -> set[str]:
        found: set[str] = set()
        for call in self.calls:
            found |= OPERATIONS[call.operation]
            if call.versioned:
                found.add(VERSIONED_READ)
            if call.handles_missing:
                found.add(MISSING_IS_404)
        for action in list(found):
            found |= IMPLIED_ACTIONS.get(action, frozenset())
        return found


@functools.cache
def code_use(handler_dir: str) -> CodeUse:
    """Every AWS call the handler ``functions/<handler_dir>/app.py`` can reach."""
    program = Program()
    root = program.module(f"{handler_dir}.app")
    assert root is not None, handler_dir
    pending = [Unit(root, root.tree), *root.functions.values()]
    seen: set[int] = set()
    calls: list[Call] = []
    unknown: list[str] = []
    reached: list[str] = []
    while pending:
        unit = pending.pop()
        if id(unit.node) in seen:
            continue
        seen.add(id(unit.node))
        reached.append(unit.name)
        walker = Walker(program, unit).run()
        calls += walker.calls
        unknown += walker.unknown
        pending += walker.reached
    return CodeUse(calls, unknown, sorted(reached))


# ---------------------------------------------------------------- the template's side


@functools.cache
def stacks() -> dict[str, StackTemplate]:
    template = load_template()
    return {
        "defaults": StackTemplate(template, STACK_NAME, REGION),
        "model bundle": StackTemplate(
            template, STACK_NAME, REGION, {"ModelBundleUri": MODEL_BUNDLE}
        ),
        "existing bucket": StackTemplate(
            template, STACK_NAME, REGION, {"ExistingBucketName": EXISTING_BUCKET}
        ),
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(stack: StackTemplate, function: str) -> list[dict[str, Any]]:
    """The function role's inline statements, intrinsics resolved (``Fn::If`` decided)."""
    role = stack.properties(f"{function}Role")
    assert set(role.get("ManagedPolicyArns", [])) <= MANAGED_POLICIES, role["ManagedPolicyArns"]
    statements = []
    for policy in stack.resolve(role.get("Policies", [])):
        if policy is None:  # Fn::If ... AWS::NoValue
            continue
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            if statement is not None:  # a statement's own Fn::If ... AWS::NoValue
                statements.append(statement)
    return statements


def granted_actions(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        actions |= set(as_list(statement["Action"]))
    return actions


def function_handlers() -> dict[str, str]:
    """Logical id -> the handler's folder under functions/."""
    return {
        name: handler_command(function).split(".")[0]
        for name, function in functions(load_template()).items()
    }


FUNCTION_NAMES = sorted(function_handlers())


# ---------------------------------------------------------------- the checks


def test_the_analysis_sees_the_calls_it_should():
    """A canary for the analysis itself: calls known to exist are found, and reached through
    methods, factories and closures (not only module-level functions)."""
    embed = {c.operation for c in code_use("embed").calls}
    assert {"get_object", "put_item", "batch_get_item", "query"} <= embed
    assert "scan" not in embed
    assert any(c.versioned for c in code_use("embed").calls)
    snapshot = {c.operation for c in code_use("snapshot").calls}
    assert "scan" in snapshot and "get_item" not in snapshot
    assert "publish" in {c.operation for c in code_use("report_failure").calls}
    assert "list_objects_v2" in {c.operation for c in code_use("publish_index").calls}


@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_every_aws_call_is_a_known_operation(function):
    use = code_use(function_handlers()[function])
    assert not use.unknown, "\n".join(use.unknown)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_role_grants_exactly_the_actions_the_code_calls(function, variant):
    use = code_use(function_handlers()[function])
    needed = use.actions() | SERVICE_ACTIONS.get(function, frozenset())
    granted = granted_actions(role_statements(stacks()[variant], function))
    unused = sorted(granted - needed)
    missing = sorted(needed - granted)
    calls = "\n".join(f"  {c.operation} at {c.where}" for c in use.calls)
    assert not unused, f"{function} is granted actions its code never calls: {unused}\n{calls}"
    assert not missing, f"{function} calls what its role does not grant: {missing}\n{calls}"


# ---------------------------------------------------------------- resources


def resources_of(statement: dict[str, Any]) -> list[str]:
    return [str(r) for r in as_list(statement["Resource"])]


BUCKET_ARN = f"arn:aws:s3:::imgsearch-dev-123456789012-{REGION}"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:123456789012:table/{STACK_NAME}-EmbeddingsTable"
BUNDLE_ARN = "arn:aws:s3:::model-bundles-example/clip-b32/*"
EXISTING_ARN = f"arn:aws:s3:::{EXISTING_BUCKET}"
IMAGE_KEYS = "images/"
"""Grants under this prefix are on the images: with ExistingBucketName, in that bucket."""

S3_GRANTS: dict[str, dict[str, set[str]]] = {
    # function -> S3 action -> the object ARNs (ListBucket: the s3:prefix values) it needs,
    # read from the code: which keys each step reads, writes, lists or deletes.
    "EmbedFunction": {
        "s3:GetObject": {"images/*", "indexes/current.json", "models/*"},
        "s3:GetObjectVersion": {"images/*"},
        "s3:ListBucket": {"images/*", "indexes/current.json", "models/*"},
    },
    "QueryFunction": {
        "s3:GetObject": {"images/*", "indexes/*", "models/*"},
        "s3:ListBucket": {"indexes/*", "models/*"},
    },
    "SnapshotFunction": {
        "s3:GetObject": {"indexes/current.json"},
        "s3:PutObject": {"snapshots/*"},
        "s3:ListBucket": {"indexes/current.json"},
    },
    "MonitorFunction": {
        "s3:GetObject": {
            "usage/*",
            "indexes/current.json",
            "indexes/*/reference.npy",
            "eval/golden.jsonl",
            "monitor/*",
            "retrain/latest.json",
            "retrain/run.json",
        },
        "s3:PutObject": {"monitor/*"},
        "s3:ListBucket": {
            "usage/*",
            "indexes/*",
            "eval/golden.jsonl",
            "monitor/*",
            "retrain/latest.json",
            "retrain/run.json",
        },
    },
    "ModelCleanupFunction": {
        "s3:GetObject": {"models/*", "indexes/*"},
        "s3:PutObject": {"models/*/record.json"},
        "s3:DeleteObject": {"indexes/*"},
        "s3:ListBucket": {"models/*", "indexes/*"},
    },
    "RetrainFunction": {
        "s3:GetObject": {
            "usage/*",
            "eval/golden.jsonl",
            "captions/*",
            "indexes/current.json",
            "models/*",
            "retrain/*",
            "images/*",
        },
        "s3:PutObject": {"retrain/*", "models/*"},
        "s3:DeleteObject": {"retrain/run.json"},
        "s3:ListBucket": {
            "usage/*",
            "eval/golden.jsonl",
            "captions/*",
            "indexes/current.json",
            "models/*",
            "retrain/*",
        },
    },
    "BuildIndexFunction": {
        "s3:GetObject": {
            "snapshots/*",
            "indexes/current.json",
            "indexes/*/report.json",
            "indexes/*/index.usearch",
            "indexes/*/index.faiss",
        },
        "s3:ListBucket": {"indexes/*"},
        "s3:PutObject": {
            "indexes/*/index.usearch",
            "indexes/*/index.faiss",
            "indexes/*/keys",
            "indexes/*/recent.json",
            "indexes/*/reference.npy",
        },
    },
    "ValidateIndexFunction": {
        "s3:GetObject": {"indexes/*", "snapshots/*", "eval/golden.jsonl", "models/*"},
        "s3:PutObject": {"indexes/*/report.json"},
        "s3:ListBucket": {"indexes/*", "eval/golden.jsonl", "models/*"},
    },
    "PublishIndexFunction": {
        "s3:GetObject": {"indexes/*/report.json", "indexes/*/published.json"},
        "s3:PutObject": {"indexes/current.json", "indexes/*/published.json"},
        "s3:DeleteObject": {"indexes/*", "snapshots/*"},
        "s3:ListBucket": {"indexes/*", "snapshots/*"},
    },
    "RollbackIndexFunction": {
        "s3:GetObject": {"indexes/*"},
        "s3:PutObject": {"indexes/current.json", "indexes/*/published.json"},
        "s3:ListBucket": {"indexes/*"},
    },
    "ReportFailureFunction": {
        "s3:PutObject": {"indexes/failures/*"},
    },
    "BackfillListFunction": {
        "s3:GetObject": {"indexes/current.json", "models/*/record.json"},
        "s3:PutObject": {"backfill/*/chunks/*", "backfill/*/chunks.json"},
        "s3:ListBucket": {"images/*", "indexes/current.json", "models/*"},
    },
    "BackfillChunkFunction": {
        "s3:GetObject": {"images/*", "backfill/*/chunks/*", "indexes/current.json", "models/*"},
        "s3:GetObjectVersion": {"images/*"},
        "s3:PutObject": {"backfill/*/results/*"},
        "s3:ListBucket": {"images/*", "backfill/*", "indexes/current.json"},
    },
    "ModelRolloutFunction": {
        "s3:GetObject": {"models/*", "indexes/current.json"},
        "s3:PutObject": {"models/*/record.json", "models/rollout.json"},
        "s3:DeleteObject": {"models/rollout.json"},
        "s3:ListBucket": {"models/*", "indexes/current.json"},
    },
    "BackfillReportFunction": {
        "s3:GetObject": {"backfill/*"},
        "s3:PutObject": {"backfill/*/report.json"},
        "s3:ListBucket": {"backfill/*"},
    },
}
LOADS_MODEL = {
    "EmbedFunction",
    "RetrainFunction",
    "QueryFunction",
    "SnapshotFunction",
    "ValidateIndexFunction",
    "BackfillListFunction",
    "BackfillChunkFunction",
}


def s3_grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """S3 action -> object keys (under the stack's bucket) or s3:prefix values it is granted on;
    a grant on another bucket keeps its ARN (ListBucket: ``<bucket ARN>/<s3:prefix>``)."""
    grants: dict[str, set[str]] = {}
    for statement in statements:
        for action in as_list(statement["Action"]):
            if not action.startswith("s3:"):
                continue
            if action == "s3:ListBucket":
                (bucket,) = resources_of(statement)
                assert bucket in (BUCKET_ARN, EXISTING_ARN), statement
                condition = statement.get("Condition") or {}
                assert list(condition) == ["StringLike"], (
                    f"ListBucket without a prefix: {statement}"
                )
                prefixes = as_list(condition["StringLike"]["s3:prefix"])
                if bucket != BUCKET_ARN:
                    prefixes = [f"{bucket}/{prefix}" for prefix in prefixes]
                grants.setdefault(action, set()).update(prefixes)
                continue
            for arn in resources_of(statement):
                key = (
                    arn.removeprefix(BUCKET_ARN + "/") if arn.startswith(BUCKET_ARN + "/") else arn
                )
                grants.setdefault(action, set()).add(key)
    return grants


def _in_existing_bucket(key: str) -> str:
    return f"{EXISTING_ARN}/{key}" if key.startswith(IMAGE_KEYS) else key


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_s3_grants_name_the_prefixes_the_function_touches(function, variant):
    expected = {action: set(keys) for action, keys in S3_GRANTS[function].items()}
    if variant == "model bundle" and function in LOADS_MODEL:
        expected.setdefault("s3:GetObject", set()).add(BUNDLE_ARN)
    if variant == "existing bucket":
        # The same keys, in the user's bucket: the stack's own keeps everything else.
        expected = {a: {_in_existing_bucket(k) for k in keys} for a, keys in expected.items()}
    assert s3_grants(role_statements(stacks()[variant], function)) == expected


READS = frozenset({"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"})


@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_the_existing_bucket_is_only_read_under_the_image_prefix(function):
    """Nothing may write to, delete from or list beyond the prefix of a bucket the user owns."""
    for statement in role_statements(stacks()["existing bucket"], function):
        on_existing = [r for r in resources_of(statement) if r.startswith(EXISTING_ARN)]
        if not on_existing:
            continue
        assert set(as_list(statement["Action"])) <= READS, (function, statement)
        for resource in on_existing:
            assert resource in (EXISTING_ARN, f"{EXISTING_ARN}/{IMAGE_KEYS}*"), statement
        if EXISTING_ARN in on_existing:
            assert statement["Condition"]["StringLike"]["s3:prefix"] == f"{IMAGE_KEYS}*"


@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_table_grants_name_the_table_or_the_index_queried(function):
    for statement in role_statements(stacks()["defaults"], function):
        actions = as_list(statement["Action"])
        if not any(a.startswith("dynamodb:") for a in actions):
            continue
        for resource in resources_of(statement):
            assert resource == TABLE_ARN or (
                actions == ["dynamodb:Query"] and resource.startswith(TABLE_ARN + "/index/")
            ), (function, statement)


def test_publishers_of_the_alerts_topic_may_use_its_key_only():
    stack = stacks()["defaults"]
    key = stack.resolve({"Fn::GetAtt": ["AlertsKey", "Arn"]})
    topic = stack.resolve({"Ref": "AlertsTopic"})
    statements = role_statements(stack, "ReportFailureFunction")
    for statement in statements:
        actions = as_list(statement["Action"])
        if any(a.startswith("kms:") for a in actions):
            assert resources_of(statement) == [key], statement
        if "sns:Publish" in actions:
            assert resources_of(statement) == [topic], statement
    pipeline = stack.properties("IndexPipelineRole")
    text = json.dumps(stack.resolve(pipeline["Policies"]))
    assert "kms:GenerateDataKey" in text and key in text, "the state machine publishes too"


def every_statement() -> Iterator[tuple[str, dict[str, Any]]]:
    for function in FUNCTION_NAMES:
        for statement in role_statements(stacks()["defaults"], function):
            yield function, statement


def test_no_function_role_grants_a_wildcard_action_or_resource():
    for function, statement in every_statement():
        assert not any("*" in a for a in as_list(statement["Action"])), (function, statement)
        for resource in resources_of(statement):
            assert resource != "*" and not resource.endswith(":::*"), (function, statement)
            assert resource != BUCKET_ARN + "/*", f"{function}: the whole bucket: {statement}"
