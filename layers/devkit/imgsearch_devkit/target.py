"""Where the operator commands point: the local stack or a deployed CloudFormation stack.

The local stack writes a state file (``.imgsearch/local.json``) when it is up; a deployed stack
is found by its name and its CloudFormation outputs. Either way the commands get the same
``Target``::

    target = Target.resolve(stack=None)            # the local stack's state file
    target = Target.resolve(stack="imgsearch-prod")
    s3 = target.client("s3")                        # boto3 client at the right endpoint
    settings = target.settings()                    # library configuration for this stack

The state file is found as git finds its repository: ``--state FILE``, else ``IMGSEARCH_STATE``,
else the first ``.imgsearch/local.json`` from the working directory upwards
(``find_state_file``). Two local stacks cannot share one file: ``claim_state_file`` refuses a
file whose stack still answers on its ports::

    claim_state_file(Path(".imgsearch/local.json"))   # TargetError while another stack is up
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imgsearch_client import Client, auth_for

from imgsearch.core.config import Settings
from imgsearch_devkit.project import operator_settings

LOCAL_STATE_FILE = Path(".imgsearch") / "local.json"
"""Where ``imgsearch local up`` writes its state, relative to the folder it runs in."""
STATE_VARIABLE = "IMGSEARCH_STATE"
"""Names the state file when ``--state`` does not (read only here)."""
PROBE_SECONDS = 0.5
"""How long a state file's endpoint may take to accept a connection before it counts as gone."""

# CloudFormation output name -> Target field (template.yaml declares these outputs).
STACK_OUTPUTS = {
    "ApiUrl": "api_url",
    "BucketName": "bucket",
    "ImageBucketName": "image_bucket",
    "ImagePrefix": "image_prefix",
    "TableName": "table",
    "IngestQueueUrl": "queue_url",
    "DeadLetterQueueUrl": "dlq_url",
    "StateMachineArn": "state_machine_arn",
    "BackfillStateMachineArn": "backfill_arn",
    "ModelRolloutStateMachineArn": "rollout_arn",
    "RetrainStateMachineArn": "retrain_arn",
    "AlertsTopicArn": "alerts_topic_arn",
    "MonitorFunctionName": "monitor_function",
    "AuthMode": "auth_mode",
}
TOKEN_VARIABLE = "IMGSEARCH_TOKEN"
"""A bearer token for a ``JWT`` stack's API, when ``--token`` is not given."""


class TargetError(RuntimeError):
    """No stack to talk to, or a stack without the outputs the commands need."""


NO_STACK_HINT = (
    "start one with `imgsearch local up`, point at its state with --state FILE or "
    f"{STATE_VARIABLE}=FILE, or name a deployed stack with --stack NAME"
)


def find_state_file(
    state: Path | None = None,
    start: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The local stack's state file: ``state`` (``--state``), else ``$IMGSEARCH_STATE``, else
    the first ``.imgsearch/local.json`` in ``start`` (the working directory) or a folder above.

    Raises ``TargetError`` naming where it looked::

        find_state_file()                       # Path("/home/me/imgsearch/.imgsearch/local.json")
        find_state_file(Path("other.json"))     # that file, if it exists
    """
    env = os.environ if environ is None else environ
    named = state or (Path(env[STATE_VARIABLE]) if env.get(STATE_VARIABLE) else None)
    if named is not None:
        source = "--state" if state else STATE_VARIABLE
        path = named.expanduser()
        if not path.is_file():
            raise TargetError(f"no local stack state at {path} (from {source}): {NO_STACK_HINT}")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / LOCAL_STATE_FILE).is_file():
            return folder / LOCAL_STATE_FILE
    raise TargetError(
        f"no local stack state: no {LOCAL_STATE_FILE} in {here} or any folder above it: "
        + NO_STACK_HINT
    )


@dataclass(frozen=True)
class Target:
    region: str
    bucket: str
    table: str
    image_prefix: str = "images/"
    queue_url: str = ""
    dlq_url: str = ""
    state_machine_arn: str = ""
    backfill_arn: str = ""
    """The backfill state machine (``imgsearch backfill``)."""
    rollout_arn: str = ""
    """The model rollout state machine (``imgsearch model rollout``)."""
    retrain_arn: str = ""
    """The retraining state machine (``imgsearch retrain``)."""
    alerts_topic_arn: str = ""
    monitor_function: str = ""
    """The monitor function (``imgsearch monitor run``)."""
    api_url: str = ""
    aws_endpoint: str = ""
    """Set for the local stack (moto server); empty for real AWS."""
    stack: str = ""
    image_bucket: str = ""
    """Where the images are (the stack's ``ImageBucketName``); empty: ``bucket``. A bucket the
    user already had is only read by the stack: uploads go there, indexes never do."""
    schedule_seconds: float = 0
    """The local stack's pipeline schedule (0: none); a deployed stack's is its EventBridge
    Scheduler schedule (``imgsearch_devkit.ops.schedule``)."""
    auth_mode: str = "none"
    """How the API authenticates (the stack's ``AuthMode`` output): ``IAM``, ``JWT`` or none."""
    profile: str | None = field(default=None, compare=False)
    """The AWS profile the commands use for a deployed stack (``--profile``)."""
    token: str = field(default="", repr=False, compare=False)
    """A bearer token for a ``JWT`` API (``--token`` or ``$IMGSEARCH_TOKEN``)."""

    def __post_init__(self) -> None:
        # A state file or stack from before ImageBucketName: the images are in the bucket.
        if not self.image_bucket:
            object.__setattr__(self, "image_bucket", self.bucket)

    @classmethod
    def from_state_file(cls, path: Path = LOCAL_STATE_FILE) -> Target:
        if not path.is_file():
            raise TargetError(f"no local stack state at {path}: {NO_STACK_HINT}")
        known = {f.name for f in fields(cls)}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not an object, fields
            raise TargetError(f"{path} is not a local stack's state file: {exc}") from exc

    @classmethod
    def from_stack(
        cls, stack: str, region: str | None = None, profile: str | None = None
    ) -> Target:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            session = boto3.session.Session(region_name=region, profile_name=profile)
            described = session.client("cloudformation").describe_stacks(StackName=stack)
        except (BotoCoreError, ClientError) as exc:
            raise TargetError(f"cannot read stack {stack!r}: {exc}") from exc
        outputs = {
            o["OutputKey"]: o["OutputValue"] for o in described["Stacks"][0].get("Outputs", [])
        }
        missing = [name for name in ("BucketName", "TableName") if name not in outputs]
        if missing:
            raise TargetError(f"stack {stack!r} has no outputs {', '.join(missing)}")
        values = {field: outputs[name] for name, field in STACK_OUTPUTS.items() if name in outputs}
        region = session.region_name or "us-east-1"
        return cls(region=region, stack=stack, profile=profile, **values)

    @classmethod
    def resolve(
        cls,
        stack: str | None = None,
        state_file: Path | None = None,
        region: str | None = None,
        profile: str | None = None,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Target:
        """The deployed ``stack``, else the local stack of ``state_file`` (``find_state_file``);
        ``token`` defaults to ``$IMGSEARCH_TOKEN``."""
        env = os.environ if environ is None else environ
        found = (
            cls.from_stack(stack, region, profile)
            if stack
            else cls.from_state_file(find_state_file(state_file, environ=env))
        )
        return replace(found, token=token or env.get(TOKEN_VARIABLE, ""))

    @property
    def is_local(self) -> bool:
        """The local stack (a moto endpoint), where a few AWS features are not emulated."""
        return bool(self.aws_endpoint)

    def client(self, service: str) -> Any:
        import boto3

        if self.aws_endpoint:
            # moto accepts any credentials; fixed ones keep a user's real keys out of it.
            return boto3.client(
                service, region_name=self.region, endpoint_url=self.aws_endpoint,
                aws_access_key_id="testing", aws_secret_access_key="testing",
            )  # fmt: skip
        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        return session.client(service)

    def api(self) -> Client:
        """A client of the stack's HTTP API, authenticated as its ``AuthMode`` requires."""
        auth = auth_for(self.auth_mode, profile=self.profile, region=self.region, token=self.token)
        return Client(self.api_url, auth=auth)

    def settings(self) -> Settings:
        """Library configuration for this stack (model and index settings from the env)."""
        return replace(
            operator_settings(),
            bucket=self.bucket,
            image_bucket=self.image_bucket,
            image_prefix=self.image_prefix,
            table=self.table,
            queue_url=self.queue_url,
            dlq_url=self.dlq_url,
            state_machine_arn=self.state_machine_arn,
            alerts_topic_arn=self.alerts_topic_arn,
            region=self.region,
        )

    def to_json(self) -> str:
        state = asdict(self)
        for private in ("profile", "token"):  # the caller's, not the stack's
            state.pop(private)
        return json.dumps(state, indent=2)


def _answers(url: str) -> bool:
    """Whether something accepts a TCP connection at ``url``'s host and port."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_SECONDS):
            return True
    except OSError:
        return False


def state_file_alive(path: Path) -> bool:
    """Whether the local stack ``path`` names still runs: its AWS endpoint or its API answers.
    A missing or unreadable file is no live stack."""
    try:
        target = Target.from_state_file(path)
    except TargetError:
        return False
    return any(_answers(url) for url in (target.aws_endpoint, target.api_url) if url)


def claim_state_file(path: Path, target: Target | None = None) -> None:
    """Refuse ``path`` while another running local stack holds it; a stale file (its stack is
    gone) or one that already names ``target`` may be replaced.

    Raises ``TargetError`` saying which stack holds it and how to start a second one::

        claim_state_file(config.state_file)      # before starting
        claim_state_file(config.state_file, target)  # again just before writing it
    """
    if not path.is_file() or not state_file_alive(path):
        return
    holder = Target.from_state_file(path)
    if target is not None and holder == target:
        return
    raise TargetError(
        f"{path} belongs to a local stack that is still running (AWS endpoint "
        f"{holder.aws_endpoint or '-'}, API {holder.api_url or '-'}): stop it, or give this "
        f"stack another state file with --state FILE (the other commands then take the same "
        f"--state FILE, or {STATE_VARIABLE}=FILE)"
    )
