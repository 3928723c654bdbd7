"""The usage log's pieces: records that round-trip, query ids only this key signs, and the
reader of both forms Firehose may have written (extracted lines, or gzipped CloudWatch Logs
envelopes, concatenated)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import numpy as np
import pytest

from imgsearch.usage.join import JoinedQuery, join
from imgsearch.usage.reader import _messages, folders
from imgsearch.usage.records import (
    FeedbackRecord,
    IngestRecord,
    RecordError,
    SearchRecord,
    Shown,
    decode_vector,
    encode_vector,
    parse_record,
)
from imgsearch.usage.signing import QuerySignatureError, QuerySigner

KEY = b"k" * 32
SEARCH = SearchRecord(
    query_id="q1.x.y.z",
    time="2026-12-01T10:00:00.000000Z",
    model="demo-clip@3",
    index_version="v1",
    kind="text",
    k=3,
    offset=3,
    results=(Shown("images/a.png", 0.5), Shown("images/b.png", 0.25)),
    latency_ms=4.25,
    text="red circle",
    vector=encode_vector(np.array([0.6, 0.8], dtype=np.float32)),
)


def test_records_round_trip_through_their_json_lines() -> None:
    feedback = FeedbackRecord("q1.x.y.z", "2026-12-01T10:00:01.000000Z", "images/b.png", "click", 9)
    ingest = IngestRecord("2026-12-01T10:00:02.000000Z", "images/c.png", "demo-clip@3", "AAA=")
    for record in (SEARCH, feedback, ingest):
        assert parse_record(json.loads(record.to_json())) == record
    assert SEARCH.rank_of("images/b.png") == 5  # after the 3 of the page before
    assert SEARCH.rank_of("images/z.png") is None
    assert np.allclose(decode_vector(SEARCH.vector or ""), [0.6, 0.8], atol=1e-3)


@pytest.mark.parametrize(
    "body",
    [
        {"usage": "search", "query_id": "q"},
        {"usage": "feedback", "query_id": "q", "time": "t", "key": "k", "event": "liked"},
        {"usage": "something else"},
        {"no": "usage"},
        {**json.loads(SEARCH.to_json()), "results": [["only-a-key"]]},
        {**json.loads(SEARCH.to_json()), "k": True},
    ],
)
def test_what_is_not_a_record_says_so(body: dict) -> None:
    with pytest.raises(RecordError):
        parse_record(body)


def test_a_query_id_is_taken_only_from_this_key_and_only_for_a_while() -> None:
    now = [1_800_000_000.0]
    signer = QuerySigner(KEY, max_age_seconds=600, clock=lambda: now[0])
    query_id = signer.issue()
    signer.verify(query_id)
    assert signer.issued_at(query_id) == 1_800_000_000
    assert query_id != signer.issue()  # random part

    def reason(candidate: str, verifier: QuerySigner = signer) -> str:
        with pytest.raises(QuerySignatureError) as raised:
            verifier.verify(candidate)
        return raised.value.reason

    assert reason(QuerySigner(b"o" * 32, 600, clock=lambda: now[0]).issue()) == "forged"
    version, random, _, mac = query_id.split(".")
    assert reason(".".join([version, random, "zzzzzz", mac])) == "forged"  # a changed time
    assert reason("q2." + query_id[3:]) == "malformed"
    assert reason("not an id") == "malformed"
    now[0] += 601
    assert reason(query_id) == "stale"
    early = QuerySigner(KEY, 600, clock=lambda: now[0] + 3600).issue()
    assert reason(early) == "malformed"  # issued an hour ahead of this clock
    with pytest.raises(ValueError):
        QuerySigner(b"short", 600)


def test_the_reader_takes_extracted_lines_and_gzipped_envelopes() -> None:
    lines = (SEARCH.to_json() + "\n" + "not json\n" + '{"level": "INFO"}\n').encode()
    assert list(_messages(lines)) == [json.loads(SEARCH.to_json()), None, {"level": "INFO"}]

    def envelope(*messages: str) -> bytes:
        events = [{"id": str(n), "timestamp": 0, "message": m} for n, m in enumerate(messages)]
        body = {"messageType": "DATA_MESSAGE", "logEvents": events}
        return gzip.compress(json.dumps(body).encode())

    concatenated = envelope(SEARCH.to_json(), "START RequestId: 1") + envelope(SEARCH.to_json())
    assert list(_messages(concatenated)) == [json.loads(SEARCH.to_json())] * 2


def test_a_window_lists_the_hours_either_side() -> None:
    start = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    end = datetime(2026, 12, 1, 11, 5, tzinfo=UTC)
    assert folders("usage/", start, end) == [
        "usage/2026/12/01/09/",
        "usage/2026/12/01/10/",
        "usage/2026/12/01/11/",
        "usage/2026/12/01/12/",
    ]


def test_a_long_window_lists_whole_days_and_the_hours_at_its_ends() -> None:
    start = datetime(2026, 11, 1, 22, 30, tzinfo=UTC)
    end = datetime(2026, 11, 4, 0, 10, tzinfo=UTC)
    assert folders("usage/", start, end) == [
        "usage/2026/11/01/21/",
        "usage/2026/11/01/22/",
        "usage/2026/11/01/23/",
        "usage/2026/11/02/",
        "usage/2026/11/03/",
        "usage/2026/11/04/00/",
        "usage/2026/11/04/01/",
    ]


def test_feedback_joins_only_what_its_search_showed() -> None:
    other = FeedbackRecord("q1.other", "2026-12-01T10:00:01.000000Z", "images/a.png", "click")
    unshown = FeedbackRecord(
        SEARCH.query_id, "2026-12-01T10:00:02.000000Z", "images/x.png", "click"
    )
    judged = FeedbackRecord(
        SEARCH.query_id, "2026-12-01T10:00:03.000000Z", "images/a.png", "relevant"
    )
    (query,), stats = join([SEARCH, other, unshown, judged])
    assert (stats.orphaned, stats.unshown, stats.joined) == (1, 1, 1)
    assert query.positive_ranks() == [4] and query.positive_keys() == {"images/a.png"}
    assert JoinedQuery.from_json(json.loads(query.to_json(vectors=True))) == query
    assert "vector" not in json.loads(query.to_json())
