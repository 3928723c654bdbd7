"""The query function end to end on moto: the real handler (``query.app``), real payload 2.0
events, indexes published as the pipeline publishes them, images embedded by the demo model."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from query_support import (
    BUCKET,
    Image,
    Stack,
    demo_model,
    get,
    http_event,
    invoke,
    make_images,
    publish_index,
    query_stack,
    tombstone,
)

from imgsearch.catalog.layout import KEYS_FILE, index_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def images(model) -> list[Image]:
    return make_images(model, 60, seed=11)


@pytest.fixture
def stack(tmp_path: Path, model, images):
    with query_stack(tmp_path, model, images) as stack:
        yield stack


def post_png(handler, data: bytes, k: int):
    """An image search with the raw PNG as the body."""
    return invoke(
        handler, http_event("POST", "/search", {"k": str(k)}, data, {"content-type": "image/png"})
    )


def similar_path(key: str) -> str:
    return f"/images/{quote(key, safe='')}/similar"


def swap(handler, stack: Stack, version: str) -> None:
    """Let the refresh interval pass, let a request start the check, wait for the swap."""
    time.sleep(stack.settings.index.refresh_seconds + 0.05)
    assert get(handler, "/version").status == 200  # starts the background check
    handler.service.server.wait(timeout=30)
    assert get(handler, "/version").json["index_version"] == version


def json_lines(capsys) -> list[dict]:
    """What the handler printed: Powertools logs and EMF metrics are one JSON object a line."""
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def assert_error(reply, status: int, error: str | None = None) -> None:
    assert reply.status == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json
    assert body["status"] == status and body["message"]
    if error:
        assert body["error"] == error, body


# -- no index ----------------------------------------------------------------------------------


def test_before_any_index_searches_answer_503_and_health_says_so(stack):
    handler = stack.load_handler()

    assert_error(get(handler, "/search", q="red circle"), 503, "no_index")
    post = http_event(
        "POST", "/search", body=stack.images[0].data, headers={"content-type": "image/png"}
    )
    assert_error(invoke(handler, post), 503, "no_index")
    assert_error(get(handler, similar_path(stack.images[0].key)), 503, "no_index")

    health = get(handler, "/health")
    assert health.status == 200
    assert health.json == {
        "status": "no_index",
        "index_loaded": False,
        "index_version": None,
        "model": stack.model_id,
    }
    version = get(handler, "/version").json
    assert version["model"] == stack.model_id and version["index_version"] is None


# -- the three searches ------------------------------------------------------------------------


def test_text_search_returns_ranked_results_with_presigned_urls(stack):
    current = stack.publish()
    handler = stack.load_handler()

    reply = get(handler, "/search", q="a red circle", k="5")

    assert reply.status == 200, reply.text
    body = reply.json
    assert body["index_version"] == current.version
    assert body["model"] == stack.model_id and body["k"] == 5
    results = body["results"]
    assert len(results) == 5
    keys = {image.key for image in stack.images}
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for result in results:
        assert result["key"] in keys
        url = urlsplit(result["url"])
        assert BUCKET in url.netloc and url.path.endswith(quote(result["key"]))
        params = parse_qs(url.query)
        assert params["X-Amz-Expires"] == [str(stack.settings.api.presign_seconds)]
        assert "X-Amz-Signature" in params
    # The demo model knows colours and shapes: most of the top hits are red circles.
    by_key = {image.key: image.scene for image in stack.images}
    red_circles = [r for r in results if by_key[r["key"]].kind == ("red", "circle")]
    assert len(red_circles) >= 1
    assert by_key[results[0]["key"]].colour == "red"

    default = get(handler, "/search", q="a red circle").json
    assert len(default["results"]) == stack.settings.api.default_k


def test_image_search_accepts_raw_bytes_and_json_base64(stack):
    stack.publish()
    handler = stack.load_handler()
    target = stack.images[7]

    raw = post_png(handler, target.data, 3)
    assert raw.status == 200, raw.text
    assert raw.json["results"][0]["key"] == target.key
    assert raw.json["results"][0]["score"] > 0.98

    encoded = base64.b64encode(target.data).decode()
    for image in (encoded, "data:image/png;base64," + encoded):
        as_json = invoke(
            handler,
            http_event(
                "POST",
                "/search",
                {"k": "3"},
                json.dumps({"image": image}),
                {"content-type": "application/json"},
            ),
        )
        assert as_json.status == 200, as_json.text
        assert as_json.json["results"] == raw.json["results"]


def test_similar_uses_the_stored_vector_and_leaves_the_image_out(stack):
    indexed, later = stack.images[:50], stack.images[50]
    stack.publish(indexed)
    handler = stack.load_handler()
    target = indexed[3]

    reply = get(handler, similar_path(target.key), k="5")
    assert reply.status == 200, reply.text
    keys = [r["key"] for r in reply.json["results"]]
    assert len(keys) == 5 and target.key not in keys
    query = post_png(handler, target.data, 6).json
    assert keys == [r["key"] for r in query["results"] if r["key"] != target.key][:5]

    # Uploaded after the build: its vector comes from the embeddings table.
    newer = get(handler, similar_path(later.key), k="5")
    assert newer.status == 200, newer.text
    assert later.key not in [r["key"] for r in newer.json["results"]]

    assert_error(get(handler, similar_path("images/never-uploaded.png")), 404, "not_found")


def test_a_usearch_i8_index_serves_with_cosine_scores(stack):
    """A version of the other engine (current.json names it) serves beside the configured one,
    and the query side puts vectors in the form of the index's own scalar type."""
    index = dataclasses.replace(stack.settings.index, engine="usearch", dtype="i8")
    publish_index(
        stack.s3, dataclasses.replace(stack.settings, index=index), stack.model_id, stack.images
    )
    handler = stack.load_handler()
    target = stack.images[7]

    found = post_png(handler, target.data, 3)
    assert found.status == 200, found.text
    assert found.json["results"][0]["key"] == target.key
    assert found.json["results"][0]["score"] > 0.98
    similar = get(handler, similar_path(target.key), k="5").json["results"]
    assert len(similar) == 5 and target.key not in [r["key"] for r in similar]
    assert similar[0]["score"] < found.json["results"][0]["score"]


def test_each_version_searches_at_the_effort_validate_chose(stack):
    stack.publish(expansion_search=40)
    handler = stack.load_handler()
    server = handler.service.server
    assert server.require().index.expansion_search == 40
    stack.publish()  # a version published before Validate chose: the configured effort
    assert server.refresh()
    assert server.require().index.expansion_search == stack.settings.index.expansion_search == 512


# -- deleted images ----------------------------------------------------------------------------


def test_images_deleted_after_the_build_never_appear(stack):
    stack.publish()
    handler = stack.load_handler()
    target = stack.images[12]
    query = http_event("POST", "/search", {"k": "10"}, target.data, {"content-type": "image/png"})
    assert invoke(handler, query).json["results"][0]["key"] == target.key

    stack.store.put(tombstone(stack.model_id, target.key))  # what the embed function writes

    after = invoke(handler, query)
    assert after.status == 200
    assert target.key not in [r["key"] for r in after.json["results"]]
    assert len(after.json["results"]) == 10  # the page is refilled from deeper hits
    assert_error(get(handler, similar_path(target.key)), 404, "not_found")
    for image in [i for i in stack.images[:20] if i is not target]:
        keys = [r["key"] for r in get(handler, similar_path(image.key), k="20").json["results"]]
        assert target.key not in keys


# -- pagination --------------------------------------------------------------------------------


def test_pages_are_stable_within_a_version_and_refused_across_versions(stack):
    stack.publish()
    handler = stack.load_handler()

    seen: list[dict] = []
    cursor, pages = None, []
    while True:
        query = {"q": "blue squares", "k": "7"} | ({"cursor": cursor} if cursor else {})
        reply = get(handler, "/search", **query)
        assert reply.status == 200, reply.text
        pages.append((query, reply.json))
        seen.extend(reply.json["results"])
        cursor = reply.json["next_cursor"]
        if not cursor:
            break
    keys = [r["key"] for r in seen]
    assert len(keys) == len(set(keys)) == len(stack.images)  # every image once
    scores = [r["score"] for r in seen]
    assert scores == sorted(scores, reverse=True)
    for query, body in pages:  # asking again gives the very same page, under its own id
        again = get(handler, "/search", **query).json
        assert again.pop("query_id") != body["query_id"]
        assert again == {k: v for k, v in body.items() if k != "query_id"}

    second_page_query = pages[1][0]
    assert_error(
        get(handler, "/search", **(second_page_query | {"q": "green stars"})), 422, "invalid_cursor"
    )
    assert_error(get(handler, "/search", q="x", cursor="not-a-cursor"), 422, "invalid_cursor")

    new = stack.publish(stack.images[:40])
    swap(handler, stack, new.version)
    stale = get(handler, "/search", **second_page_query)
    assert_error(stale, 422, "invalid_cursor")
    assert new.version in stale.json["message"]


def test_min_score_cuts_the_results(stack):
    stack.publish()
    handler = stack.load_handler()
    target = stack.images[0]

    reply = get(handler, similar_path(target.key), k="50", min_score="0.9")
    assert reply.status == 200
    assert all(r["score"] >= 0.9 for r in reply.json["results"])
    everything = get(handler, similar_path(target.key), k="50").json["results"]
    assert [r for r in everything if r["score"] >= 0.9] == reply.json["results"]


# -- hot swap ----------------------------------------------------------------------------------


def test_a_new_version_is_swapped_in_while_requests_keep_theirs(stack):
    first = stack.publish(stack.images[:30])
    handler = stack.load_handler()
    service = handler.service
    old = service.server.require()
    assert get(handler, "/version").json["image_count"] == 30

    second = stack.publish()
    errors: list[str] = []
    stop = threading.Event()

    def search_with_the_old_version() -> None:
        # A request in flight holds the Served it started with, across the swap.
        while not stop.is_set():
            page = service.engine.text(lambda: old, "purple star", 5, None, None)
            if len(page.hits) != 5 or page.served.version != first.version:
                errors.append(f"{len(page.hits)} hits from {page.served.version}")

    worker = threading.Thread(target=search_with_the_old_version)
    worker.start()
    try:
        swap(handler, stack, second.version)
    finally:
        stop.set()
        worker.join()
    assert errors == []
    assert not old.directory.exists()  # the old files are gone, the mapping still worked
    assert get(handler, "/version").json["image_count"] == len(stack.images)
    late = stack.images[45]
    reply = post_png(handler, late.data, 1)
    assert reply.json["results"][0]["key"] == late.key
    assert reply.json["index_version"] == second.version


@pytest.mark.parametrize(
    "broken",
    [
        {index_file("faiss"): b"not a faiss index"},
        {KEYS_FILE: b"IMGSKEY1" + b"\x05" + b"\x00" * 7},
    ],
    ids=["corrupt-index", "truncated-keys"],
)
def test_a_broken_new_version_keeps_the_old_one_serving(stack, capsys, broken):
    first = stack.publish()
    handler = stack.load_handler()
    capsys.readouterr()

    bad = stack.publish(files=broken)
    time.sleep(stack.settings.index.refresh_seconds + 0.05)
    assert get(handler, "/search", q="red circle").status == 200
    handler.service.server.wait(timeout=30)

    reply = get(handler, "/search", q="red circle")
    assert reply.status == 200 and reply.json["index_version"] == first.version
    assert get(handler, "/version").json["index_version"] == first.version
    logged = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    errors = [line for line in logged if line.get("level") == "ERROR"]
    assert errors and bad.version in json.dumps(errors)


def test_an_index_of_another_model_is_refused_with_503(stack):
    publish_index(stack.s3, stack.settings, "other-clip@9", stack.images)
    handler = stack.load_handler()

    reply = get(handler, "/search", q="red circle")
    assert_error(reply, 503, "no_index")
    assert "other-clip@9" in reply.json["message"]
    assert get(handler, "/health").json["index_loaded"] is False


# -- bad input ---------------------------------------------------------------------------------

TOO_BIG = 200_000 + 1  # IMGSEARCH_MAX_UPLOAD_BYTES in the stack, plus one


BAD_INPUTS = [
    # method, path, query, body, content type, status, error code
    ("GET", "/search", {"q": ""}, None, None, 400, "bad_request"),
    ("GET", "/search", {"q": "   "}, None, None, 400, "bad_request"),
    ("GET", "/search", {"q": "\ud800 lone surrogate"}, None, None, 400, "bad_request"),
    ("GET", "/search", {}, None, None, 400, "bad_request"),
    ("GET", "/search", {"q": "x" * 1001}, None, None, 422, "invalid_parameter"),
    ("GET", "/search", {"q": "cat", "k": "0"}, None, None, 422, "invalid_parameter"),
    ("GET", "/search", {"q": "cat", "k": "51"}, None, None, 422, "invalid_parameter"),
    ("GET", "/search", {"q": "cat", "k": "ten"}, None, None, 422, "invalid_parameter"),
    ("GET", "/search", {"q": "cat", "min_score": "2"}, None, None, 422, "invalid_parameter"),
    ("GET", "/search", {"q": "cat", "min_score": "nan"}, None, None, 422, None),
    ("GET", "/search", {"q": "cat", "cursor": "@@@"}, None, None, 422, "invalid_cursor"),
    ("POST", "/search", {}, "{not json", "application/json", 400, "bad_request"),
    ("POST", "/search", {}, '["image"]', "application/json", 400, "bad_request"),
    ("POST", "/search", {}, '{"image": 5}', "application/json", 400, "bad_request"),
    ("POST", "/search", {}, '{"image": "***"}', "application/json", 400, "bad_request"),
    ("POST", "/search", {}, b"", "image/png", 400, "bad_request"),
    ("POST", "/search", {}, b"\0" * TOO_BIG, "image/png", 413, "too_large"),
    (
        "POST",
        "/search",
        {},
        json.dumps({"image": base64.b64encode(b"\0" * TOO_BIG).decode()}),
        "application/json",
        413,
        "too_large",
    ),
    ("POST", "/search", {}, b"GIF89a-not-really", "image/gif", 415, "unsupported_media_type"),
    ("POST", "/search", {}, "hello", "text/plain", 415, "unsupported_media_type"),
    ("POST", "/search", {}, b"\x89PNG", None, 415, "unsupported_media_type"),
    ("POST", "/search", {"k": "-1"}, b"\x89PNG", "image/png", 422, "invalid_parameter"),
    ("GET", "/images/nothing.png/similar", {"k": "101"}, None, None, 422, None),
    ("GET", "/nowhere", {}, None, None, 404, "not_found"),
    ("DELETE", "/search", {}, None, None, 405, "method_not_allowed"),
]


def test_bad_input_gets_the_right_status_and_a_json_error(stack):
    stack.publish()
    handler = stack.load_handler()
    failures = []
    for method, path, query, body, content_type, status, error in BAD_INPUTS:
        headers = {"content-type": content_type} if content_type else {}
        if content_type is None and body is not None:
            headers = {"content-type": "application/octet-stream"}
        reply = invoke(handler, http_event(method, path, query, body, headers))
        try:
            assert_error(reply, status, error)
        except AssertionError:
            failures.append(f"{method} {path} {query} -> {reply.status} {reply.text[:200]}")
    assert failures == []


# -- documents, page, observability ------------------------------------------------------------


def test_openapi_document_swagger_ui_and_search_page(stack):
    handler = stack.load_handler()

    document = get(handler, "/openapi.json")
    assert document.status == 200
    spec = document.json
    assert set(spec["paths"]) >= {"/search", "/images/{key}/similar", "/health", "/version"}
    assert set(spec["paths"]["/search"]) == {"get", "post"}
    upload = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert set(upload) == {"image/*", "application/json"}
    k = next(p for p in spec["paths"]["/search"]["get"]["parameters"] if p["name"] == "k")
    assert k["schema"]["maximum"] == 50 and k["schema"]["minimum"] == 1
    assert "413" in spec["paths"]["/search"]["post"]["responses"]

    docs = get(handler, "/docs")
    assert docs.status == 200 and "swagger" in docs.text.lower()

    page = get(handler, "/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    for selector in ('id="q"', 'id="search-form"', 'id="results"', 'id="upload"', 'id="footer"'):
        assert selector in page.text


def test_logs_carry_the_request_id_and_metrics_are_per_route(stack, capsys):
    stack.publish()
    handler = stack.load_handler()
    capsys.readouterr()

    event = http_event("GET", "/search", {"q": "green cross", "k": "4"})
    assert invoke(handler, event).status == 200
    bad = http_event("GET", "/search", {"q": "green cross", "k": "0"})
    assert invoke(handler, bad).status == 422
    cursor = http_event("GET", "/search", {"q": "x", "cursor": "zz"})
    assert invoke(handler, cursor).status == 422

    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    metrics = [line for line in lines if "_aws" in line]
    assert any("ColdStart" in line for line in metrics)
    searches = [line for line in metrics if line.get("route") == "GET /search"]
    assert len(searches) == 3
    assert searches[0]["Results"] == [4.0] and searches[0]["ClientErrors"] == [0.0]
    assert searches[0]["Latency"][0] > 0
    assert searches[1]["ClientErrors"] == [1.0] and searches[2]["ClientErrors"] == [1.0]

    # A refused request is logged with the API Gateway request id as the correlation id.
    stack.store.put(tombstone(stack.model_id, stack.images[0].key))
    request = http_event("GET", similar_path(stack.images[0].key))
    invoke(handler, request)
    logged = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    refused = [line for line in logged if line.get("message", "").startswith("request refused")]
    assert refused and refused[0]["correlation_id"] == request["requestContext"]["requestId"]
