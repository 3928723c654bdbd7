"""Read ``template.yaml`` so the local stack mirrors it instead of repeating its values.

Only what the local stack needs: the YAML with CloudFormation's short tags, and a resolver for
the intrinsic functions that name things (``Ref``, ``Fn::Sub``, ``Fn::GetAtt``, ``Fn::Join``,
``Fn::Select``, ``Fn::If`` on parameter-only conditions, ``Fn::Equals``), evaluated with the
pseudo parameters of a local stack and the parameters' defaults::

    template = load_template(Path("template.yaml"))
    resolve = Resolver(template, stack_name="imgsearch-local", region="us-east-1")
    resolve(template["Resources"]["ImagesBucket"]["Properties"]["BucketName"])
    resolve.physical["IngestQueue"] = queue_url          # what Ref / GetAtt of it return
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
"""moto's default account."""


class TemplateError(ValueError):
    """The template lacks something the local stack mirrors, or uses an unsupported form."""


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


def load_template(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TemplateError(f"no SAM template at {path}")
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)


_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    """Evaluates intrinsic functions; ``physical`` maps logical ids to what ``Ref`` returns and
    ``attributes`` maps ``(logical id, attribute)`` to what ``GetAtt`` returns."""

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
            "AWS::Partition": "aws",
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
        spec = conditions[name]
        ((function, argument),) = spec.items()
        if function == "Fn::Not":
            return not self._truth(argument[0])
        if function == "Fn::And":
            return all(self._truth(a) for a in argument)
        if function == "Fn::Or":
            return any(self._truth(a) for a in argument)
        return bool(self(spec))

    def _truth(self, value: Any) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"])
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


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in (template.get("Resources") or {}).items()
        if spec.get("Type") == kind
    }


def function_properties(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties with ``Globals.Function`` merged in (environment merged too)."""
    merged = dict((template.get("Globals") or {}).get("Function") or {})
    own = template["Resources"][logical_id].get("Properties") or {}
    global_env = ((merged.get("Environment") or {}).get("Variables")) or {}
    own_env = ((own.get("Environment") or {}).get("Variables")) or {}
    merged.update(own)
    merged["Environment"] = {"Variables": global_env | own_env}
    return merged
