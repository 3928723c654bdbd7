"""Lambda entry points: how a function module turns ``build(settings, clients)`` into ``handler``.

Every ``functions/<name>/app.py`` exposes ``build(settings, clients=None) -> handler`` and ends
with ``handler = lambda_entry(build)``. On Lambda the handler is built from the environment at
import, in the init phase (provisioned concurrency pre-warms it); elsewhere it is built on its
first call, so importing a function module has no side effects. Tests and the local stack call
``build`` with ``Settings`` of their own::

    def build(settings: Settings, clients: Clients | None = None) -> Handler:
        function = Function.wire(settings, clients, "bucket")     # fails fast on missing settings

        def handler(event, context):
            return do_the_work(settings, function.clients.s3, event)

        return function.instrument(handler, metrics=True)

    handler = lambda_entry(build)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import EphemeralMetrics

from imgsearch.core.aws import Clients
from imgsearch.core.config import Settings, running_on_lambda

Handler = Callable[[Any, Any], Any]
LIBRARY_LOGGER = "imgsearch"
Builder = Callable[[Settings, Clients | None], Handler]


@dataclass(frozen=True)
class Powertools:
    logger: Logger
    metrics: EphemeralMetrics
    tracer: Tracer


def powertools(settings: Settings) -> Powertools:
    """Logger, Metrics and Tracer, named by the settings. The library logs through the standard
    ``logging`` (``imgsearch.*``): its records go out through this Logger too, as JSON lines
    with the request's context, so that every step's summary reaches CloudWatch."""
    names = settings.observability
    logger = Logger(service=names.service, level=names.log_level)
    logging.getLogger(LIBRARY_LOGGER)  # registered, so that Powertools finds it
    copy_config_to_registered_loggers(source_logger=logger, include={LIBRARY_LOGGER})
    return Powertools(
        logger=logger,
        # Each function's own metric set: Powertools' Metrics shares one per process, so two
        # handlers in one process (the local stack, the tests) would flush each other's.
        metrics=EphemeralMetrics(namespace=names.namespace, service=names.service),
        tracer=Tracer(service=names.service),
    )


@dataclass(frozen=True)
class Function:
    """What one function's ``build`` wires once per sandbox: its clients and its Powertools."""

    clients: Clients
    tools: Powertools

    @classmethod
    def wire(cls, settings: Settings, clients: Clients | None, *required: str) -> Function:
        """Check the settings the function cannot run without, then make its clients."""
        settings.require(*required)
        return cls(clients or Clients.for_settings(settings), powertools(settings))

    @property
    def logger(self) -> Logger:
        return self.tools.logger

    @property
    def metrics(self) -> EphemeralMetrics:
        return self.tools.metrics

    def instrument(
        self,
        handler: Handler,
        *,
        metrics: bool = False,
        correlation_id_path: str | None = None,
        cold_start_metric: bool = False,
    ) -> Handler:
        """``handler`` with the request's context in every log line, an X-Ray segment and, with
        ``metrics``, its metrics flushed as EMF after each invocation."""
        wrapped = handler
        if metrics:
            wrapped = self.metrics.log_metrics(capture_cold_start_metric=cold_start_metric)(wrapped)
        wrapped = self.tools.tracer.capture_lambda_handler(capture_response=False)(wrapped)
        return self.logger.inject_lambda_context(
            correlation_id_path=correlation_id_path, clear_state=True
        )(wrapped)


def lambda_entry(build: Builder) -> Handler:
    """The module-level ``handler`` for ``build`` (see the module docstring)."""
    if running_on_lambda():
        return build(Settings.from_env(), None)
    built: list[Handler] = []
    lock = threading.Lock()

    def handler(event: Any, context: Any) -> Any:
        if not built:
            with lock:
                if not built:
                    built.append(build(Settings.from_env(), None))
        return built[0](event, context)

    return handler
