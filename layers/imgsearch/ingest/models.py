"""Which models a function embeds with, and their ingestors, loaded once per sandbox.

A function's own bundle (``IMGSEARCH_MODEL_URI``) is loaded at init; any other model is a
registered one, loaded from the registry (``models/<id>/`` in the service bucket) on first use.
The embed function writes with the serving model (``current.json``'s; its own bundle's before
the first index) and, while a rollout runs (``models/rollout.json``), with the candidate too::

    ingestors = Ingestors(settings, s3, dynamodb, default=Ingestor.from_settings(...))
    ingestors.get("clip-b32@2")          # downloaded, verified, loaded once
    writes = WriteModels(s3, settings, default="demo-clip@1")
    writes.models()                      # ["demo-clip@1"], or ["demo-clip@1", "clip-b32@2"]
    reports = process_all(ingestors, writes, messages)   # a BatchReport per model, serving first
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.catalog.current import read_current
from imgsearch.catalog.registry import RegistryError, bundle_uri, read_record
from imgsearch.catalog.rollout import read_rollout
from imgsearch.core.config import Settings
from imgsearch.ingest.errors import error_code
from imgsearch.ingest.events import Message
from imgsearch.ingest.pipeline import BatchReport, Ingestor

logger = logging.getLogger(__name__)


class Ingestors:
    """Ingestors by model id: the function's own, and registered models' on first use."""

    def __init__(self, settings: Settings, s3: Any, dynamodb: Any, default: Ingestor) -> None:
        self.settings, self.s3, self.dynamodb = settings, s3, dynamodb
        self.default = default
        self._by_model = {default.model_id: default}

    def get(self, model_id: str) -> Ingestor:
        if model_id not in self._by_model:
            uri = bundle_uri(self.settings.bucket, model_id)
            model = dataclasses.replace(self.settings.model, uri=uri)
            ingestor = Ingestor.from_settings(
                dataclasses.replace(self.settings, model=model),
                s3=self.s3,
                dynamodb=self.dynamodb,
                logger=self.default.log,
            )
            if ingestor.model_id != model_id:
                raise RegistryError(f"the bundle at {uri} is {ingestor.model_id}, not {model_id}")
            self._by_model[model_id] = ingestor
        return self._by_model[model_id]


class WriteModels:
    """The models every event is written with, read again at most every ``ttl`` seconds; when
    S3 cannot be read, the last answer stands."""

    def __init__(
        self,
        s3: Any,
        settings: Settings,
        default: str,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.s3, self.settings, self.default = s3, settings, default
        # How stale the view may get; a rollout waits longer before it lists the bucket, so an
        # upload is written with the candidate by this function or listed by the backfill.
        self.ttl = settings.rollout.write_models_seconds if ttl is None else ttl
        self._clock = clock
        self._models = [default]
        self._read_at = float("-inf")

    def models(self) -> list[str]:
        if self._clock() - self._read_at >= self.ttl:
            self._read_at = self._clock()
            try:
                self._models = self._read()
            except (ClientError, BotoCoreError) as exc:
                logger.warning(
                    "cannot read the serving model or the rollout; writing with %s",
                    ", ".join(self._models),
                    extra={"error": error_code(exc) or type(exc).__name__},
                )
        return list(self._models)

    def _read(self) -> list[str]:
        bucket = self.settings.bucket
        current = read_current(self.s3, bucket, self.settings.index.prefix)
        serving = current.model if current else self.default
        if serving != self.default and read_record(self.s3, bucket, serving) is None:
            # An index of a model this stack cannot load (a bundle deployed over another one,
            # not rolled out): the function's own bundle goes on, as it did before.
            logger.warning(
                "the serving index's model is not registered; embedding with the bundle",
                extra={"serving_model": serving, "bundle_model": self.default},
            )
            serving = self.default
        models = [serving]
        rollout = read_rollout(self.s3, bucket)
        if rollout is not None and rollout.candidate not in models:
            models.append(rollout.candidate)
        return models


def process_all(
    ingestors: Ingestors, writes: WriteModels, messages: Sequence[Message]
) -> list[BatchReport]:
    """The batch written with each model ``writes`` names, the serving model first. A model
    that cannot be loaded raises: the whole batch comes back, so no model misses an event."""
    return [ingestors.get(model).process(messages) for model in writes.models()]
