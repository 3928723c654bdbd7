"""Helpers shared by the command modules: loading the model and printing errors."""

from __future__ import annotations

import json
import sys
from typing import Any

from imgsearch.core.config import Settings
from imgsearch.model import BundleError, ClipModel
from imgsearch_devkit.project import operator_settings


def fail(message: str, status: int = 1) -> int:
    print(f"imgsearch: error: {message}", file=sys.stderr)
    return status


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, sort_keys=False))


def load_model(bundle: str | None, settings: Settings | None = None) -> ClipModel:
    """The bundle named on the command line, else the configured one (the embedded demo)."""
    settings = settings or operator_settings()
    return ClipModel.load(
        bundle or settings.model.uri,
        threads=settings.model.threads,
        cache_dir=settings.model.cache_dir,
    )


__all__ = ["BundleError", "fail", "load_model", "print_json"]
