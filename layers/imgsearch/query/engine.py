"""Text, image and similar-image search over the served index, one page at a time.

``SearchEngine`` turns a query into a unit vector with the served version's model (text
embeddings of recent queries are cached per model), searches the served version's index and,
exactly, the images embedded since it was built (``served.fresh``: a fresh vector replaces the
index's one of the same key), merges the two by score, drops keys deleted since, and pages with
``imgsearch.query.cursor``. Bad input gets its 4xx
whether or not an index is served (``serving`` raises ``NoIndex``, HTTP 503, when none is)::

    engine = SearchEngine(model, store, ImageLimits(...), cache_size=256)
    page = engine.text(server.require, "two red circles", k=20, cursor=None, min_score=None)
    page.hits[0].key, page.hits[0].score, page.next_cursor

Every input problem raises an ``ApiError`` subclass with its HTTP status.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgsearch.core.keys import image_id
from imgsearch.model import ClipModel, ImageError, ImageLimits, l2_normalise, preprocess
from imgsearch.query.cursor import Cursor, fingerprint
from imgsearch.query.errors import (
    ApiError,
    BadRequest,
    NoIndex,
    NotFound,
    PayloadTooLarge,
    TooCostly,
    Unprocessable,
    UnsupportedMediaType,
)
from imgsearch.query.serving import Served
from imgsearch.store import EmbeddingStore

MAX_DEPTH = 1000
"""The most hits one query can page through: deep pages cost deeper searches."""
MAX_SEARCH_COUNT = 2 * MAX_DEPTH
"""The deepest single search, leaving room for deleted keys to be skipped."""
MAX_QUERY_CHARS = 1000

_IMAGE_ERRORS: dict[str, tuple[type[ApiError], str]] = {
    "empty": (BadRequest, "the upload is empty"),
    "too_large_bytes": (PayloadTooLarge, "the image has too many bytes"),
    "too_large_pixels": (PayloadTooLarge, "the image has too many pixels"),
    "too_slow_to_decode": (TooCostly, "the image takes too long to decode"),
    "not_an_image": (UnsupportedMediaType, "the upload is not an image in a format this API reads"),
    "truncated": (UnsupportedMediaType, "the image data ends early"),
}
"""``ImageError.reason`` -> the refusal; any other reason is a corrupt image (415)."""
_OWN_DETAIL = {"too_large_bytes", "too_large_pixels", "too_slow_to_decode"}
"""Reasons whose detail is written by imgsearch (sizes and limits), not by the decoder."""

Serving = Callable[[], Served]
"""The served version (raising ``NoIndex`` when none), asked for once the input is valid."""


@dataclass(frozen=True)
class Hit:
    key: str
    id: int
    score: float
    """Cosine similarity (1 - the index's distance: see :mod:`imgsearch.core.vectors`)."""


@dataclass(frozen=True)
class Page:
    served: Served
    hits: list[Hit]
    next_cursor: str | None
    vector: np.ndarray
    """The query's unit vector (the usage log keeps it for the drift monitor)."""
    offset: int = 0
    """Hits before this page (the cursor's)."""


def _require_utf8(text: str, parameter: str) -> None:
    """Events are JSON, which can carry lone surrogates: refuse what no tokenizer or key takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{parameter} is not valid UTF-8 text", parameter=parameter) from exc


def _parse(cursor: str | None) -> Cursor | None:
    return Cursor.parse(cursor) if cursor else None


def _refusal(error: ImageError, limits: ImageLimits) -> ApiError:
    """The API's answer to an image that cannot be used, in the API's words."""
    kind, message = _IMAGE_ERRORS.get(
        error.reason, (UnsupportedMediaType, "the image data is corrupt")
    )
    if error.reason in _OWN_DETAIL:
        message = f"{message}: {error.detail}"
    limit = {"too_large_pixels": limits.max_pixels, "too_large_bytes": limits.max_bytes}
    if error.reason in limit:
        return kind(message, reason=error.reason, limit=limit[error.reason])
    return kind(message, reason=error.reason)


def normalise_text(text: str) -> str:
    """Collapse whitespace, as CLIP's tokenizer does: equal queries share one cache entry."""
    return " ".join(text.split())


class SearchEngine:
    def __init__(
        self,
        model: ClipModel,
        store: EmbeddingStore,
        limits: ImageLimits,
        cache_size: int = 256,
    ) -> None:
        self.model = model
        """The function's own model: it checks query images while no index is served."""
        self.store = store
        self.limits = limits
        self._text_vector = functools.lru_cache(maxsize=cache_size)(self._encode_text)

    @staticmethod
    def _encode_text(model: ClipModel, text: str) -> np.ndarray:
        vector = model.encode_text([text])[0]
        vector.setflags(write=False)  # shared by every hit of the cache
        return vector

    def forget_texts(self) -> None:
        """Drop the cached text embeddings (after a swap: they hold the old model alive)."""
        self._text_vector.cache_clear()

    def text(
        self, serving: Serving, q: str, k: int, cursor: str | None, min_score: float | None
    ) -> Page:
        _require_utf8(q, "q")
        text = normalise_text(q)
        if not text:
            raise BadRequest("the query text is empty", parameter="q")
        if len(text) > MAX_QUERY_CHARS:
            raise Unprocessable(
                f"the query text is longer than {MAX_QUERY_CHARS} characters", parameter="q"
            )
        after = _parse(cursor)
        served = serving()
        vector = self._text_vector(served.model, text)
        served.catch_up()
        return self.search(served, vector, fingerprint("text", text), k, after, min_score)

    def image(
        self, serving: Serving, data: bytes, k: int, cursor: str | None, min_score: float | None
    ) -> Page:
        after = _parse(cursor)
        try:
            served = serving()
        except NoIndex:  # bad input is a 4xx whether or not an index is served
            self._pixels(data, self.model)
            raise
        vector = served.model.encode_images([self._pixels(data, served.model)])[0]
        served.catch_up()
        return self.search(served, vector, fingerprint("image", data), k, after, min_score)

    def _pixels(self, data: bytes, model: ClipModel) -> np.ndarray:
        """Decoding is the input check, with the model's own preprocessing."""
        try:
            return preprocess(data, model.manifest, self.limits)
        except ImageError as exc:
            raise _refusal(exc, self.limits) from exc

    def similar(
        self, serving: Serving, key: str, k: int, cursor: str | None, min_score: float | None
    ) -> Page:
        """Images like a stored one: its vector in the index, else in the table (newer images)."""
        _require_utf8(key, "key")
        after = _parse(cursor)
        try:
            served = serving()
        except NoIndex:
            if self.table_vector(key, self.model.model_id) is None:
                raise NotFound(f"no image {key!r} is indexed", key=key) from None
            raise
        served.catch_up()
        vector = self.stored_vector(served, key)
        if vector is None:
            raise NotFound(f"no image {key!r} is indexed", key=key)
        return self.search(
            served, vector, fingerprint("similar", key), k, after, min_score, exclude=key
        )

    def stored_vector(self, served: Served, key: str) -> np.ndarray | None:
        fresh = served.fresh.vector(key)
        if fresh is not None:
            vector, embedded_at = fresh
            return None if served.deleted.hides(key, embedded_at) else vector
        if key in served.deleted:
            return None
        found = served.index.vector(image_id(key))
        if found is not None and served.keys.key(image_id(key)) == key:
            return l2_normalise(found.reshape(1, -1))[0]
        vector = self.table_vector(key, served.current.model)
        return None if vector is None else l2_normalise(vector.reshape(1, -1))[0]

    def table_vector(self, key: str, model: str) -> np.ndarray | None:
        """The table's vector of ``key`` for ``model``; None if absent or deleted."""
        record = self.store.get(key, model)
        if record is None or record.status != "ok" or record.vector is None:
            return None
        return record.vector

    def search(
        self,
        served: Served,
        vector: np.ndarray,
        query: str,
        k: int,
        after: Cursor | None,
        min_score: float | None,
        exclude: str | None = None,
    ) -> Page:
        """One page of hits after the cursor, skipping deleted (and ``exclude``) keys.

        The callers catch ``served`` up first (``Served.catch_up``)."""
        if after is not None:
            after.check(served.version, query)
        returned = after.returned if after else 0
        if returned >= MAX_DEPTH:
            return Page(served, [], None, vector, returned)
        k = min(k, MAX_DEPTH - returned)
        total = len(served.index) + len(served.fresh)
        count = min(returned + k + 1 + (exclude is not None), total, MAX_SEARCH_COUNT)
        unit = l2_normalise(vector)
        while True:
            hits, exhausted = self._eligible(served, unit, count, after, min_score, exclude, k)
            if len(hits) > k or exhausted or count >= min(total, MAX_SEARCH_COUNT):
                break
            count = min(2 * count, total, MAX_SEARCH_COUNT)
        page = hits[:k]
        more = len(hits) > k and returned + len(page) < MAX_DEPTH
        token = None
        if more:
            last = page[-1]
            token = Cursor(served.version, query, returned + len(page), last.score, last.id)
        return Page(served, page, token.encode() if token else None, vector, returned)

    @staticmethod
    def _eligible(
        served: Served,
        unit: np.ndarray,
        count: int,
        after: Cursor | None,
        min_score: float | None,
        exclude: str | None,
        k: int,
    ) -> tuple[list[Hit], bool]:
        """Up to ``k + 1`` hits in (score desc, id asc) order; True when no deeper search helps
        (the index ran out, or scores fell below ``min_score``)."""
        if count <= 0:
            return [], True
        found, similarity = served.index.search(unit, count).row(0)
        view = served.fresh.view()  # one refresh's state for the search and what it hides
        fresh = view.search(unit, count)
        ids = np.concatenate([found, np.fromiter((m.id for m in fresh), np.int64, len(fresh))])
        scores = np.concatenate(
            [
                similarity.astype(np.float64),
                np.fromiter((m.score for m in fresh), np.float64, len(fresh)),
            ]
        )
        indexed = len(ids) - len(fresh)
        exhausted = indexed < count and len(fresh) < count
        hits: list[Hit] = []
        for position in np.lexsort((ids, -scores)):
            score, found = float(scores[position]), int(ids[position])
            if min_score is not None and score < min_score:
                return hits, True
            if after and (score > after.score or (score == after.score and found <= after.id)):
                continue
            if position < indexed:
                key = served.keys.key(found)
                # A fresh vector of the key replaces the index's.
                hidden = key is None or key in served.deleted or key in view
            else:
                match = fresh[position - indexed]
                key, hidden = match.key, served.deleted.hides(match.key, match.embedded_at)
            if hidden or key == exclude:
                continue
            hits.append(Hit(key, found, score))
            if len(hits) > k:
                break
        return hits, exhausted
