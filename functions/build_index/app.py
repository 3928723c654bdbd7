"""Build step of the index pipeline: an HNSW index from the snapshot, under a new version.

Handler ``build_index.app.handler``. Input: ``BuildInput`` (``{"snapshot": <Snapshot output>}``).
Output: ``BuildResult.dump()``. Logic lives in ``imgsearch.pipeline.build``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings
from imgsearch.core.entry import Function, Handler, lambda_entry
from imgsearch.pipeline.build import build_version
from imgsearch.pipeline.contracts import BuildInput


def build(settings: Settings, clients: Clients | None = None) -> Handler:
    function = Function.wire(settings, clients, "bucket")
    clients = function.clients

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        payload = BuildInput.parse(event)
        return build_version(settings, clients.s3, payload.snapshot).dump()

    return function.instrument(handler)


handler = lambda_entry(build)
