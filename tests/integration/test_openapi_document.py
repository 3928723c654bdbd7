"""The OpenAPI document: what it promises, and that ``docs/openapi.json`` (committed, for
generating clients) is exactly what the query function serves with the default settings.

Regenerate the committed document after changing the API::

    IMGSEARCH_WRITE_OPENAPI=1 .venv/bin/pytest -q tests/integration/test_openapi_document.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from query_support import demo_model, http_event, invoke, query_stack

pytestmark = pytest.mark.slow

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
DEFAULTS = dict.fromkeys(
    ("IMGSEARCH_MAX_UPLOAD_BYTES", "IMGSEARCH_MAX_K", "IMGSEARCH_DEFAULT_K"), None
)
"""The test stack's own API settings, removed: the committed document shows the defaults."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp_path = tmp_path_factory.mktemp("openapi")
    with query_stack(tmp_path, demo_model(), [], DEFAULTS) as stack:
        reply = invoke(stack.load_handler(), http_event("GET", "/openapi.json"))
    assert reply.status == 200
    return reply.json


def test_every_operation_documents_its_answer_and_the_error_envelope(served: dict) -> None:
    operations = [(p, m, o) for p, item in served["paths"].items() for m, o in item.items()]
    assert len(operations) == 7  # three searches, /recent, /feedback, /health, /version
    for path, method, operation in operations:
        responses = operation["responses"]
        answer = "202" if path == "/feedback" else "200"
        ok = responses[answer]["content"]["application/json"]["schema"]
        assert "$ref" in ok, (method, path)
        for status, response in responses.items():
            if status != answer:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    search = served["paths"]["/search"]["get"]
    q = next(p for p in search["parameters"] if p["name"] == "q")
    assert q["required"] is True
    assert q["schema"]["minLength"] == 1 and q["schema"]["pattern"] == r"\S"  # no empty q
    assert "400" in served["paths"]["/images/{key}/similar"]["get"]["responses"]
    feedback = served["paths"]["/feedback"]["post"]
    body = feedback["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"query_id", "key", "event"}
    assert body["properties"]["event"]["enum"] == ["click", "relevant", "irrelevant"]
    assert {"400", "413", "415", "422"} <= set(feedback["responses"])


def test_the_committed_document_is_what_the_function_serves(served: dict) -> None:
    if os.environ.get("IMGSEARCH_WRITE_OPENAPI"):
        DOCUMENT.write_text(json.dumps(served, indent=2, ensure_ascii=False) + "\n", "utf-8")
    assert DOCUMENT.is_file(), "docs/openapi.json is missing: regenerate it (see this module)"
    assert json.loads(DOCUMENT.read_text("utf-8")) == served, (
        "docs/openapi.json differs from the served document: regenerate it (see this module)"
    )
