"""The payloads between the index pipeline's states: each step's input and output, typed.

``statemachine/index_pipeline.asl.json`` builds each task's input from the state (``$``) with
``Parameters`` and puts each result at its ``ResultPath``; these models are those shapes, and
``tests/integration/test_pipeline_contracts.py`` runs the real ASL to check every payload
against them. The Snapshot and Build outputs are also parts of ``report.json``, so they are
defined in ``imgsearch.catalog.report``; the rollback function returns the ``current.json`` it
wrote (``imgsearch.catalog.current.CurrentIndex``)::

    payload = ValidateInput.parse(event)       # ContractError naming the field that is wrong
    outcome = validate_version(settings, s3, payload.snapshot, payload.build)
    return outcome.dump()

State by state:

==============  ====================================  ==================================
state           input                                 output (at its ``ResultPath``)
==============  ====================================  ==================================
(execution)     ``StartInput``                        ``RunState`` or ``SkippedRun``
Snapshot        ``StartInput`` (the execution input)  ``SnapshotManifest`` ($.snapshot)
Build           ``BuildInput``                        ``BuildResult`` ($.build)
Validate        ``ValidateInput``                     ``ValidationOutcome`` ($.validation)
Publish         ``PublishInput``                      ``PublishResult`` ($.publish)
ReportFailure   ``FailureInput``                      ``FailureResult`` ($.failure)
(rollback fn)   ``RollbackInput``                     ``CurrentIndex``
==============  ====================================  ==================================
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from imgsearch.catalog.contract import Contract, Figure, Flag, Part
from imgsearch.catalog.layout import VERSION_PATTERN
from imgsearch.catalog.report import BuildResult, SnapshotManifest


class StartInput(Contract):
    """The execution input: ``{}``, ``{"force": true}`` or ``{"model": "clip@2", "force": true}``
    (other fields are ignored)."""

    LABEL = "the execution input"

    force: Flag = False
    """Rebuild even when the embedding set is the serving index's."""
    model: str = ""
    """Index this model's embeddings instead of the serving one's (a rollout's candidate; it
    is published only through the same gates, measured against the serving index)."""


class BuildInput(Contract):
    LABEL = "the Build step's input"

    snapshot: SnapshotManifest


class ValidateInput(Contract):
    LABEL = "the Validate step's input"

    snapshot: SnapshotManifest
    build: BuildResult


class ValidationOutcome(Contract):
    """What the Validate step returns: the Gate state reads ``passed``."""

    LABEL = "the validation outcome"

    version: str
    passed: bool
    summary: str
    report_key: str
    headline: dict[str, Figure]
    failed_gates: list[str]


class PublishInput(Contract):
    LABEL = "the Publish step's input"

    snapshot: SnapshotManifest
    build: BuildResult
    validation: ValidationOutcome | None = None
    """Passed by the state machine; Publish trusts the version's ``report.json``, not this."""


class PublishResult(Contract):
    LABEL = "the publish result"

    version: str
    previous: str
    published_at: str
    count: int
    index_bytes: int
    build_seconds: float
    headline: dict[str, Figure]
    deleted_versions: list[str]


class RollbackInput(Contract):
    """The rollback function's input: ``{}`` (one step back) or ``{"to": VERSION}``."""

    LABEL = "the rollback input"

    to: str | None = None

    @field_validator("to", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not VERSION_PATTERN.match(value)):
            raise ValueError(
                f'"to" must be a version such as 20250101T000000Z-a1b2c3, got {value!r}'
            )
        return value


class CaughtError(Part):
    """What a ``Catch`` puts at ``$.failed.<Step>`` (or the Rejected state, for a gate)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    error: str = Field(default="", alias="Error")
    cause: str = Field(default="", alias="Cause")


class RunState(Contract):
    """The state (``$``) as the run goes: the execution input's fields (kept as extra fields),
    then each step's output at its ``ResultPath``. A published run ends with all of it."""

    model_config = ConfigDict(frozen=True, extra="allow")
    LABEL = "the run's state"

    snapshot: SnapshotManifest | None = None
    build: BuildResult | None = None
    validation: ValidationOutcome | None = None
    publish: PublishResult | None = None
    failed: dict[str, CaughtError] = Field(default_factory=dict)

    @property
    def execution_input(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SkippedRun(Contract):
    """The output of a run that stopped at ``NothingChanged`` (the ASL's ``Parameters``)."""

    LABEL = "a skipped run's output"

    status: Literal["skipped"]
    reason: str
    serving_version: str
    count: int


class FailureInput(Contract):
    """ReportFailure's input: ``{"execution": $$.Execution.Id, "execution_name":
    $$.Execution.Name, "state": $}``."""

    LABEL = "the ReportFailure step's input"

    execution: str = ""
    execution_name: str = ""
    state: RunState = Field(default_factory=RunState)


class FailureReport(Contract):
    """``indexes/failures/<execution name>.json``, also the alert's message."""

    LABEL = "the failure report"

    execution: str
    execution_name: str
    step: str
    error: str
    message: str
    details: dict[str, Any] | None
    """The Lambda error (``errorType``, ``errorMessage``, ``stackTrace``) when the cause is one."""
    version: str
    validation: ValidationOutcome | None
    serving_version: str
    input: dict[str, Any]
    failed_at: str
    snapshot: str
    note: str


class FailureResult(Contract):
    """What ReportFailure returns: the ``Failed`` state's error and cause."""

    LABEL = "the failure result"

    step: str
    error: str
    cause: str
    report_key: str
