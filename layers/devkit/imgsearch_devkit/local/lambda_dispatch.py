"""Route moto's Lambda invocations to the project's real handlers, in-process.

moto runs the real ASL (``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``)
and sends each Lambda task to its Lambda backend, which would start the function in Docker. There
is no Docker here, so ``install_lambda_dispatch`` replaces that one seam,
``moto.awslambda.models.LambdaFunction.invoke``, for the functions it has routes for: the event
goes to our handler, its return value comes back as the payload, and an exception comes back as
Lambda's ``FunctionError: Unhandled`` with ``{"errorType", "errorMessage", "stackTrace"}``, so
Step Functions sees the error name a real Lambda would give it. The seam sits behind moto's API,
so it serves ``mock_aws`` and a ``ThreadedMotoServer`` in the same process alike (for the
server, Step Functions calls Lambda at ``localhost:$MOTO_PORT``: set ``MOTO_PORT`` to its port).

Tests and the local stack only::

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        names = {"SnapshotFunction": "imgsearch-local-SnapshotFunction", ...}   # or omit
        settings = Settings.from_env({"IMGSEARCH_BUCKET": bucket, ...})
        routes = pipeline_routes(settings, Clients.for_settings(settings), names)
        with install_lambda_dispatch(routes) as dispatch:
            arn = create_state_machine(sfn, lambda_, iam, DEFINITION, {"AlertsTopicArn": topic},
                                       function_names=names)
            dispatch.fail_next("imgsearch-local-BuildIndexFunction", times=1)  # a service error
            sfn.start_execution(stateMachineArn=arn, input="{}")
            dispatch.calls("imgsearch-local-BuildIndexFunction")[-1].result   # what it returned
"""

from __future__ import annotations

import importlib
import io
import json
import re
import sys
import threading
import traceback
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch_devkit.local.lambda_context import LambdaContext
from imgsearch_devkit.project import project_root

Handler = Callable[[dict[str, Any], Any], Any]

PIPELINE_HANDLERS: dict[str, str] = {
    "SnapshotFunction": "snapshot.app.handler",
    "BuildIndexFunction": "build_index.app.handler",
    "ValidateIndexFunction": "validate_index.app.handler",
    "PublishIndexFunction": "publish_index.app.handler",
    "ReportFailureFunction": "report_failure.app.handler",
    "RollbackIndexFunction": "rollback_index.app.handler",
}
"""Template logical id -> handler string (``ImageConfig.Command``) of the pipeline's functions."""
BACKFILL_HANDLERS: dict[str, str] = {
    "BackfillListFunction": "backfill_list.app.handler",
    "BackfillChunkFunction": "backfill_chunk.app.handler",
    "BackfillReportFunction": "backfill_report.app.handler",
}
"""The same for the backfill's functions (``statemachine/backfill.asl.json``)."""
ROLLOUT_HANDLERS: dict[str, str] = {"ModelRolloutFunction": "model_rollout.app.handler"}
"""The same for the model rollout's own function (``statemachine/model_rollout.asl.json``)."""
RETRAIN_HANDLERS: dict[str, str] = {"RetrainFunction": "retrain.app.handler"}
"""The same for the retraining's own function (``statemachine/retrain.asl.json``)."""

LAMBDA_SERVICE_ERROR = "Lambda.ServiceException"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def load_handler(
    spec: str,
    settings: Settings,
    clients: Clients | None = None,
    functions_dir: Path | None = None,
) -> Handler:
    """The handler ``spec`` (``<module>.app.handler``) names, built with ``settings``.

    Imports ``<module>.app`` the way Lambda does, with ``functions/`` (default: the checkout's,
    ``project_root()``) as task root, and calls its ``build(settings, clients)``: nothing is read
    from the environment.
    """
    functions_dir = functions_dir or project_root() / "functions"
    module_name = spec.rpartition(".")[0]
    if str(functions_dir) not in sys.path:
        sys.path.insert(0, str(functions_dir))
    return importlib.import_module(module_name).build(settings, clients)


def pipeline_routes(
    settings: Settings,
    clients: Clients | None = None,
    function_names: Mapping[str, str] | None = None,
    handlers: Mapping[str, str] = PIPELINE_HANDLERS,
) -> dict[str, Handler]:
    """Function name -> the ``handlers`` (default: the index pipeline's) built with
    ``settings``; names default to the logical ids."""
    names = function_names or {}
    return {
        names.get(logical_id, logical_id): load_handler(spec, settings, clients)
        for logical_id, spec in handlers.items()
    }


@dataclass
class Invocation:
    function: str
    event: Any
    error: str = ""
    """``errorType`` when the invocation failed, else empty."""
    result: Any = None
    """What the handler returned (``None`` when it failed)."""


@dataclass
class LambdaDispatch:
    """The installed routes, a record of every invocation, and injected service failures."""

    routes: dict[str, Handler]
    invocations: list[Invocation] = field(default_factory=list)
    _failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(
        self,
        function: str,
        error: str = LAMBDA_SERVICE_ERROR,
        message: str = "Lambda was unable to run the function (injected)",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` invocations of ``function`` with ``error`` instead of
        running it, as the Lambda service does when it fails or throttles an invocation."""
        with self._lock:
            self._failures.setdefault(function, []).extend([(error, message)] * times)

    def calls(self, function: str) -> list[Invocation]:
        with self._lock:
            return [i for i in self.invocations if i.function == function]

    def dispatch(
        self, function: str, arn: str, timeout: int, memory: int, body: Any
    ) -> tuple[bytes, bool]:
        """Run one invocation: (payload, whether it is a function error)."""
        event = json.loads(body) if isinstance(body, str | bytes) and body else (body or {})
        with self._lock:
            pending = self._failures.get(function)
            injected = pending.pop(0) if pending else None
        if injected:
            error, message = injected
            self._record(function, event, error)
            return _error_payload(error, message, []), True
        region, account = (
            arn.split(":")[3:5] if arn.count(":") >= 5 else ("us-east-1", "123456789012")
        )
        context = LambdaContext(
            function,
            timeout_seconds=timeout,
            memory_limit_in_mb=memory,
            region=region,
            account_id=account,
        )
        try:
            result = self.routes[function](event, context)
        except Exception as exc:  # Lambda reports any exception the same way
            self._record(function, event, type(exc).__name__)
            return _error_payload(
                type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__)
            ), True
        self._record(function, event, "", result)
        return json.dumps(result).encode(), False

    def _record(self, function: str, event: Any, error: str, result: Any = None) -> None:
        with self._lock:
            self.invocations.append(Invocation(function, event, error, result))


def _error_payload(error: str, message: str, stack: list[str]) -> bytes:
    return json.dumps({"errorType": error, "errorMessage": message, "stackTrace": stack}).encode()


_active: list[LambdaDispatch] = []
_install_lock = threading.Lock()


@contextmanager
def install_lambda_dispatch(routes: Mapping[str, Handler]) -> Iterator[LambdaDispatch]:
    """Route moto Lambda invocations of the named functions to ``routes`` while in the block.

    Functions without a route keep moto's behaviour. Installs nest: the innermost wins.
    """
    from moto.awslambda.models import LambdaFunction

    dispatch = LambdaDispatch(dict(routes))
    with _install_lock:
        if not _active:
            original = LambdaFunction.invoke

            def invoke(fn: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
                current = next((d for d in reversed(_active) if fn.function_name in d.routes), None)
                if current is None:
                    return original(fn, body, request_headers, response_headers)
                payload, errored = current.dispatch(
                    fn.function_name,
                    fn.function_arn,
                    int(fn.timeout or 3),
                    int(fn.memory_size or 128),
                    body,
                )
                if errored:
                    response_headers["x-amz-function-error"] = "Unhandled"
                return payload

            invoke.original = original  # type: ignore[attr-defined]
            LambdaFunction.invoke = invoke  # type: ignore[method-assign]
        _active.append(dispatch)
    try:
        yield dispatch
    finally:
        with _install_lock:
            _active.remove(dispatch)
            if not _active:
                LambdaFunction.invoke = LambdaFunction.invoke.original  # type: ignore[attr-defined]


def _stub_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "README.txt", "dispatched in-process by imgsearch_devkit.local.lambda_dispatch\n"
        )
    return buffer.getvalue()


def ensure_role(iam: Any, name: str = "imgsearch-local-role") -> str:
    """An IAM role moto accepts for Lambda functions and state machines."""
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=_ROLE_POLICY)["Role"]["Arn"]


def register_functions(
    lambda_client: Any,
    iam: Any,
    functions: Mapping[str, str],
    timeout: int = 900,
    memory: int = 10240,
) -> dict[str, str]:
    """Create (or find) moto Lambda functions, name -> handler string; returns name -> ARN."""
    role = ensure_role(iam)
    arns = {}
    for name, handler in functions.items():
        try:
            arns[name] = lambda_client.get_function(FunctionName=name)["Configuration"][
                "FunctionArn"
            ]
            continue
        except lambda_client.exceptions.ResourceNotFoundException:
            pass
        arns[name] = lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler=handler,
            Code={"ZipFile": _stub_zip()},
            Timeout=timeout,
            MemorySize=memory,
        )["FunctionArn"]
    return arns


def render_definition(definition: str, substitutions: Mapping[str, str]) -> str:
    """Replace every ``${Name}`` as SAM's ``DefinitionSubstitutions`` do; unknown names fail."""
    missing = sorted(set(_PLACEHOLDER.findall(definition)) - set(substitutions))
    if missing:
        raise KeyError(f"no substitution for {', '.join('${' + m + '}' for m in missing)}")
    return _PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], definition)


def create_state_machine(
    sfn: Any,
    lambda_client: Any,
    iam: Any,
    definition_path: Path,
    substitutions: Mapping[str, str],
    name: str = "imgsearch-index-pipeline",
    function_names: Mapping[str, str] | None = None,
) -> str:
    """Create the state machine from an ASL file; returns its ARN.

    Each ``${<LogicalId>Arn}`` placeholder that ``substitutions`` does not fill gets a moto
    Lambda function (named ``function_names[logical id]``, default the logical id) and its ARN.
    """
    definition = Path(definition_path).read_text(encoding="utf-8")
    names = function_names or {}
    wanted = {
        placeholder.removesuffix("Arn")
        for placeholder in _PLACEHOLDER.findall(definition)
        if placeholder not in substitutions and placeholder.endswith("FunctionArn")
    }
    known = {**PIPELINE_HANDLERS, **BACKFILL_HANDLERS, **ROLLOUT_HANDLERS, **RETRAIN_HANDLERS}
    functions = {names.get(lid, lid): known.get(lid, "app.handler") for lid in wanted}
    arns = register_functions(lambda_client, iam, functions)
    filled = {**{lid + "Arn": arns[names.get(lid, lid)] for lid in wanted}, **substitutions}
    role = ensure_role(iam)
    existing = {
        machine["name"]: machine["stateMachineArn"]
        for page in sfn.get_paginator("list_state_machines").paginate()
        for machine in page["stateMachines"]
    }
    rendered = render_definition(definition, filled)
    if name in existing:
        sfn.update_state_machine(stateMachineArn=existing[name], definition=rendered, roleArn=role)
        return existing[name]
    return sfn.create_state_machine(name=name, definition=rendered, roleArn=role)["stateMachineArn"]


def create_rollout_machines(
    sfn: Any,
    lambda_client: Any,
    iam: Any,
    machines: Path,
    topic: str,
    bucket: str,
    backfill_prefix: str = "backfill/",
) -> dict[str, str]:
    """The model rollout and the two workflows it nests, wired as the template wires them: the
    ARNs of ``index``, ``backfill`` and ``rollout``, from the ASL files in ``machines``."""
    arns = {
        "index": create_state_machine(
            sfn, lambda_client, iam, machines / "index_pipeline.asl.json",
            {"AlertsTopicArn": topic}, name="index",
        ),
        "backfill": create_state_machine(
            sfn, lambda_client, iam, machines / "backfill.asl.json",
            {"ServiceBucket": bucket, "BackfillPrefix": backfill_prefix}, name="backfill",
        ),
    }  # fmt: skip
    arns["rollout"] = create_state_machine(
        sfn, lambda_client, iam, machines / "model_rollout.asl.json",
        {"BackfillStateMachineArn": arns["backfill"], "IndexPipelineArn": arns["index"]},
        name="rollout",
    )  # fmt: skip
    return arns
