"""The one reader of ``template.yaml``: the local stack and the template tests go through it.

``load_template`` reads the YAML with CloudFormation's short tags (``!Ref X`` becomes
``{"Ref": "X"}``). ``StackTemplate`` is that template as one stack of it sees it: the parameters
(defaults, then the stack's overrides), the CloudFormation that ``samtranslator`` makes of it
(offline, as ``sam build`` and ``sam package`` would leave it), and a ``Resolver`` of its
intrinsic functions over that stack's physical ids - the ones given (what moto's CloudFormation
created) or stand-ins named as CloudFormation names resources, minus its random suffix::

    template = load_template(Path("template.yaml"))
    stack = StackTemplate(template, "imgsearch-local", "us-east-1", {"Stage": "local"})
    stack.functions()["QueryFunction"].environment["IMGSEARCH_TABLE"]  # imgsearch-local-Embe...
    stack.event_source_mapping("IngestQueue").batch_size                 # 10
    stack.state_machines()["IndexPipeline"].substitutions["AlertsTopicArn"]  # {"Ref": ...}
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from imgsearch.core.errors import ImgsearchError

ACCOUNT_ID = "123456789012"
"""moto's default account."""
PARTITION = "aws"
LOCAL_IMAGE_URI = f"{ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/imgsearch:local"
"""Stands in for the image ``sam build`` would push: SAM requires an ``ImageUri``."""

# samtranslator warns about its feature toggles and unpublished CloudWatch metrics, neither of
# which an offline transform has.
logging.getLogger("samtranslator").setLevel(logging.ERROR)


class TemplateError(ImgsearchError, ValueError):
    """The template lacks something the local stack mirrors, or uses an unsupported form."""


class Template(dict[str, Any]):
    """``template.yaml`` as written (short tags expanded), and the file it came from: SAM reads
    ``DefinitionUri`` relative to it."""

    def __init__(self, body: dict[str, Any], path: Path) -> None:
        super().__init__(body)
        self.path = path


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref": value} if suffix == "Ref" else {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _tag)


def load_template(path: Path) -> Template:
    if not path.is_file():
        raise TemplateError(f"no SAM template at {path}")
    return Template(yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader), path)


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in (template.get("Resources") or {}).items()
        if spec.get("Type") == kind
    }


def handler_command(properties: dict[str, Any]) -> str:
    """``embed.app.handler``: a function's one ``ImageConfig.Command`` (or its ``Handler``)."""
    command = (properties.get("ImageConfig") or {}).get("Command") or []
    if len(command) > 1:
        raise TemplateError(f"one handler per function, got {command}")
    handler = command[0] if command else properties.get("Handler", "")
    if not handler:
        raise TemplateError(f"the function names no handler: {properties.get('Description')}")
    return str(handler)


# ---------------------------------------------------------------- physical ids

_NAMES: dict[str, tuple[str, int]] = {
    "AWS::S3::Bucket": ("BucketName", 63),
    "AWS::SQS::Queue": ("QueueName", 80),
    "AWS::DynamoDB::Table": ("TableName", 255),
    "AWS::SNS::Topic": ("TopicName", 256),
    "AWS::Lambda::Function": ("FunctionName", 64),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", 80),
}
"""The property that names a resource of each type the local stack reports, and its limit."""


def name_property(kind: str) -> str | None:
    return _NAMES[kind][0] if kind in _NAMES else None


def default_name(stack_name: str, logical_id: str, kind: str) -> str:
    """``<stack>-<LogicalId>``: CloudFormation's name for an unnamed resource, minus its random
    suffix (S3 wants it in lower case)."""
    limit = _NAMES[kind][1] if kind in _NAMES else 255
    name = f"{stack_name}-{logical_id}"[:limit]
    return name.lower() if kind == "AWS::S3::Bucket" else name


def ref_of(kind: str, name: str, region: str) -> str:
    """What ``Ref`` returns for a resource of ``kind`` called ``name``."""
    if kind == "AWS::SQS::Queue":
        return f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{name}"
    if kind == "AWS::SNS::Topic":
        return f"arn:{PARTITION}:sns:{region}:{ACCOUNT_ID}:{name}"
    if kind == "AWS::StepFunctions::StateMachine":
        return f"arn:{PARTITION}:states:{region}:{ACCOUNT_ID}:stateMachine:{name}"
    return name


def attributes_of(kind: str, ref: str, region: str) -> dict[str, str]:
    """What ``Fn::GetAtt`` returns for the attributes the template reads, from the ``Ref``."""
    name = ref.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    arn = f"arn:{PARTITION}:{{}}:{region}:{ACCOUNT_ID}:{{}}"
    if kind == "AWS::SQS::Queue":
        return {"Arn": arn.format("sqs", name), "QueueName": name, "QueueUrl": ref}
    if kind == "AWS::SNS::Topic":
        return {"TopicArn": ref, "TopicName": name}
    if kind == "AWS::S3::Bucket":
        return {"Arn": f"arn:{PARTITION}:s3:::{ref}"}
    if kind == "AWS::DynamoDB::Table":
        return {"Arn": arn.format("dynamodb", f"table/{ref}")}
    if kind == "AWS::Lambda::Function":
        return {"Arn": arn.format("lambda", f"function:{ref}")}
    if kind == "AWS::StepFunctions::StateMachine":
        return {"Arn": ref, "Name": name}
    if kind == "AWS::IAM::Role":
        return {"Arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{ref}"}
    if kind == "AWS::Logs::LogGroup":
        return {"Arn": arn.format("logs", f"log-group:{ref}:*")}
    if kind == "AWS::KMS::Key":
        return {"Arn": arn.format("kms", f"key/{name}"), "KeyId": name}
    return {}


# ---------------------------------------------------------------- intrinsic functions

_SUB = re.compile(r"\$\{([^}!][^}]*)\}")
NO_VALUE = {"Ref": "AWS::NoValue"}


class Resolver:
    """Evaluates intrinsic functions; ``physical`` maps logical ids to what ``Ref`` returns and
    ``attributes`` maps ``(logical id, attribute)`` to what ``GetAtt`` returns::

        resolve = Resolver(template, stack_name="imgsearch-local", region="us-east-1")
        resolve({"Fn::Sub": "${AWS::StackName}-x"})          # "imgsearch-local-x"
        resolve.condition("IsProd")                          # False
    """

    def __init__(
        self,
        template: dict[str, Any],
        stack_name: str,
        region: str,
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.template = template
        self.pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        self.parameters = {
            name: str(spec.get("Default", ""))
            for name, spec in (template.get("Parameters") or {}).items()
        } | (parameters or {})
        self.physical: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self(v) for k, v in value.items()}
        ((name, argument),) = value.items()
        if name == "Ref":
            return self.ref(argument)
        if name == "Fn::GetAtt":
            return self.get_att(*argument)
        if name == "Fn::Sub":
            return self.sub(argument)
        if name == "Fn::Join":
            separator, parts = argument
            return separator.join(str(self(p)) for p in self(parts))
        if name == "Fn::Select":
            index, items = argument
            return self(items)[int(self(index))]
        if name == "Fn::Split":
            separator, text = argument
            return str(self(text)).split(separator)
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self(when_true if self.condition(condition) else when_false)
        if name == "Fn::Equals":
            left, right = argument
            return str(self(left)) == str(self(right))
        if name.startswith("Fn::"):
            raise TemplateError(f"the local stack cannot evaluate {name}")
        return {k: self(v) for k, v in value.items()}

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"unknown condition {name!r}")
        return self._truth(conditions[name])

    def _truth(self, value: Any) -> bool:
        ((function, argument),) = value.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Not":
            return not self._truth(argument[0])
        if function == "Fn::And":
            return all(self._truth(a) for a in argument)
        if function == "Fn::Or":
            return any(self._truth(a) for a in argument)
        return bool(self(value))

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        raise TemplateError(f"Ref {name!r} is not known yet (create it first)")

    def get_att(self, resource: str, attribute: str) -> str:
        try:
            return self.attributes[(resource, attribute)]
        except KeyError:
            raise TemplateError(f"GetAtt {resource}.{attribute} is not known yet") from None

    def sub(self, argument: str | list[Any]) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {k: self(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return _SUB.sub(replace, text).replace("${!", "${")


# ---------------------------------------------------------------- one stack of the template


@dataclass(frozen=True)
class FunctionSpec:
    """One function as the local stack runs it, its intrinsics resolved."""

    logical_id: str
    name: str
    handler: str
    """``<module>.app.handler`` (``ImageConfig.Command`` or ``Handler``)."""
    timeout: int
    memory: int
    environment: dict[str, str]
    """``Globals.Function`` merged with the function's own variables, as Lambda sets them."""


@dataclass(frozen=True)
class EventSourceMappingSpec:
    function: str
    """Logical id of the function the queue feeds."""
    queue_logical_id: str
    batch_size: int = 10
    batch_window: float = 0.0
    report_batch_item_failures: bool = False


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    definition: str
    """The ASL of ``DefinitionUri`` with its ``${Name}`` placeholders."""
    substitutions: dict[str, Any]
    """``DefinitionSubstitutions`` as the template writes them (intrinsics unresolved)."""


def target_of(value: Any) -> str:
    """The logical id a ``Ref X`` or ``Fn::GetAtt X.Arn`` points at."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    raise TemplateError(f"expected a GetAtt/Ref to a resource, got {value!r}")


class StackTemplate:
    """``template.yaml`` transformed by SAM and resolved for one stack.

    Until ``locate`` records the physical ids of a created stack, every resource resolves to a
    stand-in: ``default_name`` (or its own name property) in the form its ``Ref`` returns.
    """

    def __init__(
        self,
        template: Template,
        stack_name: str,
        region: str,
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.overrides = dict(parameters or {})
        self.resolve = Resolver(self.cloudformation, stack_name, region, self.overrides)
        self.locate(
            {
                logical_id: self._stand_in(logical_id, spec)
                for logical_id, spec in self.cloudformation["Resources"].items()
            }
        )

    def locate(self, physical: dict[str, str]) -> None:
        """Record what ``Ref`` returns for these resources (``describe_stack_resources``'
        ``PhysicalResourceId``) and the attributes that follow from it."""
        for logical_id, ref in physical.items():
            kind = self.cloudformation["Resources"][logical_id]["Type"]
            self.resolve.physical[logical_id] = ref
            for attribute, value in attributes_of(kind, ref, self.region).items():
                self.resolve.attributes[(logical_id, attribute)] = value

    @cached_property
    def cloudformation(self) -> dict[str, Any]:
        """The template after SAM's transform (``AWS::Serverless::*`` become plain resources)."""
        prepared = copy.deepcopy(dict(self.template))
        for spec in resources_of_type(prepared, "AWS::Serverless::Function").values():
            properties = spec.setdefault("Properties", {})
            if properties.get("PackageType") == "Image":
                properties.setdefault("ImageUri", LOCAL_IMAGE_URI)
        for logical_id in resources_of_type(prepared, "AWS::Serverless::StateMachine"):
            properties = prepared["Resources"][logical_id]["Properties"]
            if "DefinitionUri" in properties:
                # sam package uploads the file to S3; inline, SAM turns it into the same string.
                properties["Definition"] = json.loads(self._definition_text(logical_id))
                del properties["DefinitionUri"]
        translator = Translator(
            managed_policy_map=None,
            sam_parser=Parser(),
            # The region comes from here, never from the environment or a credentials lookup.
            boto_session=boto3.session.Session(region_name=self.region),
        )
        return translator.translate(
            prepared,
            parameter_values={
                **self.overrides,
                "AWS::AccountId": ACCOUNT_ID,
                "AWS::StackName": self.stack_name,
            },
            # SAM maps managed policy names with the map it bundles and asks this (SAM CLI:
            # IAM's ListPolicies) only for names missing from it; offline, there are none.
            get_managed_policy_map=dict,
        )

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return resources_of_type(self.cloudformation, kind)

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.cloudformation["Resources"][logical_id].get("Properties") or {}

    def function(self, logical_id: str) -> FunctionSpec:
        properties = self.properties(logical_id)
        variables = self.resolve((properties.get("Environment") or {}).get("Variables") or {})
        return FunctionSpec(
            logical_id=logical_id,
            name=self.resolve.ref(logical_id),
            handler=handler_command(self.template["Resources"][logical_id]["Properties"]),
            timeout=int(self.resolve(properties.get("Timeout", 3))),
            memory=int(self.resolve(properties.get("MemorySize", 128))),
            environment={k: "" if v is None else str(v) for k, v in variables.items()},
        )

    def functions(self) -> dict[str, FunctionSpec]:
        return {logical_id: self.function(logical_id) for logical_id in self.source_functions}

    @property
    def source_functions(self) -> list[str]:
        """Logical ids of the template's ``AWS::Serverless::Function`` resources."""
        return list(resources_of_type(self.template, "AWS::Serverless::Function"))

    def event_source_mapping(self, queue_logical_id: str) -> EventSourceMappingSpec:
        """The one mapping from the queue (SAM turns a function's ``SQS`` event into one too)."""
        mappings = map(self.properties, self.resources("AWS::Lambda::EventSourceMapping"))
        found = [p for p in mappings if target_of(p.get("EventSourceArn")) == queue_logical_id]
        if len(found) != 1:
            raise TemplateError(
                f"expected one event source mapping on {queue_logical_id}, found {len(found)}"
            )
        (properties,) = found
        return EventSourceMappingSpec(
            function=target_of(properties["FunctionName"]),
            queue_logical_id=queue_logical_id,
            batch_size=int(self.resolve(properties.get("BatchSize", 10))),
            batch_window=float(self.resolve(properties.get("MaximumBatchingWindowInSeconds", 0))),
            report_batch_item_failures="ReportBatchItemFailures"
            in (self.resolve(properties.get("FunctionResponseTypes")) or []),
        )

    def api_function(self) -> str:
        """The function behind the HTTP API's Lambda proxy integration (payload format 2.0)."""
        for properties in map(self.properties, self.resources("AWS::ApiGatewayV2::Integration")):
            if properties.get("IntegrationType") != "AWS_PROXY":
                continue
            if str(properties.get("PayloadFormatVersion")) != "2.0":
                raise TemplateError("the local API emulates payload format 2.0 only")
            target = target_of(properties["IntegrationUri"])
            # SAM points the integration at the function's alias (AutoPublishAlias).
            while self.cloudformation["Resources"][target]["Type"] != "AWS::Lambda::Function":
                target = target_of(self.properties(target)["FunctionName"])
            return target
        raise TemplateError("no function serves the HTTP API")

    def state_machines(self) -> dict[str, StateMachineSpec]:
        """Logical id -> each ``AWS::Serverless::StateMachine``, in template order."""
        return {
            logical_id: StateMachineSpec(
                logical_id=logical_id,
                definition=self._definition_text(logical_id),
                substitutions=dict(
                    self.properties(logical_id).get("DefinitionSubstitutions") or {}
                ),
            )
            for logical_id in resources_of_type(self.template, "AWS::Serverless::StateMachine")
        }

    def _definition_text(self, logical_id: str) -> str:
        properties = self.template["Resources"][logical_id]["Properties"]
        if "Definition" in properties:
            return json.dumps(properties["Definition"], indent=2)
        return (self.template.path.parent / properties["DefinitionUri"]).read_text(encoding="utf-8")

    def _stand_in(self, logical_id: str, spec: dict[str, Any]) -> str:
        kind = spec["Type"]
        prop = name_property(kind)
        named = (spec.get("Properties") or {}).get(prop) if prop else None
        name = self.resolve(named) if named else default_name(self.stack_name, logical_id, kind)
        return ref_of(kind, name, self.region)
