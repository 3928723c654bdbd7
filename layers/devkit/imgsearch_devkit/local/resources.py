"""Create the template's resources on the moto server with moto's CloudFormation.

The template is transformed by SAM (``template.py``), mended where moto differs from
CloudFormation (``moto_fixes.for_moto_cloudformation``) and created as a stack; the physical ids
come back from ``describe_stack_resources`` and resolve each function's environment. What moto's
CloudFormation leaves out of a bucket (versioning, the S3 -> SQS notification) is applied by API,
and so is the state machine, which it would create where its ASL interpreter does not look::

    resources = create_resources(clients, template, stack_name="imgsearch-local", region=...)
    resources.bucket, resources.queue_url, resources.embed.batch_size
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgsearch_devkit.local.lambda_dispatch import render_definition
from imgsearch_devkit.local.moto_fixes import (
    apply_ignored_bucket_properties,
    for_moto_cloudformation,
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
    """The index pipeline moto's CloudFormation created ("" if the template has none)."""
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

    ``clients`` holds boto3 clients of the moto server for ``cloudformation``, ``s3``, ``sqs``
    and ``stepfunctions``.
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
    _create_state_machine(clients["stepfunctions"], stack)
    return _describe(stack, clients["sqs"])


def _create_state_machine(sfn: Any, stack: StackTemplate) -> None:
    """The state machine, through the API (``moto_fixes.for_moto_cloudformation`` says why),
    its ``DefinitionSubstitutions`` filled with the created stack's physical ids."""
    machine = stack.state_machine()
    if machine is None:
        return
    kind = "AWS::StepFunctions::StateMachine"
    properties = stack.properties(machine.logical_id)
    arn = sfn.create_state_machine(
        name=stack.resolve(properties.get("StateMachineName"))
        or default_name(stack.stack_name, machine.logical_id, kind),
        definition=render_definition(machine.definition, stack.resolve(machine.substitutions)),
        roleArn=stack.resolve(properties["RoleArn"]),
    )["stateMachineArn"]
    stack.locate({machine.logical_id: arn})


def _describe(stack: StackTemplate, sqs: Any) -> LocalResources:
    resolve = stack.resolve
    images = [b for b in stack.resources("AWS::S3::Bucket") if queue_notifications(stack, b)]
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
    queue = target_of(
        stack.properties(bucket)["NotificationConfiguration"]["QueueConfigurations"][0]["Queue"]
    )
    redrive = stack.properties(queue).get("RedrivePolicy")
    if not redrive:
        raise TemplateError(f"the ingest queue {queue} has no RedrivePolicy (DLQ)")
    dlq = target_of(redrive["deadLetterTargetArn"])
    machine = stack.state_machine()
    return LocalResources(
        stack_name=stack.stack_name,
        region=stack.region,
        bucket=resolve.ref(bucket),
        image_prefix=prefixes.pop(),
        table=resolve.ref(_only(stack, "AWS::DynamoDB::Table", "embeddings")),
        queue_url=_endpoint_url(sqs, resolve.get_att(queue, "QueueName")),
        queue_arn=resolve.get_att(queue, "Arn"),
        dlq_url=_endpoint_url(sqs, resolve.get_att(dlq, "QueueName")),
        dlq_arn=resolve.get_att(dlq, "Arn"),
        alerts_topic_arn=resolve.ref(_only(stack, "AWS::SNS::Topic", "alerts")),
        functions=stack.functions(),
        embed=stack.event_source_mapping(queue),
        api_function=stack.api_function(),
        state_machine_arn=resolve.ref(machine.logical_id) if machine else "",
        template=stack,
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
