"""Typed answers of the API, with the API's field names (``docs/openapi.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SearchResult:
    key: str
    id: str
    score: float
    url: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> SearchResult:
        return cls(data["key"], str(data["id"]), float(data["score"]), data["url"])


@dataclass(frozen=True)
class SearchPage:
    index_version: str
    model: str
    k: int
    results: list[SearchResult]
    next_cursor: str | None = None
    query_id: str = ""
    """The answer's signed id: ``Client.feedback`` takes it with a click on one of ``results``."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The answer as the API sent it (fields newer than this client included)."""

    @classmethod
    def parse(cls, data: dict[str, Any]) -> SearchPage:
        return cls(
            index_version=data["index_version"],
            model=data["model"],
            k=int(data["k"]),
            results=[SearchResult.parse(r) for r in data.get("results", [])],
            next_cursor=data.get("next_cursor"),
            query_id=data.get("query_id", ""),
            raw=data,
        )


@dataclass(frozen=True)
class RecentImage:
    key: str
    id: str
    updated_at: str
    url: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> RecentImage:
        return cls(data["key"], str(data["id"]), data["updated_at"], data["url"])


@dataclass(frozen=True)
class RecentPage:
    """``GET /recent``: the newest images, newest first (``index_version`` None: no index)."""

    index_version: str | None
    k: int
    results: list[RecentImage]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> RecentPage:
        return cls(
            index_version=data.get("index_version"),
            k=int(data["k"]),
            results=[RecentImage.parse(r) for r in data.get("results", [])],
            raw=data,
        )


@dataclass(frozen=True)
class Health:
    status: str
    index_loaded: bool
    index_version: str | None
    model: str

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Health:
        return cls(data["status"], bool(data["index_loaded"]), data.get("index_version"),
                   data["model"])  # fmt: skip


@dataclass(frozen=True)
class Version:
    model: str
    embedding_dim: int
    index_version: str | None = None
    built_at: str | None = None
    published_at: str | None = None
    image_count: int | None = None
    headline: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Version:
        known = {k: data.get(k) for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)
