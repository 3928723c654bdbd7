"""No input reaches a 500: hypothesis drives the real handler with requests drawn from the
generated OpenAPI document (every operation, every parameter, values inside and outside their
schemas), plus unknown routes, methods, content types and bodies of every kind."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from query_support import Image, demo_model, http_event, invoke, make_images, query_stack

pytestmark = pytest.mark.slow

EXPECTED = {200, 202, 400, 404, 413, 415, 422}
"""Every status a request may get with an index loaded: success or a client error."""

CONTENT_TYPES = [
    "image/png",
    "image/jpeg",
    "image/webp",
    "image/svg+xml",
    "application/json",
    "application/json; charset=utf-8",
    "application/problem+json",
    "text/plain",
    "multipart/form-data; boundary=xyz",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "",
]


LONE_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
"""JSON events can carry them although no URL can."""


def numbers(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minimum", -10), schema.get("maximum", 10)
    near = st.integers(math.floor(low) - 3, math.ceil(high) + 3)
    odd = st.sampled_from(["nan", "inf", "-inf", "1e309", "0x10", " 5", "", "1.5", "-0", "Ⅻ"])
    return st.one_of(near.map(str), st.floats(allow_nan=True).map(repr), odd, st.text(max_size=8))


def values(schema: dict[str, Any], cursors: list[str]) -> st.SearchStrategy[str]:
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
    if kinds & {"integer", "number"}:
        return numbers(next(s for s in schema.get("anyOf", [schema]) if "type" in s))
    mutated = st.sampled_from(cursors).flatmap(
        lambda c: st.integers(0, len(c) - 1).map(lambda i: c[:i] + "AB"[c[i] == "A"] + c[i + 1 :])
    )
    return st.one_of(
        st.text(max_size=40),
        st.text(LONE_SURROGATES, min_size=1, max_size=4),
        st.text(min_size=900, max_size=1100, alphabet="ab c"),
        st.sampled_from(cursors),
        mutated,
    )


def bodies(images: list[Image]) -> st.SearchStrategy[bytes | str | None]:
    real = st.sampled_from([i.data for i in images])
    truncated = real.flatmap(lambda data: st.integers(1, len(data) - 1).map(lambda n: data[:n]))
    encoded = st.one_of(real, st.binary(max_size=64)).map(lambda b: base64.b64encode(b).decode())
    documents = st.one_of(
        st.fixed_dictionaries({"image": st.one_of(encoded, st.text(max_size=20), st.integers())}),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5), children, max_size=3)
            ),
            max_leaves=8,
        ),
    ).map(json.dumps)
    return st.one_of(
        st.none(),
        real,
        truncated,
        st.binary(max_size=256),
        st.text(max_size=64),
        documents,
        encoded.map(lambda e: "data:image/png;base64," + e),
    )


@pytest.fixture(scope="module")
def images() -> list[Image]:
    model = demo_model()
    return make_images(model, 30, seed=5)


def test_no_request_gets_a_500(tmp_path: Path, images: list[Image]):
    with query_stack(tmp_path, demo_model(), images) as stack:
        stack.publish()
        handler = stack.load_handler()
        spec = invoke(handler, http_event("GET", "/openapi.json")).json
        operations = [
            (path, method.upper(), operation)
            for path, item in spec["paths"].items()
            for method, operation in item.items()
        ]
        cursors = [
            invoke(handler, http_event("GET", "/search", {"q": "red", "k": "3"})).json[
                "next_cursor"
            ]
        ]
        keys = [image.key for image in images]

        @st.composite
        def requests(draw: st.DrawFn) -> dict[str, Any]:
            if draw(st.integers(0, 9)) == 0:  # anything at all
                method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]))
                path = "/" + "/".join(draw(st.lists(st.text(min_size=1, max_size=8), max_size=4)))
                return http_event(method, quote(path), {}, draw(bodies(images)), {})
            path, method, operation = draw(st.sampled_from(operations))
            query: dict[str, str] = {}
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    key = draw(
                        st.one_of(
                            st.sampled_from(keys),
                            st.text(min_size=1, max_size=30),
                            st.text(LONE_SURROGATES, min_size=1, max_size=3),
                        )
                    )
                    segment = quote(key, safe="", errors="surrogatepass")
                    path = path.replace("{" + parameter["name"] + "}", segment)
                elif draw(st.booleans()) or parameter.get("required"):
                    query[parameter["name"]] = draw(values(parameter["schema"], cursors))
            query.update(
                draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2))
            )
            headers = {"content-type": draw(st.sampled_from(CONTENT_TYPES))}
            body = draw(bodies(images)) if method == "POST" else None
            return http_event(method, path, query, body, headers)

        seen: set[int] = set()

        @settings(
            max_examples=400,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests())
        def check(event: dict[str, Any]) -> None:
            reply = invoke(handler, event)
            seen.add(reply.status)
            assert reply.status in EXPECTED, (event["rawPath"], reply.status, reply.text[:300])
            if reply.status >= 400:
                body = reply.json
                assert body["status"] == reply.status and body["error"] and body["message"]

        check()
    # The fuzzer reached both sides: successes and several kinds of refusal.
    assert 200 in seen and len(seen & {400, 404, 413, 415, 422}) >= 4, seen
