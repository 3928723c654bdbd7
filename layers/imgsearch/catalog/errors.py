"""The errors of making, checking and serving index versions.

``PipelineError`` roots every error the index pipeline's steps (and rollback) raise on purpose;
the steps' own cases (``SnapshotError``, ``BuildError``, ``NotValidated``, ``RollbackError``,
``GoldenSetError``) subclass it beside them. It is defined here, below the pipeline, because the
catalog raises one case itself: ``PublishConflict``, when the conditional write of
``current.json`` loses. The state machine's ``Retry``/``Catch`` and the tests match the class
names, so they stay as they are::

    try:
        publish_version(settings, s3, manifest, build)
    except PipelineError as exc:     # PublishConflict, NotValidated, ...
        print(type(exc).__name__, exc)
"""

from __future__ import annotations

from imgsearch.core.errors import ImgsearchError


class PipelineError(ImgsearchError):
    """A step of the index pipeline, or a rollback, refused: the serving index is unchanged."""


class WriteConflict(ImgsearchError):
    """A conditional write lost: the object changed since it was read."""


class PublishConflict(PipelineError, WriteConflict):
    """``current.json`` changed since it was read: another run published (or rolled back) first."""


class ContractError(ImgsearchError, ValueError):
    """A payload or a catalog file does not match its model, or has a newer major schema."""
