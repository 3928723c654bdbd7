"""The query function's answers to what a fuzzer and a new user sent (issue 13): input checked
before the index is required, the first index served by the next request, invalid UTF-8, library
text kept out of messages, a pixel and a decode-time budget, one upload limit, 405s."""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image as PilImage
from query_support import (
    BUCKET,
    Image,
    demo_model,
    get,
    http_event,
    invoke,
    make_images,
    query_stack,
)

from imgsearch.core.config import Settings
from imgsearch.query.deletions import DeletedKeys
from imgsearch.query.fresh import FreshVectors
from imgsearch.query.serving import IndexServer

pytestmark = pytest.mark.slow

LAMBDA_EVENT_LIMIT = 6 * 1024 * 1024
"""Lambda's synchronous invocation payload limit, which the whole event must fit."""


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def images(model) -> list[Image]:
    return make_images(model, 12, seed=13)


@pytest.fixture
def stack(tmp_path: Path, model, images):
    with query_stack(tmp_path, model, images) as stack:
        yield stack


def post(handler, body: bytes | str, content_type: str):
    return invoke(handler, http_event("POST", "/search", {}, body, {"content-type": content_type}))


def expect(reply, status: int, error: str) -> dict:
    assert reply.status == status, reply.text
    body = reply.json
    assert body["status"] == status and body["error"] == error and body["message"], body
    return body


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with (almost) no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# -- input is checked before the index is required ---------------------------------------------


def test_bad_input_gets_its_4xx_while_no_index_is_served(stack):
    handler = stack.load_handler()
    assert get(handler, "/health").json["index_loaded"] is False

    expect(get(handler, "/search", q=""), 400, "bad_request")
    expect(get(handler, "/search", q="   "), 400, "bad_request")
    expect(get(handler, "/search", q="red", cursor="@@@"), 422, "invalid_cursor")
    expect(post(handler, b"garbage, not an image", "image/png"), 415, "unsupported_media_type")
    expect(post(handler, "{not json", "application/json"), 400, "bad_request")
    expect(get(handler, "/images/images%2Fnobody.png/similar"), 404, "not_found")
    # Valid input still needs an index.
    expect(get(handler, "/search", q="red circle"), 503, "no_index")
    expect(post(handler, stack.images[0].data, "image/png"), 503, "no_index")
    known = quote(stack.images[0].key, safe="")
    expect(get(handler, f"/images/{known}/similar"), 503, "no_index")


# -- the first index and every swap ------------------------------------------------------------


def test_the_first_index_is_served_by_the_next_request_on_any_route(tmp_path, model, images):
    # The background refresh interval is a minute: only the unserved check can pick it up.
    with query_stack(tmp_path, model, images, {"IMGSEARCH_INDEX_REFRESH_SECONDS": "60"}) as stack:
        handler = stack.load_handler()
        assert get(handler, "/health").json["status"] == "no_index"
        current = stack.publish()
        time.sleep(1.05)
        health = get(handler, "/health").json
        assert health["status"] == "ok" and health["index_version"] == current.version
        assert get(handler, "/search", q="red circle").status == 200


def _server(stack, s3=None, index=None, models=None, **options) -> IndexServer:
    """An ``IndexServer`` on the stack, reading its deleted and fresh sets at every check."""
    return IndexServer(
        s3 or stack.s3,
        BUCKET,
        index or stack.settings.index,
        models or (lambda model_id: stack.model),
        lambda current: DeletedKeys(stack.store, current.model, current.built_at, 0),
        lambda current, model: FreshVectors(
            stack.store, current.model, current.built_at, model.dim, 0, 10
        ),
        **options,
    )


def test_while_nothing_is_served_current_json_is_read_at_most_once_a_second(stack):
    reads: list[float] = []
    now = [100.0]

    class CountingS3:
        """Counts the reads of current.json (a version's own files are read once, at load)."""

        def __getattr__(self, name):
            if name != "get_object":
                return getattr(stack.s3, name)

            def get_object(**request):
                if request["Key"].endswith("current.json"):
                    reads.append(now[0])
                return stack.s3.get_object(**request)

            return get_object

    server = _server(stack, s3=CountingS3(), clock=lambda: now[0])
    server.refresh_if_due()  # never checked: checks at once, in the request
    assert len(reads) == 1 and server.served is None
    now[0] += 0.5
    server.refresh_if_due()
    assert len(reads) == 1  # rate-limited
    current = stack.publish()
    now[0] += 0.6
    server.refresh_if_due()
    assert len(reads) == 2
    assert server.served is not None and server.served.version == current.version


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux")
def test_a_background_refresh_and_what_it_starts_run_at_the_configured_priority(stack):
    seen: dict[str, int] = {}
    now = [100.0]

    def models(model_id: str):
        seen["refresh"] = _nice()
        child = threading.Thread(target=lambda: seen.update(started=_nice()))
        child.start()
        child.join()
        return stack.model

    assert stack.settings.index.refresh_nice == 0  # the default: the requests' priority
    index = dataclasses.replace(stack.settings.index, refresh_nice=19)
    server = _server(stack, index=index, models=models, clock=lambda: now[0])
    requests = _nice()
    stack.publish()
    server.refresh_if_due()  # nothing served yet: in the request, at its priority
    assert server.served is not None and seen["refresh"] == requests
    second = stack.publish()
    now[0] += stack.settings.index.refresh_seconds
    server.refresh_if_due()
    server.wait(30)
    assert server.served.version == second.version
    assert seen == {"refresh": 19, "started": 19}  # what it starts inherits it
    assert _nice() == requests


def test_a_due_refresh_is_deferred_once_and_swaps_when_the_deferred_work_runs(stack):
    deferred: list = []
    now = [100.0]
    server = _server(stack, clock=lambda: now[0], defer=deferred.append)
    first = stack.publish()
    server.refresh_if_due()  # nothing served yet: in the request, never deferred
    assert server.served is not None and server.served.version == first.version
    assert deferred == []
    second = stack.publish()
    now[0] += stack.settings.index.refresh_seconds
    server.refresh_if_due()
    server.refresh_if_due()  # already deferred: not twice
    assert len(deferred) == 1 and server.served.version == first.version
    deferred.pop()()  # the extension runs it after the response
    assert server.served.version == second.version
    server.refresh_if_due()  # just checked: not due
    assert deferred == []
    now[0] += stack.settings.index.refresh_seconds
    server.refresh_if_due()
    assert len(deferred) == 1


def test_refresh_now_serves_a_new_version_at_once(tmp_path, model, images):
    with query_stack(tmp_path, model, images, {"IMGSEARCH_INDEX_REFRESH_SECONDS": "60"}) as stack:
        stack.publish()
        handler = stack.load_handler()
        second = stack.publish()
        assert handler.service.refresh_now() is True
        assert get(handler, "/version").json["index_version"] == second.version
        assert handler.service.refresh_now() is False  # nothing newer


# -- text, messages, methods -------------------------------------------------------------------


def test_query_text_that_is_not_utf8_is_refused(stack):
    stack.publish()
    handler = stack.load_handler()
    event = http_event("GET", "/search", {"q": "\ufffd\ufffd"})
    event["rawQueryString"] = "q=%FF%FE"  # what the client sent; the parameters are decoded
    body = expect(invoke(handler, event), 400, "bad_request")
    assert "UTF-8" in body["message"]
    similar = http_event("GET", "/images/%FF%FE/similar")
    expect(invoke(handler, similar), 400, "bad_request")


def test_library_text_stays_out_of_error_messages(stack):
    stack.publish()
    handler = stack.load_handler()
    deep = post(handler, "[" * 100_000 + "]" * 100_000, "application/json")
    message = expect(deep, 400, "bad_request")["message"]
    assert "recursion" not in message and "nested" in message

    bomb = expect(post(handler, png_header_only(20_000, 20_000), "image/png"), 413, "too_large")
    assert "bomb" not in bomb["message"] and "DOS" not in bomb["message"]
    assert "pixels, limit" in bomb["message"]

    garbage = post(handler, b"GIF89a-not-really", "image/gif")
    garbage = expect(garbage, 415, "unsupported_media_type")
    assert "cannot identify" not in garbage["message"]
    base64_error = expect(post(handler, '{"image": "a"}', "application/json"), 400, "bad_request")
    assert "padding" not in base64_error["message"].lower()


def test_a_known_path_with_another_method_gets_405_and_allow(stack):
    handler = stack.load_handler()
    reply = invoke(handler, http_event("DELETE", "/search"))
    expect(reply, 405, "method_not_allowed")
    assert reply.headers["Allow"] == "GET, POST"
    reply = invoke(handler, http_event("PUT", "/images/images%2Fa.png/similar"))
    expect(reply, 405, "method_not_allowed")
    assert reply.headers["Allow"] == "GET"
    expect(invoke(handler, http_event("DELETE", "/nowhere")), 404, "not_found")


# -- upload, pixel and decode budgets ----------------------------------------------------------


def test_the_default_upload_limit_fits_a_lambda_event_after_base64():
    limit = Settings.from_env({}).api.max_upload_bytes
    encoded = -(-limit // 3) * 4  # base64 of the largest accepted raw body
    headroom = 64 * 1024  # the rest of the event: headers, request context
    assert encoded + headroom <= LAMBDA_EVENT_LIMIT
    assert limit >= 4 * 1000 * 1000  # and still about 4 MB of image


def test_a_huge_flat_png_is_refused_from_its_header(tmp_path, model, images):
    flat = io.BytesIO()
    PilImage.new("L", (7990, 7990), 128).save(flat, "PNG")
    overrides = {"IMGSEARCH_MAX_UPLOAD_BYTES": None}  # the default limit
    with query_stack(tmp_path, model, images, overrides) as stack:
        stack.publish()
        handler = stack.load_handler()
        started = time.perf_counter()
        body = expect(post(handler, flat.getvalue(), "image/png"), 413, "too_large")
        elapsed = time.perf_counter() - started
    assert "7990x7990" in body["message"]
    assert body["details"]["limit"] == Settings.from_env({}).api.max_image_pixels
    assert elapsed < 0.5, elapsed  # refused from the header: no decoding


def test_a_decode_over_the_time_budget_gets_422(tmp_path, model, images):
    overrides = {"IMGSEARCH_QUERY_DECODE_SECONDS": "0.000001"}
    with query_stack(tmp_path, model, images, overrides) as stack:
        stack.publish()
        handler = stack.load_handler()
        body = expect(post(handler, stack.images[0].data, "image/png"), 422, "too_costly")
    assert "decode" in body["message"]
