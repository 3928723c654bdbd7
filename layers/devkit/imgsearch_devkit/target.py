"""Where the operator commands point: the local stack or a deployed CloudFormation stack.

The local stack writes ``.imgsearch/local.json`` when it is up; a deployed stack is found by its
name and its CloudFormation outputs. Either way the commands get the same ``Target``::

    target = Target.resolve(stack=None)            # the local stack's state file
    target = Target.resolve(stack="imgsearch-prod")
    s3 = target.client("s3")                        # boto3 client at the right endpoint
    settings = target.settings()                    # library configuration for this stack
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from imgsearch.core.config import Settings
from imgsearch_devkit.project import operator_settings

LOCAL_STATE_FILE = Path(".imgsearch") / "local.json"

# CloudFormation output name -> Target field (template.yaml declares these outputs).
STACK_OUTPUTS = {
    "ApiUrl": "api_url",
    "BucketName": "bucket",
    "ImagePrefix": "image_prefix",
    "TableName": "table",
    "IngestQueueUrl": "queue_url",
    "DeadLetterQueueUrl": "dlq_url",
    "StateMachineArn": "state_machine_arn",
    "AlertsTopicArn": "alerts_topic_arn",
}


class TargetError(RuntimeError):
    """No stack to talk to, or a stack without the outputs the commands need."""


@dataclass(frozen=True)
class Target:
    region: str
    bucket: str
    table: str
    image_prefix: str = "images/"
    queue_url: str = ""
    dlq_url: str = ""
    state_machine_arn: str = ""
    alerts_topic_arn: str = ""
    api_url: str = ""
    aws_endpoint: str = ""
    """Set for the local stack (moto server); empty for real AWS."""
    stack: str = ""

    @classmethod
    def from_state_file(cls, path: Path = LOCAL_STATE_FILE) -> Target:
        if not path.is_file():
            raise TargetError(
                f"no local stack state at {path}: start one with `imgsearch local up` "
                "or name a deployed stack with --stack NAME"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_stack(cls, stack: str, region: str | None = None) -> Target:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        session = boto3.session.Session(region_name=region)
        try:
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
        return cls(region=session.region_name or "us-east-1", stack=stack, **values)

    @classmethod
    def resolve(cls, stack: str | None = None, state_file: Path = LOCAL_STATE_FILE) -> Target:
        return cls.from_stack(stack) if stack else cls.from_state_file(state_file)

    def client(self, service: str) -> Any:
        import boto3

        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.aws_endpoint:
            # moto accepts any credentials; fixed ones keep a user's real keys out of it.
            kwargs.update(
                endpoint_url=self.aws_endpoint,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.client(service, **kwargs)

    def settings(self) -> Settings:
        """Library configuration for this stack (model and index settings from the env)."""
        return replace(
            operator_settings(),
            bucket=self.bucket,
            image_prefix=self.image_prefix,
            table=self.table,
            queue_url=self.queue_url,
            dlq_url=self.dlq_url,
            state_machine_arn=self.state_machine_arn,
            alerts_topic_arn=self.alerts_topic_arn,
            region=self.region,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)
