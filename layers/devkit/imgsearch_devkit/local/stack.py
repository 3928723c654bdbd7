"""``LocalStack``: the whole service on one machine, started and stopped in-process.

Start order: the moto server (S3, SQS, DynamoDB, SNS, Step Functions, Lambda, IAM on one port),
the template's resources, the handlers (each built by its module's ``build`` with ``Settings``
read from its own function's environment in the template, and boto3 clients of the moto
endpoint), the Lambda dispatch for the pipeline's tasks, the state machine, the SQS event source
mapping for the embed function, the HTTP API for the query function, an optional pipeline
schedule, and last the state file (``.imgsearch/local.json``) that tells other tools the stack is
up. ``stop()`` undoes all of it::

    with LocalStack(LocalStackConfig(aws_port=0, api_port=0)) as stack:
        stack.target.api_url, stack.target.bucket
        stack.wait_for_ingestion(expected=10)
        stack.run_pipeline()

With ``existing_bucket`` the images live in a bucket that is there before the stack (created
on the moto server if missing, with EventBridge notifications turned on, as its owner would),
and the stack is created with ``ExistingBucketName``: events reach the ingest queue through
moto's EventBridge and the template's rule::

    LocalStack(LocalStackConfig(existing_bucket="my-photos"))   # target.image_bucket == that
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from imgsearch.catalog.layout import CURRENT_FILE
from imgsearch.core.aws import LOCAL_CREDENTIALS, Clients, is_not_found
from imgsearch.core.config import Settings
from imgsearch_devkit.local.function_logs import routed_function_output
from imgsearch_devkit.local.http_adapter import ApiServer
from imgsearch_devkit.local.lambda_dispatch import (
    Handler,
    LambdaDispatch,
    install_lambda_dispatch,
    load_handler,
)
from imgsearch_devkit.local.moto_fixes import moto_fixes
from imgsearch_devkit.local.persistence import Counts, DataFolder, StackData
from imgsearch_devkit.local.resources import (
    FunctionSpec,
    LocalResources,
    create_resources,
    task_root_path,
    usage_log_groups,
)
from imgsearch_devkit.local.sqs_worker import SqsEventSourceMapping
from imgsearch_devkit.local.template import load_template
from imgsearch_devkit.local.training_jobs import training_jobs
from imgsearch_devkit.local.usage_stream import UsageStream
from imgsearch_devkit.ops.stats import queue_depth
from imgsearch_devkit.project import project_root
from imgsearch_devkit.target import LOCAL_STATE_FILE, Target, claim_state_file

logger = logging.getLogger(__name__)

DEFAULT_STACK_NAME = "imgsearch-local"
LOCAL_TRAINING_IMAGE = "000000000000.dkr.ecr.us-east-1.amazonaws.com/imgsearch-training:local"
"""The local stack's training image: a name only, as its training jobs run in-process
(``training_jobs.py``); set, so that retraining is on as a deployed stack with an image is."""
DEFAULT_PARAMETERS = {"Stage": "local", "TrainingImageUri": LOCAL_TRAINING_IMAGE}
POINTER_POLL_SECONDS = 0.25
"""How often the local stack looks at ``current.json`` on the query function's behalf."""
WRITE_MODELS_SECONDS = 1
"""How often the local embed function reads which models to write with."""
SCHEDULE_INPUT = '{"trigger": "schedule"}'
"""What the template's EventBridge schedule sends (``IndexPipeline.Events.Rebuild.Input``)."""


_one_per_process = threading.Lock()


class PortInUse(OSError):
    """A port the stack needs is taken (another ``imgsearch local up`` is likely running)."""


class StackError(RuntimeError):
    """The stack could not start, or an operation on it failed."""


@dataclass
class LocalStackConfig:
    aws_port: int = 5000
    """moto server port; 0 picks a free one."""
    api_port: int = 3000
    """HTTP API port; 0 picks a free one."""
    stack_name: str = DEFAULT_STACK_NAME
    region: str = "us-east-1"
    parameters: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PARAMETERS))
    """Template parameter overrides (``Stage`` names the bucket)."""
    schedule_seconds: float = 0
    """Start a pipeline execution this often (0: only on demand)."""
    state_file: Path = LOCAL_STATE_FILE
    repo: Path = field(default_factory=project_root)
    """Where ``template.yaml``, ``statemachine/`` and ``functions/`` are."""
    function_log: Path | None = None
    """Where the functions' output (logs, EMF metrics) goes; ``None``: this process's stdout."""
    index_refresh_seconds: int = 5
    """How often the query function looks for a new index (60 s on AWS; short here so a
    pipeline run shows up at once)."""
    model_uri: str = ""
    """A model bundle for every function instead of the template's (empty: the demo bundle)."""
    poll_wait_seconds: int = 2
    """The event source mapping's long-poll wait (Lambda uses 20 s; shorter stops faster)."""
    data_dir: Path | None = None
    """Where the stack's data is kept between runs (``None``: ``data/`` beside the state file)."""
    keep_data: bool = True
    """Restore the data folder at start and save into it at stop (False: memory only)."""
    fresh: bool = False
    """Delete the data folder first: start empty."""
    existing_bucket: str = ""
    """Images in this bucket instead of the stack's own (``ExistingBucketName``); empty: the
    stack's bucket with its S3 -> SQS notification."""

    @classmethod
    def in_folder(cls, folder: Path, **changes: Any) -> LocalStackConfig:
        """A stack of its own for a test or a benchmark: free ports, its state file, function
        log and data all inside ``folder``."""
        return cls(
            aws_port=0,
            api_port=0,
            state_file=folder / ".imgsearch" / "local.json",
            function_log=folder / "functions.log",
            **changes,
        )

    @property
    def data_folder(self) -> Path:
        return self.data_dir or self.state_file.parent / "data"


class _MotoServer:
    """``moto.server.ThreadedMotoServer`` with a bind error raised instead of hanging ``start``."""

    def __init__(self, host: str, port: int) -> None:
        from moto.server import ThreadedMotoServer

        class Server(ThreadedMotoServer):
            error: BaseException | None = None

            def _server_entry(self) -> None:
                try:
                    super()._server_entry()
                except BaseException as exc:
                    self.error = exc
                    self._server_ready_event.set()

        self.server = Server(ip_address=host, port=port, verbose=False)

    def start(self) -> tuple[str, int]:
        self.server.start()
        if self.server.error is not None:
            raise self.server.error
        return self.server.get_host_and_port()

    def stop(self) -> None:
        self.server.stop()


def _port_in_use(port: int, what: str, flag: str) -> PortInUse:
    return PortInUse(
        errno.EADDRINUSE,
        f"port {port} ({what}) is already in use - is another `imgsearch local up` running? "
        f"Stop it, or pick another port with {flag} (0 picks a free one)",
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        # As the HTTP servers bind: TIME_WAIT leftovers of a stopped stack do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class LocalStack:
    def __init__(self, config: LocalStackConfig | None = None) -> None:
        self.config = config or LocalStackConfig()
        self.target: Target | None = None
        self.resources: LocalResources | None = None
        self.mapping: SqsEventSourceMapping | None = None
        self.api: ApiServer | None = None
        self.dispatch: LambdaDispatch | None = None
        self._exit = ExitStack()
        self._stop = threading.Event()
        self._cache_dir: Path | None = None
        self._clients: Clients | None = None
        self.restored = Counts()
        """What the data folder gave back at start (all zero: a fresh stack)."""

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Target:
        # Before anything starts: another live stack's state file is not ours to replace.
        claim_state_file(self.config.state_file)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Target:
        config = self.config
        template = load_template(config.repo / "template.yaml")
        # Bind the API port first: a busy port fails before anything else starts.
        self.api = self._bind_api(config.api_port)

        moto = _MotoServer("127.0.0.1", config.aws_port)
        # werkzeug reports a busy port with its own message and sys.exit(1) in the server
        # thread; checking first gives the clear error.
        if config.aws_port and not _port_free("127.0.0.1", config.aws_port):
            raise _port_in_use(config.aws_port, "AWS endpoint", "--aws-port")
        try:
            host, port = moto.start()
        except (OSError, SystemExit) as exc:
            raise StackError(f"the moto server did not start on port {config.aws_port}") from exc
        self._exit.callback(moto.stop)
        # moto's backends outlive its server: forget this stack's resources when it stops, so a
        # later stack in the same process starts from its data folder, not from leftovers.
        self._exit.callback(_reset_moto)
        # moto's backends (and its MOTO_PORT setting) are process-wide.
        if not _one_per_process.acquire(blocking=False):
            raise StackError("a local stack is already running in this process")
        self._exit.callback(_one_per_process.release)
        endpoint = f"http://{host}:{port}"
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._enable_step_functions_interpreter()
        self._exit.enter_context(moto_fixes())
        if config.function_log:
            self._exit.enter_context(routed_function_output(config.function_log))

        self._cache_dir = Path(tempfile.mkdtemp(prefix="imgsearch-local-"))
        self._exit.callback(shutil.rmtree, self._cache_dir, True)
        # moto's Step Functions interpreter calls Lambda at localhost:$MOTO_PORT (moto's own
        # setting, read from the environment: moto.settings.moto_server_port).
        self._exit.enter_context(_moto_port(port))
        self._clients = Clients.for_endpoint(endpoint, config.region)
        # SageMaker training jobs (retraining) run in-process, reading and writing through moto.
        training_s3 = self._clients.s3
        self._exit.enter_context(training_jobs(lambda: training_s3))

        clients = {
            name: self._client(name, endpoint)
            for name in (
                "s3",
                "sqs",
                "dynamodb",
                "cloudformation",
                "stepfunctions",
                "secretsmanager",
                "firehose",
                "logs",
            )
        }
        parameters = dict(config.parameters)
        if config.existing_bucket:
            _prepare_existing_bucket(clients["s3"], config.existing_bucket)
            parameters["ExistingBucketName"] = config.existing_bucket
        resources = create_resources(
            clients, template, config.stack_name, config.region, parameters
        )
        self.resources = resources
        self.restored = self._restore_data(clients, resources)
        # What Lambda does with a function's output: the usage records reach the log groups.
        assert resources.template is not None  # create_resources always sets it
        self.usage_stream = UsageStream(clients["logs"], usage_log_groups(resources.template))
        self._exit.enter_context(self.usage_stream.installed())

        handlers = self._build_handlers(resources)
        routes = {
            spec.name: handlers[spec.logical_id]
            for spec in resources.functions.values()
            if spec.logical_id not in (resources.embed.function, resources.api_function)
        }
        self.dispatch = self._exit.enter_context(install_lambda_dispatch(routes))
        state_machine_arn = resources.state_machine_arn

        embed = resources.functions[resources.embed.function]
        self.mapping = SqsEventSourceMapping(
            clients["sqs"],
            resources.queue_url,
            resources.queue_arn,
            handlers[embed.logical_id],
            batch_size=resources.embed.batch_size,
            batch_window=resources.embed.batch_window,
            wait_seconds=config.poll_wait_seconds,
            function_name=embed.name,
            timeout_seconds=embed.timeout,
            region=config.region,
        )
        self.mapping.start()
        self._exit.callback(self.mapping.stop)

        query = resources.functions[resources.api_function]
        self.api.handler = handlers[query.logical_id]
        self._watch_serving_pointer(clients["s3"], handlers[query.logical_id], query)
        self.api.function_name = query.name
        self.api.timeout_seconds = query.timeout
        self.api.start()

        self.target = Target(
            region=config.region,
            bucket=resources.bucket,
            image_bucket=resources.image_bucket,
            table=resources.table,
            image_prefix=resources.image_prefix,
            queue_url=resources.queue_url,
            dlq_url=resources.dlq_url,
            state_machine_arn=state_machine_arn,
            backfill_arn=resources.backfill_arn,
            rollout_arn=resources.rollout_arn,
            retrain_arn=resources.retrain_arn,
            alerts_topic_arn=resources.alerts_topic_arn,
            monitor_function=resources.monitor_function,
            api_url=self.api.url,
            aws_endpoint=endpoint,
            stack=config.stack_name,
            schedule_seconds=config.schedule_seconds,
        )
        if config.schedule_seconds > 0:
            self._start_schedule(config.schedule_seconds)
        self._write_state_file(self.target)
        return self.target

    def stop(self) -> None:
        """Stop everything that started, newest first; safe to call twice."""
        self._stop.set()
        if self.api is not None:
            api, self.api = self.api, None
            api.stop()
        self._exit.close()

    def serve_forever(self) -> None:
        """Block until Ctrl-C (or ``stop()`` from another thread)."""
        while not self._stop.wait(0.5):
            pass

    # ------------------------------------------------------------------ start helpers
    def _bind_api(self, port: int) -> ApiServer:
        try:
            return ApiServer(_unavailable, port=port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _port_in_use(port, "search API", "--api-port") from exc
            raise

    def _enable_step_functions_interpreter(self) -> None:
        # The server runs in this process: its Step Functions backend reads moto's user config
        # (what POST /moto-api/config sets), so the real ASL interpreter is switched on here.
        from moto.core.config import default_user_config

        saved = copy.deepcopy(default_user_config.get("stepfunctions", {}))
        default_user_config["stepfunctions"] = {**saved, "execute_state_machine": True}
        self._exit.callback(default_user_config.__setitem__, "stepfunctions", saved)

    def _function_settings(self, spec: FunctionSpec) -> Settings:
        """What the function's Lambda would read: the template's environment, with image paths
        mapped into the checkout and the cache folders and refresh rate of this stack."""
        assert self._cache_dir is not None
        environment = {
            name: task_root_path(value, self.config.repo)
            for name, value in spec.environment.items()
        }
        environment.update(
            AWS_REGION=self.config.region,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(spec.memory),
            # The checkout holds models/ where the image's task root does.
            LAMBDA_TASK_ROOT=str(self.config.repo),
            IMGSEARCH_MODEL_CACHE_DIR=str(self._cache_dir / "models"),
            IMGSEARCH_INDEX_CACHE_DIR=str(self._cache_dir / "indexes"),
            IMGSEARCH_INDEX_REFRESH_SECONDS=str(self.config.index_refresh_seconds),
            # A rollout waits three times this before it lists the bucket (10 s on AWS).
            IMGSEARCH_WRITE_MODELS_SECONDS=str(WRITE_MODELS_SECONDS),
        )
        if self.config.model_uri:
            environment["IMGSEARCH_MODEL_URI"] = self.config.model_uri
        return Settings.from_env(environment)

    def _build_handlers(self, resources: LocalResources) -> dict[str, Handler]:
        """Build every handler from its function's settings, as its own Lambda's init would."""
        assert self._clients is not None
        handlers: dict[str, Handler] = {}
        for spec in resources.functions.values():
            try:
                handlers[spec.logical_id] = load_handler(
                    spec.handler,
                    self._function_settings(spec),
                    self._clients,
                    functions_dir=self.config.repo / "functions",
                )
            except Exception as exc:  # its init failed, as a cold start would
                raise StackError(
                    f"{spec.logical_id} ({spec.handler}) failed to initialise: {exc}"
                ) from exc
        return handlers

    def _client(self, service: str, endpoint: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=self.config.region,
            **LOCAL_CREDENTIALS,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def _restore_data(self, clients: dict[str, Any], resources: LocalResources) -> Counts:
        """Put back what the last run saved (before the handlers are built, so the query
        function serves the restored index at once), and save again at stop."""
        config = self.config
        if not config.keep_data:
            return Counts()
        data = StackData(
            s3=clients["s3"],
            dynamodb=clients["dynamodb"],
            sqs=clients["sqs"],
            bucket=resources.bucket,
            table=resources.table,
            queues={"ingest": resources.queue_url, "dlq": resources.dlq_url},
            # The existing bucket is gone with the moto server too: its objects are kept.
            image_bucket=""
            if resources.image_bucket == resources.bucket
            else resources.image_bucket,
        )
        folder = DataFolder(config.data_folder)
        if config.fresh:
            folder.clear()
        restored = folder.restore(data)
        # Registered only once the restore succeeded: a failed one never overwrites the data.
        self._exit.callback(self._save_data, folder, data)
        return restored

    def _save_data(self, folder: DataFolder, data: StackData) -> None:
        saved = folder.save(data)
        logger.info(
            "local stack data saved to %s: %d objects, %d items, %d messages",
            folder.folder,
            saved.objects,
            saved.items,
            saved.messages,
        )

    def _watch_serving_pointer(self, s3: Any, query_handler: Handler, spec: FunctionSpec) -> None:
        """Tell the query function as soon as ``current.json`` changes, so a publish or a
        rollback serves at once (on AWS it looks every ``IMGSEARCH_INDEX_REFRESH_SECONDS``)."""
        settings = self._function_settings(spec)
        key = settings.index.prefix + CURRENT_FILE
        service = query_handler.api.service  # type: ignore[attr-defined]

        def etag() -> str:
            try:
                return s3.head_object(Bucket=settings.bucket, Key=key)["ETag"]
            except ClientError as exc:
                if is_not_found(exc):
                    return ""
                raise

        def watch() -> None:
            seen = etag()
            while not self._stop.wait(POINTER_POLL_SECONDS):
                try:
                    latest = etag()
                    if latest != seen:
                        seen = latest
                        service.refresh_now()
                except Exception:  # the API keeps its own schedule; never kill the stack
                    logger.exception("could not check %s for the query function", key)

        thread = threading.Thread(target=watch, name="imgsearch-serving-pointer", daemon=True)
        thread.start()
        self._exit.callback(thread.join, 5)

    def _start_schedule(self, seconds: float) -> None:
        def tick() -> None:
            while not self._stop.wait(seconds):
                try:
                    arn = self.start_pipeline(SCHEDULE_INPUT)
                    logger.info("scheduled pipeline execution %s", arn)
                except Exception:
                    logger.exception("could not start the scheduled pipeline execution")

        thread = threading.Thread(target=tick, name="imgsearch-schedule", daemon=True)
        thread.start()
        self._exit.callback(thread.join, 5)

    def _write_state_file(self, target: Target) -> None:
        path = self.config.state_file
        claim_state_file(path, target)  # a stack that started since start() checked
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(target.to_json() + "\n", encoding="utf-8")
        temporary.replace(path)
        self._exit.callback(_remove_state_file, path, target.to_json())

    # ------------------------------------------------------------------ operations
    def require_target(self) -> Target:
        if self.target is None:
            raise StackError("the local stack is not running")
        return self.target

    def start_pipeline(self, execution_input: str = "{}") -> str:
        """Start an index pipeline execution; returns its ARN."""
        target = self.require_target()
        if not target.state_machine_arn:
            raise StackError("the template declares no state machine")
        sfn = target.client("stepfunctions")
        return sfn.start_execution(stateMachineArn=target.state_machine_arn, input=execution_input)[
            "executionArn"
        ]

    def run_pipeline(self, execution_input: str = "{}", timeout: float = 600) -> dict[str, Any]:
        """Start an execution and wait for it; returns ``describe_execution``'s answer."""
        arn = self.start_pipeline(execution_input)
        sfn = self.require_target().client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise StackError(f"pipeline execution {arn} still running after {timeout:.0f} s")
            time.sleep(0.5)

    def ingest_idle(self) -> bool:
        """Nothing waiting or in flight on the ingest queue and the mapping is not busy."""
        target = self.require_target()
        visible, in_flight = queue_depth(target.client("sqs"), target.queue_url)
        return visible == 0 and in_flight == 0 and not (self.mapping and self.mapping.busy)

    def wait_for_ingestion(self, timeout: float = 300, settle: float = 0.5) -> None:
        """Block until the ingest queue is drained (checked twice, ``settle`` s apart)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ingest_idle():
                time.sleep(settle)
                if self.ingest_idle():
                    return
            if time.monotonic() > deadline:
                raise StackError(f"ingestion did not finish within {timeout:.0f} s")
            time.sleep(0.25)


def _prepare_existing_bucket(s3: Any, name: str) -> None:
    """The user's bucket as ``ExistingBucketName`` expects it: there, with EventBridge
    notifications on (README, "Your own bucket": the owner turns them on)."""
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if name not in existing:
        region = s3.meta.region_name
        # us-east-1 refuses a LocationConstraint naming itself.
        where = {} if region == "us-east-1" else {"LocationConstraint": region}
        s3.create_bucket(Bucket=name, **({"CreateBucketConfiguration": where} if where else {}))
    configuration = s3.get_bucket_notification_configuration(Bucket=name)
    configuration.pop("ResponseMetadata", None)
    # Kept beside it, as the README tells a user to (the call replaces the whole configuration).
    s3.put_bucket_notification_configuration(
        Bucket=name, NotificationConfiguration={**configuration, "EventBridgeConfiguration": {}}
    )


def _unavailable(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 503, "body": json.dumps({"message": "starting"})}


def _reset_moto() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


def _remove_state_file(path: Path, written: str) -> None:
    # Only our own: a second stack may have replaced it since.
    try:
        if path.read_text(encoding="utf-8").strip() == written.strip():
            path.unlink()
    except FileNotFoundError:
        pass


@contextmanager
def _moto_port(port: int) -> Iterator[None]:
    saved = os.environ.get("MOTO_PORT")
    os.environ["MOTO_PORT"] = str(port)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = saved
