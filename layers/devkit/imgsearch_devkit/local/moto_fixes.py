"""Where moto's server differs from AWS in ways our code or its users would notice, fixed.

- S3 event notifications: S3 puts ``s3.object.sequencer`` (hex; for one key, a later event has
  a greater value once both are left-padded to one length) in every object event, and the embed
  function orders writes by it. moto leaves it out (and ``versionId`` on versioned buckets), so
  the local stack wraps the one function that builds them, ``moto.s3.notifications.
  _get_s3_event``.
- Deleting from a versioned bucket (the template turns versioning on): S3 sends
  ``ObjectRemoved:DeleteMarkerCreated``; moto sends nothing. The wrapper around
  ``S3Backend._set_delete_marker`` sends it. Remove events carry no ``size``/``eTag``, as S3's.
- S3 events to EventBridge (a bucket with ``EventBridgeConfiguration``, as ``ExistingBucketName``
  asks of the user): moto sends every one with the same ``sequencer`` (``617f08299329d189``),
  ``id`` and ``request-id``, names the ETag ``eTag`` (AWS: ``etag``), puts ``size`` and the ETag
  in deletes and ``version-id: "null"`` in unversioned buckets, and gives the notification's
  event name as ``reason`` (AWS: the API, ``PutObject``, ``DeleteObject`` ...) with no
  ``deletion-type``. ``eventbridge_s3_events`` replaces the function that builds and sends them,
  ``moto.s3.notifications._send_event_bridge_message``, with one that sends AWS's shape (a
  sequencer from ``next_sequencer``, which the notifications share). The key is left as it is:
  EventBridge does not URL-encode it (``imgsearch.ingest.events``). moto's CloudFormation
  creates an ``AWS::Events::Rule`` with its ``Targets`` (checked: ``put_targets``), and its
  event-pattern matching handles the rule's ``prefix`` filter; the SQS target's message body is
  the event as it is, as on AWS.
- Step Functions ``StartExecution`` without a ``name``: AWS generates a UUID; moto's interpreter
  backend names every such execution ``None``, so the second one fails with
  ``ExecutionAlreadyExists``. The wrapper supplies the UUID.

All only while the local stack runs::

    with moto_fixes():
        s3.put_object(...)                      # the notification carries s3.object.sequencer
        sfn.start_execution(stateMachineArn=arn)  # twice: two executions

moto's CloudFormation creates the SAM-transformed template (``resources.py``) once the template
is mended where moto differs from CloudFormation (``for_moto_cloudformation``) and the bucket
properties it ignores are applied by API afterwards (``apply_ignored_bucket_properties``), as is
the state machine (``resources.py``); each difference is named where it is mended::

    body = json.dumps(for_moto_cloudformation(stack))
    cloudformation.create_stack(StackName=stack.stack_name, TemplateBody=body)
    apply_ignored_bucket_properties(s3, stack)
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from imgsearch_devkit.local.template import (
    NO_VALUE,
    StackTemplate,
    default_name,
    name_property,
    target_of,
)

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_last = 0

EVENTBRIDGE_REASONS = {
    # S3's EventBridge ``reason``: the API that made the change (docs: "Using EventBridge").
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


def next_sequencer() -> str:
    """Strictly increasing across the process: nanoseconds, bumped on a tie; 18 hex digits."""
    global _last
    with _lock:
        _last = max(_last + 1, time.time_ns())
        return f"{_last:018X}"


@contextmanager
def s3_event_sequencers() -> Iterator[None]:
    from moto.s3 import notifications

    original = notifications._get_s3_event

    def with_sequencer(event_name: str, bucket: Any, key: Any, notification_id: str) -> Any:
        event = original(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            obj = record["s3"]["object"]
            obj.setdefault("sequencer", next_sequencer())
            if event_name.startswith("s3:ObjectRemoved"):
                obj.pop("size", None)
                obj.pop("eTag", None)
            version = getattr(key, "version_id", None)
            if version and version != "null":
                obj.setdefault("versionId", version)
        return event

    notifications._get_s3_event = with_sequencer
    try:
        yield
    finally:
        notifications._get_s3_event = original


@dataclass(frozen=True)
class _DeleteMarkerView:
    """What ``_get_s3_event`` reads from a key, for a delete marker (which has no body)."""

    name: str
    version_id: str
    etag: str = ""
    size: int = 0


@contextmanager
def delete_marker_events() -> Iterator[None]:
    from moto.s3 import notifications
    from moto.s3.models import S3Backend

    original = S3Backend._set_delete_marker

    def set_delete_marker(self: Any, bucket_name: str, key_name: str) -> Any:
        marker = original(self, bucket_name, key_name)
        notifications.send_event(
            self.account_id,
            notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
            self.get_bucket(bucket_name),
            _DeleteMarkerView(marker.name, marker.version_id),
        )
        return marker

    S3Backend._set_delete_marker = set_delete_marker  # type: ignore[method-assign]
    try:
        yield
    finally:
        S3Backend._set_delete_marker = original  # type: ignore[method-assign]


def eventbridge_s3_event(account_id: str, bucket: Any, event_name: str, key: Any) -> dict[str, Any]:
    """The EventBridge event S3 sends for ``event_name`` (``s3:ObjectCreated:Put`` ...) on
    ``key``, in AWS's shape (``time`` as moto's events backend wants it: Unix seconds, which its
    SQS target writes as ISO 8601)."""
    from moto.s3.notifications import _detail_type

    removed = event_name.startswith("s3:ObjectRemoved")
    obj: dict[str, Any] = {"key": key.name}
    if not removed:
        obj.update(size=key.size, etag=key.etag.replace('"', ""))
    version = getattr(key, "version_id", None)
    if version and version != "null":
        obj["version-id"] = version
    obj["sequencer"] = next_sequencer()
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": bucket.name},
        "object": obj,
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": account_id,
        "source-ip-address": "127.0.0.1",
        "reason": EVENTBRIDGE_REASONS.get(event_name, event_name.rsplit(":", 1)[-1]),
    }
    if removed:
        marker = event_name.endswith("DeleteMarkerCreated")
        detail["deletion-type"] = "Delete Marker Created" if marker else "Permanently Deleted"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": _detail_type(event_name),
        "source": "aws.s3",
        "account": account_id,
        "time": time.time(),
        "region": bucket.region_name,
        "resources": [bucket.arn],
        "detail": detail,
    }


@contextmanager
def eventbridge_s3_events() -> Iterator[None]:
    from moto.s3 import notifications

    original = notifications._send_event_bridge_message

    def send(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        from moto.events.models import events_backends

        try:
            event = eventbridge_s3_event(account_id, bucket, event_name, key)
            backend = events_backends[account_id][bucket.region_name]
            for bus in list(backend.event_buses.values()):
                for rule in list(bus.rules.values()):
                    rule.send_to_targets(event, transform_input=False)
        except Exception:  # asynchronous on AWS: the S3 call succeeds whatever happens here
            logger.exception("could not send the EventBridge event for %s", key.name)

    notifications._send_event_bridge_message = send
    try:
        yield
    finally:
        notifications._send_event_bridge_message = original


@contextmanager
def execution_names() -> Iterator[None]:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution

    def start_execution(self: Any, state_machine_arn: str, name: Any = None, *args: Any) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), *args)

    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign]
    try:
        yield
    finally:
        StepFunctionsParserBackend.start_execution = original  # type: ignore[method-assign]


@contextmanager
def nested_executions() -> Iterator[None]:
    """``arn:aws:states:::states:startExecution.sync:2`` tasks (the model rollout nests the
    backfill and the index pipeline): moto's interpreter passes the ASL's ``StateMachineArn``,
    ``Input``, ``Name`` to boto3 as they are, where botocore knows ``stateMachineArn``, ...,
    and reads boto3's ``executionArn``, ``output``, ... as ``ExecutionArn``, ``Output``, ...
    as the service's task results name them: every such task fails with ``States.Runtime``.
    Both directions are mended here, at the one class that does this integration."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_sfn as sfn,
    )

    task = sfn.StateTaskServiceSfn
    originals = (task._normalise_parameters, task._normalise_response)

    # Called with keywords (``parameters=``, ``response=``), so the names stay moto's.
    def to_boto(self: Any, parameters: dict[str, Any], **kwargs: Any) -> None:
        originals[0](self, parameters, **kwargs)
        for name in [n for n in parameters if n[:1].isupper()]:
            parameters[name[0].lower() + name[1:]] = parameters.pop(name)

    def from_boto(self: Any, response: Any, **kwargs: Any) -> None:
        originals[1](self, response, **kwargs)
        if isinstance(response, dict):
            for name in [n for n in response if n[:1].islower()]:
                response[name[0].upper() + name[1:]] = response.pop(name)

    task._normalise_parameters, task._normalise_response = to_boto, from_boto  # type: ignore[method-assign]
    try:
        yield
    finally:
        task._normalise_parameters, task._normalise_response = originals  # type: ignore[method-assign]


@contextmanager
def moto_fixes() -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(s3_event_sequencers())
        stack.enter_context(delete_marker_events())
        stack.enter_context(eventbridge_s3_events())
        stack.enter_context(execution_names())
        stack.enter_context(nested_executions())
        yield


# ---------------------------------------------------------------- CloudFormation


def for_moto_cloudformation(stack: StackTemplate) -> dict[str, Any]:
    """``stack.cloudformation`` mended where moto's CloudFormation would fail or differ."""
    from moto.cloudformation.parsing import get_model_map

    body = copy.deepcopy(stack.cloudformation)
    resources: dict[str, Any] = body["Resources"]
    # moto has no model for some types (API Gateway v2, CloudWatch alarms, CodeDeploy, the
    # EventBridge schedule, bucket and queue policies, SNS subscriptions, Lambda aliases): it
    # skips them but then fails on a Ref to one. Drop them and what refers to them; the local
    # stack emulates the HTTP API and the schedule itself.
    dropped = {name for name, spec in resources.items() if spec["Type"] not in get_model_map()}
    # moto's CloudFormation puts a state machine in its plain Step Functions backend, but with
    # the ASL interpreter on (execute_state_machine, as the local stack runs) the API serves
    # another (stepfunctions_parser_backends): resources.py creates it through the API instead.
    # (moto would also ignore its DefinitionSubstitutions.)
    dropped |= set(stack.resources("AWS::StepFunctions::StateMachine"))
    while more := {
        name
        for name, spec in resources.items()
        if name not in dropped and _references(spec.get("Properties")) & dropped
    }:
        dropped |= more
    for name in dropped:
        del resources[name]
    for spec in resources.values():
        depends = spec.get("DependsOn")
        if depends:
            names = [depends] if isinstance(depends, str) else depends
            spec["DependsOn"] = [name for name in names if name in resources]
    # moto evaluates Outputs on every DescribeStacks, and they name dropped resources.
    body.pop("Outputs", None)

    for logical_id, spec in resources.items():
        properties = spec.setdefault("Properties", {})
        # moto leaves `Ref AWS::NoValue` as None in a list (an `Fn::If` in a role's Policies),
        # and its IAM model fails on the None: such an `Fn::If` is decided here.
        spec["Properties"] = properties = _drop_no_value_items(properties, stack)
        # moto names an unnamed resource <stack>-<LogicalId>-<random suffix>, as CloudFormation
        # does; the local stack's names stay the same from one start to the next.
        prop = name_property(spec["Type"])
        if prop and prop not in properties:
            properties[prop] = default_name(stack.stack_name, logical_id, spec["Type"])
        # moto delivers a mapped queue's messages itself, at send time (sqs Queue.add_message ->
        # send_sqs_batch), to a function it would run in Docker; the local stack polls the queue
        # as Lambda does (sqs_worker.py), so moto's mapping is created disabled.
        if spec["Type"] == "AWS::Lambda::EventSourceMapping":
            properties["Enabled"] = False

    return body


def apply_ignored_bucket_properties(s3: Any, stack: StackTemplate) -> None:
    """moto's CloudFormation applies a bucket's BucketEncryption and Tags only: its versioning
    and its S3 -> SQS notifications are set here, as CloudFormation would have."""
    for logical_id in stack.resources("AWS::S3::Bucket"):
        properties = stack.properties(logical_id)
        bucket = stack.resolve.ref(logical_id)
        versioning = properties.get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(
                Bucket=bucket,
                VersioningConfiguration={"Status": stack.resolve(versioning["Status"])},
            )
        queues = queue_notifications(stack, logical_id)
        if queues:
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues}
            )


def notification_configuration(stack: StackTemplate, bucket: str) -> dict[str, Any]:
    """A bucket's ``NotificationConfiguration`` as CloudFormation would apply it: an ``Fn::If``
    around it (none with ``ExistingBucketName``) decided, the inside left unresolved."""
    value = stack.properties(bucket).get("NotificationConfiguration")
    while isinstance(value, dict) and set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        value = when_true if stack.resolve.condition(condition) else when_false
    return value if isinstance(value, dict) and value != NO_VALUE else {}


def queue_notifications(stack: StackTemplate, bucket: str) -> list[dict[str, Any]]:
    """A bucket's CloudFormation ``QueueConfigurations`` in the S3 API's shape."""
    notification = notification_configuration(stack, bucket)
    converted = []
    for index, config in enumerate(notification.get("QueueConfigurations") or []):
        entry: dict[str, Any] = {
            "Id": f"{target_of(config['Queue'])}-{index}",
            "QueueArn": stack.resolve(config["Queue"]),
            "Events": [stack.resolve(config["Event"])],
        }
        rules = ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
        if rules:
            entry["Filter"] = {
                "Key": {
                    "FilterRules": [
                        {"Name": rule["Name"], "Value": stack.resolve(rule["Value"])}
                        for rule in rules
                    ]
                }
            }
        converted.append(entry)
    return converted


def _references(node: Any) -> set[str]:
    """Logical ids a node names with Ref, Fn::GetAtt or an Fn::Sub ``${X}`` / ``${X.Attr}``."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(target_of({key: value}))
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
            found |= _references(value)
    return found


def _drop_no_value_items(node: Any, stack: StackTemplate) -> Any:
    if isinstance(node, dict):
        return {key: _drop_no_value_items(value, stack) for key, value in node.items()}
    if not isinstance(node, list):
        return node
    kept = []
    for item in node:
        if isinstance(item, dict) and set(item) == {"Fn::If"} and NO_VALUE in item["Fn::If"][1:]:
            condition, when_true, when_false = item["Fn::If"]
            item = when_true if stack.resolve.condition(condition) else when_false
            if item == NO_VALUE:
                continue
        kept.append(_drop_no_value_items(item, stack))
    return kept
