"""Every search answer carries a signed query id and is logged; ``POST /feedback`` takes clicks
and judgments on its results; both reach S3 through the CloudWatch Logs -> Firehose path of
template.yaml (moto), and join back together. A log stream that stalls or fails never fails a
query."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from query_support import Image, demo_model, get, http_event, invoke, make_images, query_stack
from usage_support import create_signing_secret, feedback_event, read_window, usage_log

from imgsearch.usage.join import join
from imgsearch.usage.log import LOGGER_NAME
from imgsearch.usage.records import FeedbackRecord, SearchRecord, decode_vector
from imgsearch.usage.signing import QuerySigner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def images(model) -> list[Image]:
    return make_images(model, 24, seed=5)


@pytest.fixture
def logged(tmp_path: Path, model, images):
    """A stack with a published index, the signing secret and the usage log's path."""
    overrides = {
        "IMGSEARCH_QUERY_SIGNING_SECRET_ARN": "imgsearch-test-query-signing",
        "IMGSEARCH_FEEDBACK_MAX_AGE_SECONDS": "600",
    }
    with query_stack(tmp_path, model, images, overrides) as stack:
        create_signing_secret()
        stack.publish()
        with usage_log(stack.settings.bucket) as stream:
            yield stack, stack.load_handler(), stream


def post_feedback(handler, body: str):
    headers = {"content-type": "application/json"}
    return invoke(handler, http_event("POST", "/feedback", body=body, headers=headers))


def test_each_search_is_logged_with_what_it_showed(logged, images) -> None:
    stack, handler, stream = logged
    text = get(handler, "/search", q="  two red   circles ", k="5").json
    data = images[3].data
    headers = {"content-type": "image/png"}
    image = invoke(handler, http_event("POST", "/search", {"k": "4"}, data, headers)).json
    similar = get(handler, f"/images/{quote(images[0].key, safe='')}/similar", k="3").json
    stream.flush()

    searches = {r.query_id: r for r in read_window(stack.s3, stack.settings.bucket)}
    assert set(searches) == {text["query_id"], image["query_id"], similar["query_id"]}
    for answer in (text, image, similar):
        record = searches[answer["query_id"]]
        assert isinstance(record, SearchRecord)
        assert [(s.key, round(s.score, 5)) for s in record.results] == [
            (r["key"], round(r["score"], 5)) for r in answer["results"]
        ]
        assert (record.model, record.index_version) == (answer["model"], answer["index_version"])
        assert record.latency_ms > 0 and record.offset == 0
        vector = decode_vector(record.vector or "")
        assert vector.shape == (stack.model.dim,)
        assert abs(float(np.linalg.norm(vector.astype(np.float32))) - 1) < 1e-2
    assert searches[text["query_id"]].text == "two red circles"
    assert searches[image["query_id"]].image_sha256 == hashlib.sha256(data).hexdigest()
    assert searches[similar["query_id"]].key == images[0].key
    # The text's logged vector is the one that searched: it finds the same top result.
    top = stack.model.encode_text(["two red circles"])[0]
    assert np.allclose(decode_vector(searches[text["query_id"]].vector), top, atol=2e-3)


def test_feedback_is_taken_and_joins_its_search_at_the_rank_shown(logged) -> None:
    stack, handler, stream = logged
    answer = get(handler, "/search", q="blue square", k="5").json
    second = answer["results"][1]["key"]
    reply = post_feedback(handler, feedback_event(answer["query_id"], second, rank=5))
    assert reply.status == 202, reply.text
    assert reply.json == {"status": "accepted", "query_id": answer["query_id"]}
    again = post_feedback(handler, feedback_event(answer["query_id"], second))
    judged = post_feedback(handler, feedback_event(answer["query_id"], second, "irrelevant"))
    assert again.status == judged.status == 202
    stream.flush()

    records = read_window(stack.s3, stack.settings.bucket)
    assert sum(isinstance(r, FeedbackRecord) for r in records) == 3
    (query,), stats = join(records)
    # Ranked where the search showed it (2), not where the page said (5); the repeat counts once.
    assert [(j.key, j.event, j.rank) for j in query.feedback] == [
        (second, "click", 2),
        (second, "irrelevant", 2),
    ]
    assert (stats.joined, stats.duplicates) == (2, 1)
    assert query.positive_ranks() == [2]


def test_feedback_refuses_forged_stale_and_unknown(logged, images) -> None:
    stack, handler, stream = logged
    answer = get(handler, "/search", q="green star", k="3").json
    query_id, key = answer["query_id"], answer["results"][0]["key"]
    secret = b"a-test-signing-key-of-enough-bytes"
    stale = QuerySigner(secret, 600, clock=lambda: time.time() - 3600).issue()
    other_stack = QuerySigner(b"another-stack-signing-key-bytes!", 600).issue()
    forged = query_id[:-3] + ("AAA" if not query_id.endswith("AAA") else "BBB")

    def refused(body: str, status: int, error: str, reason: str | None = None) -> None:
        reply = post_feedback(handler, body)
        assert reply.status == status, reply.text
        assert reply.json["error"] == error, reply.json
        if reason:
            assert reply.json["details"]["reason"] == reason

    refused(feedback_event(forged, key), 422, "invalid_query_id", "forged")
    refused(feedback_event(other_stack, key), 422, "invalid_query_id", "forged")
    refused(feedback_event(stale, key), 422, "invalid_query_id", "stale")
    refused(feedback_event("not-an-id", key), 422, "invalid_query_id", "malformed")
    refused(feedback_event(query_id, "images/never-uploaded.png"), 422, "unknown_image")
    refused(feedback_event(query_id, key, "liked"), 422, "invalid_parameter")
    refused(feedback_event(query_id, key, rank=0), 422, "invalid_parameter")
    refused("{not json", 400, "bad_request")
    refused('{"query_id": "x", "event": "click"}', 400, "bad_request")
    stream.flush()
    assert not [
        r for r in read_window(stack.s3, stack.settings.bucket) if isinstance(r, FeedbackRecord)
    ]


def test_query_ids_of_a_secretless_process_are_its_own(tmp_path: Path, model, images) -> None:
    """Without the stack's secret a process signs with a key of its own: its ids work on it
    and on no other environment."""
    overrides = {"IMGSEARCH_QUERY_SIGNING_SECRET_ARN": None}
    with query_stack(tmp_path, model, images, overrides) as stack:
        stack.publish()
        first, second = stack.load_handler(), stack.load_handler()
        answer = get(first, "/search", q="red circle", k="2").json
        key = answer["results"][0]["key"]
        assert post_feedback(first, feedback_event(answer["query_id"], key)).status == 202
        assert post_feedback(second, feedback_event(answer["query_id"], key)).status == 422


class _StalledLogs:
    """A CloudWatch Logs client whose PutLogEvents hangs until released (a stalled stream)."""

    class exceptions:  # boto3's shape
        ResourceAlreadyExistsException = RuntimeError

    def __init__(self) -> None:
        self.called = threading.Event()
        self.release = threading.Event()

    def create_log_stream(self, **_: object) -> None:
        return None

    def put_log_events(self, **_: object) -> None:
        self.called.set()
        self.release.wait(timeout=60)


class _FailingLogs(_StalledLogs):
    def put_log_events(self, **_: object) -> None:
        self.called.set()
        raise ConnectionError("the log stream is down")


@pytest.mark.parametrize("logs", [_StalledLogs, _FailingLogs], ids=["stalled", "failing"])
def test_a_stalled_or_failing_log_stream_never_fails_a_query(tmp_path, model, images, logs) -> None:
    from imgsearch_devkit.local.usage_stream import UsageStream

    with query_stack(tmp_path, model, images) as stack:
        stack.publish()
        handler = stack.load_handler()
        client = logs()
        stream = UsageStream(client, {"search": "/q", "feedback": "/q"}, max_queued=5)
        with stream.installed():
            assert get(handler, "/search", q="red circle", k="3").status == 200
            assert client.called.wait(timeout=10)  # the sender is in PutLogEvents now
            replies = [get(handler, "/search", q=f"red circle {n}", k="3") for n in range(30)]
            assert [r.status for r in replies] == [200] * 30
            if logs is _StalledLogs:
                assert stream.dropped >= 30 - 5  # the queue holds 5; the rest were let go
            else:
                assert stream.flush(timeout=10) and stream.failed == 31
            client.release.set()


def test_a_log_handler_that_raises_never_fails_a_query(logged) -> None:
    _, handler, _ = logged

    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise OSError("the log is gone")

    broken = Broken()
    usage = logging.getLogger(LOGGER_NAME)
    usage.addHandler(broken)
    try:
        reply = get(handler, "/search", q="yellow triangle", k="2")
    finally:
        usage.removeHandler(broken)
    assert reply.status == 200, reply.text
