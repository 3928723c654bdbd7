"""Typed, versioned JSON: the files of a published index and the payloads between the steps.

Every model derives from ``Contract``: pydantic, frozen, unknown fields ignored (a newer minor
version may add some), and a ``schema_version`` whose MAJOR a reader must know. A file or
payload without one is read as ``1.0`` (files written before the field existed)::

    report = IndexReport.parse(data)           # ContractError naming each field that is wrong
    current = CurrentIndex.parse_json(body)    # the same from JSON bytes
    current.dump()                             # a JSON-ready dict, schema_version included

A ``2.0`` file read by this code fails with "report.json schema 2.0 is newer than this code
understands (1.x): upgrade imgsearch"; a ``1.3`` one reads, its unknown fields dropped.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Self, TypeVar

from botocore.exceptions import ClientError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from imgsearch.catalog.errors import ContractError, WriteConflict
from imgsearch.core.aws import error_code, get_object_if_any

SCHEMA_VERSION = "1.0"
"""The version every model here writes; readers accept any ``1.x``."""
INPUT_REPR_LIMIT = 80
Figure = float | int
"""A headline figure: ints stay ints in the JSON (``expansion_search``), floats floats."""


def schema_major(version: str) -> int:
    major, dot, _minor = version.partition(".")
    if not major.isdigit() or not dot:
        raise ValueError(f"schema_version must look like {SCHEMA_VERSION!r}, got {version!r}")
    return int(major)


def check_schema(label: str, version: str) -> None:
    """Refuse a newer MAJOR version than this code writes; older and equal ones read."""
    known = schema_major(SCHEMA_VERSION)
    if schema_major(version) > known:
        raise ContractError(
            f"{label} schema {version} is newer than this code understands ({known}.x): "
            "upgrade imgsearch"
        )


def describe(label: str, exc: ValidationError) -> str:
    """One line per wrong field: ``snapshot.count: Input should be a valid integer (got 'x')``."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(the payload)"
        if error["type"] == "value_error":  # our own validators: their message says it all
            problems.append(f"{where}: {error['ctx']['error']}")
            continue
        got = "" if error["type"] == "missing" else f" (got {error['input']!r:.{INPUT_REPR_LIMIT}})"
        problems.append(f"{where}: {error['msg']}{got}")
    return f"{label} does not match its model: " + "; ".join(problems)


def _flag(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f'"{info.field_name}" must be true or false, got {value!r}')
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]
"""A JSON ``true``/``false`` and nothing else (no ``"yes"``, no ``1``), said by field name."""


class Part(BaseModel):
    """A section of a contract (the report's ``ann``, a gate): typed, frozen, no version."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Contract(Part):
    """Base of every versioned JSON model (see the module docstring)."""

    LABEL: ClassVar[str] = "payload"
    """What the model is, for error messages: ``report.json``, ``the Build step's input``."""

    schema_version: str = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_major(cls, version: str) -> str:
        # Nested models (the report's snapshot and build) are checked here too.
        check_schema(cls.LABEL, version)
        return version

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate ``data`` (a decoded JSON value); raises ``ContractError``."""
        if isinstance(data, dict) and isinstance(data.get("schema_version"), str):
            check_schema(cls.LABEL, data["schema_version"])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ContractError(describe(cls.LABEL, exc)) from None

    @classmethod
    def parse_json(cls, body: bytes | str) -> Self:
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ContractError(f"{cls.LABEL} is not JSON: {exc}") from None
        return cls.parse(data)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready form a step returns or a file holds."""
        return self.model_dump(mode="json")

    def to_json(self) -> bytes:
        return json.dumps(self.dump(), indent=2, sort_keys=True).encode()


C = TypeVar("C", bound=Contract)


def read_object(s3: Any, bucket: str, key: str, model: type[C]) -> C | None:
    """The contract stored at ``key``, validated; ``None`` when there is no such object."""
    response = get_object_if_any(s3, bucket, key)
    return None if response is None else model.parse_json(response["Body"].read())


def read_with_etag(s3: Any, bucket: str, key: str, model: type[C]) -> C | None:
    """``read_object``, with the ETag it was read with in the model's ``etag`` field: what a
    conditional write back (``put_if``) needs."""
    response = get_object_if_any(s3, bucket, key)
    if response is None:
        return None
    found = model.parse_json(response["Body"].read())
    return found.model_copy(update={"etag": response.get("ETag", "")})


def write_object(s3: Any, bucket: str, key: str, contract: Contract) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=contract.to_json(), ContentType="application/json")
    return key


CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
"""What S3 answers a conditional ``PutObject`` that lost (412), or raced another (409)."""


def put_if(s3: Any, bucket: str, key: str, contract: Contract, expected_etag: str | None) -> str:
    """Write ``contract`` only if the object is still the one read (``expected_etag``; ``None``:
    there must be none yet). Returns the new ETag; raises ``WriteConflict``."""
    return put_body_if(s3, bucket, key, contract.to_json(), expected_etag)


def put_body_if(
    s3: Any,
    bucket: str,
    key: str,
    body: bytes,
    expected_etag: str | None,
    content_type: str = "application/json",
) -> str:
    """``put_if`` for a body that is not a contract (the golden set's JSON lines)."""
    condition = {"IfMatch": expected_etag} if expected_etag else {"IfNoneMatch": "*"}
    try:
        response = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            **condition,
        )
    except ClientError as exc:
        if error_code(exc) in CONFLICT_CODES:
            raise WriteConflict(f"{key} changed since it was read") from exc
        raise
    return str(response.get("ETag", ""))
