"""The fresh segment: the ``fresh`` GSI, and ``FreshVectors`` reading it (moto's DynamoDB).

Exact search over what was embedded since a snapshot, a changed image's newer vector only,
re-reads of the GSI's slack without duplicates, the bound, and deletes that hide a vector only
when they are newer than it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imgsearch.catalog.current import CurrentIndex
from imgsearch.core.keys import image_id
from imgsearch.query.deletions import DeletedKeys
from imgsearch.query.fresh import FreshVectors, fresh_since
from imgsearch.store import EmbeddingRecord, EmbeddingStore, pad_sequencer
from imgsearch.store.schema import FRESH_SHARDS

MODEL = "demo-clip@1"
DIM = 16


def stamp(second: int) -> str:
    return f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}.000000Z"


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def put(store: EmbeddingStore, key: str, second: int, seed: int, status: str = "ok") -> None:
    ok = status == "ok"
    store.client.put_item(
        TableName=store.table,
        Item=EmbeddingRecord(
            key=key,
            model=MODEL,
            id=image_id(key),
            status=status,  # type: ignore[arg-type]
            sequencer=pad_sequencer(f"{second:04d}"),
            updated_at=stamp(second),
            vector=unit(seed) if ok else None,
            deleted_at=None if ok else stamp(second),
        ).to_item(),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fresh(store: EmbeddingStore, since: str = stamp(10), limit: int = 100, **kw) -> FreshVectors:
    return FreshVectors(store, MODEL, since, DIM, max_age=1.0, limit=limit, **kw)


def test_only_items_with_a_vector_are_in_the_gsi_oldest_first(store: EmbeddingStore) -> None:
    put(store, "images/a.jpg", 12, seed=1)
    put(store, "images/b.jpg", 11, seed=2)
    put(store, "images/gone.jpg", 13, seed=3, status="deleted")
    put(store, "images/bad.jpg", 14, seed=4, status="quarantined")

    def since(moment: str) -> list[EmbeddingRecord]:
        found = (store.embedded_since(MODEL, shard, moment) for shard in range(FRESH_SHARDS))
        return sorted(itertools.chain(*found), key=lambda r: r.updated_at)

    found = since(stamp(10))
    assert [r.key for r in found] == ["images/b.jpg", "images/a.jpg"]
    assert found[0].id == image_id("images/b.jpg") and found[0].embedded_at == stamp(11)
    np.testing.assert_allclose(found[1].vector, unit(1), atol=1e-3)
    assert [r.key for r in since(stamp(11))] == ["images/a.jpg"]
    shard = image_id("images/a.jpg") % FRESH_SHARDS
    assert [r.key for r in store.embedded_since(MODEL, shard)] == ["images/a.jpg"]


def test_search_is_exact_over_what_was_embedded_after_since(store: EmbeddingStore) -> None:
    for n in range(30):
        put(store, f"images/{n:02d}.jpg", 11 + n % 40, seed=n)
    put(store, "images/indexed.jpg", 9, seed=99)  # before the scan began: in the index
    segment = fresh(store)
    segment.refresh()
    assert len(segment) == 30 and "images/indexed.jpg" not in segment

    query = unit(7)
    matches = segment.search(query, count=5)
    vectors = np.stack([unit(n) for n in range(30)])
    expected = np.argsort(-(vectors @ query))[:5]
    assert [m.key for m in matches] == [f"images/{n:02d}.jpg" for n in expected]
    assert matches[0].key == "images/07.jpg" and matches[0].score == pytest.approx(1, abs=1e-3)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert len(segment.search(query, count=100)) == 30


def test_a_changed_image_is_searched_with_its_newest_vector_only(store: EmbeddingStore) -> None:
    put(store, "images/a.jpg", 11, seed=1)
    segment = fresh(store)
    segment.refresh()
    put(store, "images/a.jpg", 12, seed=2)
    segment.refresh()

    assert len(segment) == 1
    (match,) = segment.search(unit(1), count=5)
    assert match.embedded_at == stamp(12)
    assert match.score == pytest.approx(float(unit(2) @ unit(1)), abs=1e-3)
    vector, embedded_at = segment.vector("images/a.jpg")
    assert embedded_at == stamp(12)
    np.testing.assert_allclose(vector, unit(2), atol=1e-3)


def test_a_search_holding_a_view_sees_one_refresh_whatever_comes_after(
    store: EmbeddingStore,
) -> None:
    put(store, "images/a.jpg", 11, seed=1)
    segment = fresh(store)
    segment.refresh()
    view = segment.view()
    put(store, "images/a.jpg", 12, seed=2)  # a changed image, and one newly fresh
    put(store, "images/b.jpg", 13, seed=3)
    segment.refresh()

    # The view still finds a by the row it holds, and does not claim b (an index hit of b
    # stays visible to the search that holds it).
    (match,) = view.search(unit(1), count=5)
    assert (match.key, match.embedded_at) == ("images/a.jpg", stamp(11))
    assert "images/b.jpg" not in view and len(view) == 1
    assert [m.key for m in segment.view().search(unit(3), count=1)] == ["images/b.jpg"]
    assert "images/b.jpg" in segment.view() and len(segment) == 2


def test_refreshes_reread_the_slack_without_adding_twice(store: EmbeddingStore) -> None:
    clock = Clock()
    segment = fresh(store, clock=clock)
    put(store, "images/a.jpg", 11, seed=1)
    segment.refresh_if_stale()
    # A write that shows up in the GSI after a newer one was read (within the slack).
    put(store, "images/c.jpg", 14, seed=3)
    clock.now = 0.5
    segment.refresh_if_stale()  # not stale yet
    assert "images/c.jpg" not in segment
    clock.now = 1.0
    segment.refresh_if_stale()
    # Another shard's write, older than the newest read but within the slack.
    put(store, "images/b.jpg", 13, seed=2)
    clock.now = 2.0
    segment.refresh_if_stale()

    assert len(segment) == 3
    assert [image.key for image in segment.newest()] == [
        "images/b.jpg",
        "images/c.jpg",
        "images/a.jpg",
    ]  # in the order read: b was read last
    assert len(segment.search(unit(1), count=10)) == 3


def test_a_shard_with_more_than_a_refresh_reads_goes_on_where_it_stopped(
    store: EmbeddingStore,
) -> None:
    crowded = [
        k for k in (f"images/{n}.jpg" for n in range(3000)) if image_id(k) % FRESH_SHARDS == 0
    ][:70]
    for n, key in enumerate(crowded):
        put(store, key, 11 + n, seed=n)
    put(store, "images/a.jpg", 200, seed=1)  # another shard, newer than all of them
    segment = fresh(store, limit=400)  # reads at most 64 of a shard a refresh
    segment.refresh()
    assert len(segment) == 65 and crowded[63] in segment and crowded[64] not in segment
    segment.refresh()
    assert len(segment) == 71 and all(key in segment for key in crowded)


def test_past_its_limit_it_stops_growing_and_says_so_once(store: EmbeddingStore) -> None:
    calls: list[str] = []
    for n in range(5):
        put(store, f"images/{n}.jpg", 11 + n, seed=n)
    segment = fresh(store, limit=3, on_full=lambda: calls.append("full"))
    segment.refresh()
    assert segment.full and len(segment) == 3 and calls == ["full"]
    assert [image.key for image in segment.newest()] == [f"images/{n}.jpg" for n in (2, 1, 0)]

    put(store, "images/late.jpg", 30, seed=9)
    segment.refresh()
    assert len(segment) == 3 and calls == ["full"]  # no more reads, no second build


def test_a_limit_of_zero_turns_it_off(store: EmbeddingStore) -> None:
    put(store, "images/a.jpg", 11, seed=1)
    segment = fresh(store, limit=0)
    segment.refresh()
    assert len(segment) == 0 and not segment.full and segment.search(unit(1), 5) == []


def test_a_delete_hides_only_vectors_older_than_it(store: EmbeddingStore) -> None:
    deleted = DeletedKeys(store, MODEL, stamp(10), max_age=0)
    put(store, "images/a.jpg", 12, seed=1, status="deleted")
    deleted.refresh()
    assert deleted.hides("images/a.jpg", embedded_at=stamp(11))  # embedded, then deleted
    assert not deleted.hides("images/a.jpg", embedded_at=stamp(13))  # uploaded again since
    assert not deleted.hides("images/b.jpg", embedded_at="")


def test_a_version_without_its_scan_time_looks_back_as_far_as_deletes_do() -> None:
    built_at = "2026-01-01T02:00:00.000000Z"
    current = CurrentIndex(version="v", model=MODEL, count=1, built_at=built_at)
    assert fresh_since(current) == "2026-01-01T01:00:00.000000Z"
    assert fresh_since(current.model_copy(update={"scanned_from": stamp(5)})) == stamp(5)
