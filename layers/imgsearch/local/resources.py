"""Create the template's storage and messaging resources on the moto server.

Everything is read from ``template.yaml`` (``template.py``): names (``BucketName``,
``QueueName``... with ``Fn::Sub`` evaluated for the local stack name; unnamed resources get
``<stack>-<LogicalId>`` as CloudFormation would, minus its random suffix), queue attributes and
redrive policies, the bucket's S3 -> SQS notification (events, prefix filter), the embed
function's SQS event source mapping and every function's environment. The embeddings table is
created from ``store.table_definition``, the schema the template declares too::

    resources = create_resources(clients, template, stack_name="imgsearch-local", region=...)
    resources.bucket, resources.queue_url, resources.embed.batch_size
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgsearch.local.template import (
    Resolver,
    TemplateError,
    function_properties,
    resources_of_type,
)
from imgsearch.store import table_definition


@dataclass(frozen=True)
class FunctionSpec:
    """One ``AWS::Serverless::Function`` as the local stack runs it."""

    logical_id: str
    name: str
    handler: str
    """``<module>.app.handler`` (``ImageConfig.Command`` or ``Handler``)."""
    timeout: int
    memory: int
    environment: dict[str, str]

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]


@dataclass(frozen=True)
class EventSourceMappingSpec:
    function: str
    """Logical id of the function the queue feeds."""
    queue_logical_id: str
    batch_size: int = 10
    batch_window: float = 0.0
    report_batch_item_failures: bool = False


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
    state_machine: dict[str, Any] = field(default_factory=dict)
    """The ``AWS::Serverless::StateMachine`` resource (logical id, resolved properties)."""
    resolver: Resolver | None = field(default=None, repr=False)


def default_name(stack_name: str, logical_id: str, limit: int = 80) -> str:
    return f"{stack_name}-{logical_id}"[:limit]


def _only(template: dict[str, Any], kind: str, what: str) -> str:
    found = resources_of_type(template, kind)
    if not found:
        raise TemplateError(f"the template declares no {kind} ({what})")
    return next(iter(found))


def _arn_target(value: Any) -> str:
    """The logical id an ``Fn::GetAtt X.Arn`` (or ``Ref X``) points at."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"][0]
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    raise TemplateError(f"expected a GetAtt/Ref to a resource, got {value!r}")


def _create_queues(sqs: Any, template: dict[str, Any], resolve: Resolver, stack: str) -> None:
    pending = dict(resources_of_type(template, "AWS::SQS::Queue"))
    while pending:
        progressed = False
        for logical_id, spec in list(pending.items()):
            properties = dict(spec.get("Properties") or {})
            redrive = properties.get("RedrivePolicy")
            if redrive and _arn_target(redrive["deadLetterTargetArn"]) in pending:
                continue  # its DLQ first
            name = resolve(properties.pop("QueueName", None)) or default_name(stack, logical_id)
            attributes = {
                key: str(resolve(properties[key]))
                for key in (
                    "VisibilityTimeout",
                    "MessageRetentionPeriod",
                    "ReceiveMessageWaitTimeSeconds",
                    "DelaySeconds",
                    "MaximumMessageSize",
                )
                if key in properties
            }
            if redrive:
                attributes["RedrivePolicy"] = json.dumps(
                    {
                        "deadLetterTargetArn": resolve(redrive["deadLetterTargetArn"]),
                        "maxReceiveCount": int(resolve(redrive["maxReceiveCount"])),
                    }
                )
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            resolve.physical[logical_id] = url
            resolve.attributes[(logical_id, "Arn")] = arn
            resolve.attributes[(logical_id, "QueueName")] = name
            resolve.attributes[(logical_id, "QueueUrl")] = url
            del pending[logical_id]
            progressed = True
        if not progressed:
            raise TemplateError(f"queues with circular redrive policies: {', '.join(pending)}")


def _queue_notifications(properties: dict[str, Any], resolve: Resolver) -> list[dict[str, Any]]:
    """CloudFormation's ``QueueConfigurations`` in the S3 API's shape."""
    configs = (properties.get("NotificationConfiguration") or {}).get("QueueConfigurations") or []
    converted = []
    for index, config in enumerate(configs):
        entry: dict[str, Any] = {
            "Id": f"ingest-{index}",
            "QueueArn": resolve(config["Queue"]),
            "Events": [resolve(config["Event"])],
        }
        rules = ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
        if rules:
            entry["Filter"] = {
                "Key": {
                    "FilterRules": [
                        {"Name": rule["Name"], "Value": resolve(rule["Value"])} for rule in rules
                    ]
                }
            }
        converted.append(entry)
    return converted


def _functions(template: dict[str, Any], resolve: Resolver, stack: str) -> dict[str, FunctionSpec]:
    declared = resources_of_type(template, "AWS::Serverless::Function")
    account = resolve.pseudo["AWS::AccountId"]
    for logical_id in declared:
        properties = function_properties(template, logical_id)
        name = resolve(properties.get("FunctionName")) or default_name(stack, logical_id, 64)
        resolve.physical[logical_id] = name
        resolve.attributes[(logical_id, "Arn")] = (
            f"arn:aws:lambda:{resolve.pseudo['AWS::Region']}:{account}:function:{name}"
        )
    specs = {}
    for logical_id in declared:
        properties = function_properties(template, logical_id)
        command = (properties.get("ImageConfig") or {}).get("Command") or []
        handler = command[0] if command else properties.get("Handler", "")
        if not handler:
            raise TemplateError(f"function {logical_id} names no handler")
        environment = {
            key: "" if value is None else str(value)
            for key, value in resolve(properties["Environment"]["Variables"]).items()
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=resolve.physical[logical_id],
            handler=handler,
            timeout=int(resolve(properties.get("Timeout", 3))),
            memory=int(resolve(properties.get("MemorySize", 128))),
            environment=environment,
        )
    return specs


def _event_source_mapping(
    template: dict[str, Any], resolve: Resolver, queue_logical_id: str
) -> EventSourceMappingSpec:
    """The mapping from the ingest queue: an ``AWS::Lambda::EventSourceMapping`` resource or a
    SAM ``SQS`` event on a function."""
    candidates: list[tuple[str, dict[str, Any]]] = []
    for spec in resources_of_type(template, "AWS::Lambda::EventSourceMapping").values():
        properties = spec.get("Properties") or {}
        if _arn_target(properties.get("EventSourceArn")) == queue_logical_id:
            candidates.append((_arn_target(properties["FunctionName"]), properties))
    for logical_id, spec in resources_of_type(template, "AWS::Serverless::Function").items():
        events = (spec.get("Properties") or {}).get("Events") or {}
        for event in events.values():
            properties = event.get("Properties") or {}
            if (
                event.get("Type") == "SQS"
                and _arn_target(properties.get("Queue")) == queue_logical_id
            ):
                candidates.append((logical_id, properties))
    if len(candidates) != 1:
        raise TemplateError(
            f"expected one event source mapping on {queue_logical_id}, found {len(candidates)}"
        )
    function, properties = candidates[0]
    return EventSourceMappingSpec(
        function=function,
        queue_logical_id=queue_logical_id,
        batch_size=int(resolve(properties.get("BatchSize", 10))),
        batch_window=float(resolve(properties.get("MaximumBatchingWindowInSeconds", 0))),
        report_batch_item_failures="ReportBatchItemFailures"
        in (resolve(properties.get("FunctionResponseTypes")) or []),
    )


def _api_function(template: dict[str, Any]) -> str:
    """The function behind the HTTP API's Lambda proxy integration (payload format 2.0)."""
    for spec in resources_of_type(template, "AWS::ApiGatewayV2::Integration").values():
        properties = spec.get("Properties") or {}
        if properties.get("IntegrationType") != "AWS_PROXY":
            continue
        if str(properties.get("PayloadFormatVersion")) != "2.0":
            raise TemplateError("the local API emulates payload format 2.0 only")
        # ``Ref QueryFunction.Alias`` (SAM's alias reference) or ``GetAtt QueryFunction.Arn``.
        return _arn_target(properties["IntegrationUri"]).split(".")[0]
    for logical_id, spec in resources_of_type(template, "AWS::Serverless::Function").items():
        events = (spec.get("Properties") or {}).get("Events") or {}
        if any(e.get("Type") == "HttpApi" for e in events.values()):
            return logical_id
    raise TemplateError("no function serves the HTTP API")


def create_resources(
    clients: dict[str, Any],
    template: dict[str, Any],
    stack_name: str,
    region: str,
    parameters: dict[str, str] | None = None,
) -> LocalResources:
    """Create bucket, queues, table, topics and the notification; describe the functions.

    ``clients`` holds boto3 clients for ``s3``, ``sqs``, ``dynamodb`` and ``sns``.
    """
    resolve = Resolver(template, stack_name, region, parameters)
    s3, sqs, dynamodb, sns = (clients[n] for n in ("s3", "sqs", "dynamodb", "sns"))

    for logical_id, spec in resources_of_type(template, "AWS::SNS::Topic").items():
        name = resolve((spec.get("Properties") or {}).get("TopicName")) or default_name(
            stack_name, logical_id, 256
        )
        arn = sns.create_topic(Name=name)["TopicArn"]
        resolve.physical[logical_id] = arn
        resolve.attributes[(logical_id, "TopicName")] = name
        resolve.attributes[(logical_id, "TopicArn")] = arn

    _create_queues(sqs, template, resolve, stack_name)

    for logical_id, spec in resources_of_type(template, "AWS::DynamoDB::Table").items():
        name = resolve((spec.get("Properties") or {}).get("TableName")) or default_name(
            stack_name, logical_id, 255
        )
        dynamodb.create_table(**table_definition(name))
        resolve.physical[logical_id] = name
        resolve.attributes[(logical_id, "Arn")] = (
            f"arn:aws:dynamodb:{region}:{resolve.pseudo['AWS::AccountId']}:table/{name}"
        )

    buckets = resources_of_type(template, "AWS::S3::Bucket")
    images_bucket = next(
        (
            logical_id
            for logical_id, spec in buckets.items()
            if ((spec.get("Properties") or {}).get("NotificationConfiguration") or {}).get(
                "QueueConfigurations"
            )
        ),
        None,
    )
    if images_bucket is None:
        raise TemplateError("no bucket with an S3 -> SQS notification (QueueConfigurations)")
    for logical_id, spec in buckets.items():
        name = (
            resolve((spec.get("Properties") or {}).get("BucketName"))
            or default_name(stack_name, logical_id, 63).lower()
        )
        s3.create_bucket(Bucket=name)
        versioning = (spec.get("Properties") or {}).get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": resolve(versioning["Status"])}
            )
        resolve.physical[logical_id] = name
        resolve.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"

    notifications = _queue_notifications(
        template["Resources"][images_bucket]["Properties"], resolve
    )
    s3.put_bucket_notification_configuration(
        Bucket=resolve.physical[images_bucket],
        NotificationConfiguration={"QueueConfigurations": notifications},
    )
    queue_logical_id = _arn_target(
        template["Resources"][images_bucket]["Properties"]["NotificationConfiguration"][
            "QueueConfigurations"
        ][0]["Queue"]
    )
    prefixes = {
        rule["Value"]
        for config in notifications
        for rule in config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        if rule["Name"].lower() == "prefix"
    }
    if len(prefixes) != 1:
        raise TemplateError(f"expected one image prefix filter, found {sorted(prefixes)}")

    redrive = (template["Resources"][queue_logical_id].get("Properties") or {}).get("RedrivePolicy")
    if not redrive:
        raise TemplateError(f"the ingest queue {queue_logical_id} has no RedrivePolicy (DLQ)")
    dlq_logical_id = _arn_target(redrive["deadLetterTargetArn"])

    functions = _functions(template, resolve, stack_name)
    embed = _event_source_mapping(template, resolve, queue_logical_id)
    api_function = _api_function(template)

    state_machines = resources_of_type(template, "AWS::Serverless::StateMachine")
    state_machine: dict[str, Any] = {}
    if state_machines:
        logical_id, spec = next(iter(state_machines.items()))
        state_machine = {"logical_id": logical_id, **(spec.get("Properties") or {})}

    topic = _only(template, "AWS::SNS::Topic", "alerts")
    return LocalResources(
        stack_name=stack_name,
        region=region,
        bucket=resolve.physical[images_bucket],
        image_prefix=prefixes.pop(),
        table=resolve.physical[_only(template, "AWS::DynamoDB::Table", "embeddings")],
        queue_url=resolve.physical[queue_logical_id],
        queue_arn=resolve.attributes[(queue_logical_id, "Arn")],
        dlq_url=resolve.physical[dlq_logical_id],
        dlq_arn=resolve.attributes[(dlq_logical_id, "Arn")],
        alerts_topic_arn=resolve.physical[topic],
        functions=functions,
        embed=embed,
        api_function=api_function,
        state_machine=state_machine,
        resolver=resolve,
    )


def task_root_path(value: str, repo: Path) -> str:
    """Map a path inside the image (``/var/task/...``) to the source checkout."""
    if not value.startswith("/var/task/"):
        return value
    relative = value.removeprefix("/var/task/")
    for base in (repo / "functions", repo):
        if (base / relative).exists():
            return str(base / relative)
    return str(repo / relative)
