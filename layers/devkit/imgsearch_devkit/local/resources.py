"""Create the template's resources on the moto server with moto's CloudFormation.

The template is transformed by SAM (``template.py``), mended where moto differs from
CloudFormation (``moto_fixes.for_moto_cloudformation``) and created as a stack; the physical ids
come back from ``describe_stack_resources`` and resolve each function's environment. What moto's
CloudFormation leaves out of a bucket (versioning, the S3 -> SQS notification) is applied by API,
and so are the state machines, which it would create where its ASL interpreter does not look::

    resources = create_resources(clients, template, stack_name="imgsearch-local", region=...)
    resources.bucket, resources.queue_url, resources.embed.batch_size
    resources.image_bucket      # the images: ``bucket``, or ExistingBucketName's (EventBridge)
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgsearch_devkit.local.lambda_dispatch import render_definition
from imgsearch_devkit.local.moto_fixes import (
    apply_ignored_bucket_properties,
    for_moto_cloudformation,
    notification_configuration,
    queue_notifications,
)
from imgsearch_devkit.local.template import (
    EventSourceMappingSpec,
    FunctionSpec,
    StackTemplate,
    Template,
    TemplateError,
    default_name,
    target_of,
)

INDEX_PIPELINE = "IndexPipeline"
BACKFILL = "BackfillStateMachine"
ROLLOUT = "ModelRolloutStateMachine"
RETRAIN = "RetrainStateMachine"
"""The template's state machines, by logical id."""
MONITOR = "MonitorFunction"


@dataclass
class LocalResources:
    stack_name: str
    region: str
    bucket: str
    image_prefix: str
    table: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    alerts_topic_arn: str
    functions: dict[str, FunctionSpec]
    embed: EventSourceMappingSpec
    api_function: str
    """Logical id of the function behind the HTTP API."""
    state_machine_arn: str = ""
    """The index pipeline ("" if the template has none)."""
    backfill_arn: str = ""
    """The backfill state machine ("" if the template has none)."""
    rollout_arn: str = ""
    """The model rollout state machine ("" if the template has none)."""
    retrain_arn: str = ""
    """The retraining state machine ("" if the template has none)."""
    monitor_function: str = ""
    """The monitor function's name ("" if the template has none)."""
    image_bucket: str = ""
    """Where the images are: ``bucket`` (its S3 -> SQS notification), or the existing bucket
    the template's EventBridge rule forwards events from (``ExistingBucketName``)."""
    template: StackTemplate | None = field(default=None, repr=False)
    """The template as this stack resolves it (physical ids of the moto stack)."""


def create_resources(
    clients: dict[str, Any],
    template: Template,
    stack_name: str,
    region: str,
    parameters: dict[str, str] | None = None,
) -> LocalResources:
    """Create the stack on moto; describe what the local stack runs and reports.

    ``clients`` holds boto3 clients of the moto server for ``cloudformation``, ``s3``, ``sqs``,
    ``stepfunctions``, ``secretsmanager``, ``firehose`` and ``logs``.
    """
    cloudformation = clients["cloudformation"]
    stack = StackTemplate(template, stack_name, region, parameters)
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(for_moto_cloudformation(stack)),
        Parameters=[
            {"ParameterKey": key, "ParameterValue": str(value)}
            for key, value in stack.overrides.items()
        ],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    (described,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    if described["StackStatus"] != "CREATE_COMPLETE":
        raise TemplateError(
            f"moto could not create {stack_name}: {described['StackStatus']} "
            f"{described.get('StackStatusReason', '')}"
        )
    created = cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
    # A Lambda version has no physical id in moto.
    stack.locate(
        {
            resource["LogicalResourceId"]: resource["PhysicalResourceId"]
            for resource in created
            if resource.get("PhysicalResourceId")
        }
    )
    apply_ignored_bucket_properties(clients["s3"], stack)
    _create_secrets(clients["secretsmanager"], stack)
    _create_usage_log(clients["firehose"], clients["logs"], stack)
    _create_state_machines(clients["stepfunctions"], stack)
    return _describe(stack, clients["sqs"])


def _create_secrets(secretsmanager: Any, stack: StackTemplate) -> None:
    """Each generated secret (the query-signing key), through the API: moto's CloudFormation
    has no model for it. A new value per start, as a new stack would have."""
    kind = "AWS::SecretsManager::Secret"
    for logical_id in stack.resources(kind):
        name = default_name(stack.stack_name, logical_id, kind)
        value = secrets.token_urlsafe(48)
        try:
            arn = secretsmanager.create_secret(Name=name, SecretString=value)["ARN"]
        except secretsmanager.exceptions.ResourceExistsException:
            arn = secretsmanager.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        stack.locate({logical_id: arn})


def _create_usage_log(firehose: Any, logs: Any, stack: StackTemplate) -> None:
    """The usage log's Firehose stream and the subscription filters that feed it, through the
    API (moto's CloudFormation has no model for either). moto's Firehose writes what it gets
    at once, without the template's processors: gzipped CloudWatch Logs envelopes."""
    kind = "AWS::KinesisFirehose::DeliveryStream"
    for logical_id in stack.resources(kind):
        properties = stack.resolve(stack.properties(logical_id))
        destination = properties["ExtendedS3DestinationConfiguration"]
        name = default_name(stack.stack_name, logical_id, kind)
        firehose.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "BucketARN": destination["BucketARN"],
                "RoleARN": destination["RoleARN"],
                "Prefix": destination.get("Prefix", ""),
            },
        )
        arn = firehose.describe_delivery_stream(DeliveryStreamName=name)[
            "DeliveryStreamDescription"
        ]["DeliveryStreamARN"]
        stack.locate({logical_id: name})
        stack.resolve.attributes[(logical_id, "Arn")] = arn
    for logical_id in stack.resources("AWS::Logs::SubscriptionFilter"):
        properties = stack.resolve(stack.properties(logical_id))
        logs.put_subscription_filter(
            logGroupName=properties["LogGroupName"],
            filterName=logical_id,
            filterPattern=properties["FilterPattern"],
            destinationArn=properties["DestinationArn"],
            roleArn=properties["RoleArn"],
        )


def usage_log_groups(stack: StackTemplate) -> dict[str, str]:
    """Record kind -> the log group whose subscription filter takes it: the query function's
    (searches, feedback) and the embed function's (uploads)."""
    subscribed = {
        stack.resolve(stack.properties(f)["LogGroupName"])
        for f in stack.resources("AWS::Logs::SubscriptionFilter")
    }
    groups: dict[str, str] = {}
    for spec in stack.functions().values():
        logging_config = stack.properties(spec.logical_id).get("LoggingConfig") or {}
        group = stack.resolve(logging_config.get("LogGroup", ""))
        if group not in subscribed:
            continue
        kinds = ("search", "feedback") if spec.logical_id == stack.api_function() else ("ingest",)
        groups |= dict.fromkeys(kinds, group)
    return groups


def _create_state_machines(sfn: Any, stack: StackTemplate) -> None:
    """The state machines, through the API (``moto_fixes.for_moto_cloudformation`` says why),
    their ``DefinitionSubstitutions`` filled with the created stack's physical ids."""
    kind = "AWS::StepFunctions::StateMachine"
    for machine in stack.state_machines().values():
        properties = stack.properties(machine.logical_id)
        definition = render_definition(machine.definition, stack.resolve(machine.substitutions))
        arn = sfn.create_state_machine(
            name=stack.resolve(properties.get("StateMachineName"))
            or default_name(stack.stack_name, machine.logical_id, kind),
            definition=definition,
            roleArn=stack.resolve(properties["RoleArn"]),
        )["stateMachineArn"]
        stack.locate({machine.logical_id: arn})


@dataclass(frozen=True)
class _ImageEvents:
    """How image events reach the ingest queue: which bucket, which prefix, which queue."""

    bucket: str
    """The bucket's physical name."""
    prefix: str
    queue: str
    """The queue's logical id."""


def _active(stack: StackTemplate, logical_id: str) -> bool:
    """The resource's ``Condition`` holds (CloudFormation creates it) or it has none."""
    condition = stack.cloudformation["Resources"][logical_id].get("Condition")
    return not condition or stack.resolve.condition(condition)


def _notification_route(stack: StackTemplate) -> _ImageEvents | None:
    """The stack's own bucket with an S3 -> SQS notification under one prefix."""
    images = [b for b in stack.resources("AWS::S3::Bucket") if queue_notifications(stack, b)]
    if not images:
        return None
    if len(images) != 1:
        raise TemplateError("expected one bucket with an S3 -> SQS notification")
    (bucket,) = images
    notifications = queue_notifications(stack, bucket)
    prefixes = {
        rule["Value"]
        for config in notifications
        for rule in config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        if rule["Name"].lower() == "prefix"
    }
    if len(prefixes) != 1:
        raise TemplateError(f"expected one image prefix filter, found {sorted(prefixes)}")
    configs = notification_configuration(stack, bucket)["QueueConfigurations"]
    return _ImageEvents(stack.resolve.ref(bucket), prefixes.pop(), target_of(configs[0]["Queue"]))


def _eventbridge_route(stack: StackTemplate) -> _ImageEvents | None:
    """An EventBridge rule that forwards one bucket's S3 events under one prefix to a queue
    (the template's ``ImageEventsRule``, with ``ExistingBucketName``)."""
    routes = []
    for logical_id in stack.resources("AWS::Events::Rule"):
        if not _active(stack, logical_id):
            continue
        properties = stack.properties(logical_id)
        pattern = stack.resolve(properties.get("EventPattern") or {})
        if pattern.get("source") != ["aws.s3"]:
            continue
        detail = pattern.get("detail") or {}
        buckets = (detail.get("bucket") or {}).get("name") or []
        keys = (detail.get("object") or {}).get("key") or []
        prefixes = [k["prefix"] for k in keys if isinstance(k, dict) and "prefix" in k]
        queues = [
            target_of(t["Arn"])
            for t in properties.get("Targets") or []
            if stack.cloudformation["Resources"][target_of(t["Arn"])]["Type"] == "AWS::SQS::Queue"
        ]
        if len(buckets) != 1 or len(prefixes) != 1 or len(queues) != 1:
            raise TemplateError(
                f"{logical_id}: expected one bucket name, one key prefix and one queue target"
            )
        routes.append(_ImageEvents(buckets[0], prefixes[0], queues[0]))
    if len(routes) > 1:
        raise TemplateError("expected at most one EventBridge rule for S3 events")
    return routes[0] if routes else None


def _describe(stack: StackTemplate, sqs: Any) -> LocalResources:
    resolve = stack.resolve
    route = _notification_route(stack) or _eventbridge_route(stack)
    if route is None:
        raise TemplateError(
            "expected one bucket with an S3 -> SQS notification, or an EventBridge rule that "
            "sends a bucket's S3 events to a queue (ExistingBucketName)"
        )
    queue = route.queue
    embed = stack.event_source_mapping(queue)
    # The stack's own bucket (indexes, snapshots ...) is the one its functions are told about.
    bucket = stack.function(embed.function).environment.get("IMGSEARCH_BUCKET", route.bucket)
    redrive = stack.properties(queue).get("RedrivePolicy")
    if not redrive:
        raise TemplateError(f"the ingest queue {queue} has no RedrivePolicy (DLQ)")
    dlq = target_of(redrive["deadLetterTargetArn"])
    machines = stack.state_machines()
    return LocalResources(
        stack_name=stack.stack_name,
        region=stack.region,
        bucket=bucket,
        image_prefix=route.prefix,
        table=resolve.ref(_only(stack, "AWS::DynamoDB::Table", "embeddings")),
        queue_url=_endpoint_url(sqs, resolve.get_att(queue, "QueueName")),
        queue_arn=resolve.get_att(queue, "Arn"),
        dlq_url=_endpoint_url(sqs, resolve.get_att(dlq, "QueueName")),
        dlq_arn=resolve.get_att(dlq, "Arn"),
        alerts_topic_arn=resolve.ref(_only(stack, "AWS::SNS::Topic", "alerts")),
        functions=stack.functions(),
        embed=embed,
        api_function=stack.api_function(),
        state_machine_arn=resolve.ref(INDEX_PIPELINE) if INDEX_PIPELINE in machines else "",
        backfill_arn=resolve.ref(BACKFILL) if BACKFILL in machines else "",
        rollout_arn=resolve.ref(ROLLOUT) if ROLLOUT in machines else "",
        retrain_arn=resolve.ref(RETRAIN) if RETRAIN in machines else "",
        monitor_function=resolve.ref(MONITOR) if MONITOR in stack.functions() else "",
        template=stack,
        image_bucket=route.bucket,
    )


def _endpoint_url(sqs: Any, name: str) -> str:
    """The queue's URL on the moto endpoint (what ``CreateQueue`` answers there); its physical
    id is the ``https://sqs.<region>.amazonaws.com/...`` form AWS gives."""
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


def _only(stack: StackTemplate, kind: str, what: str) -> str:
    found = stack.resources(kind)
    if not found:
        raise TemplateError(f"the template declares no {kind} ({what})")
    return next(iter(found))


def task_root_path(value: str, repo: Path) -> str:
    """Map a path inside the image (``/var/task/...``) to the source checkout."""
    if not value.startswith("/var/task/"):
        return value
    relative = value.removeprefix("/var/task/")
    for base in (repo / "functions", repo):
        if (base / relative).exists():
            return str(base / relative)
    return str(repo / relative)
