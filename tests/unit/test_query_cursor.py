"""Pagination cursors: round trip, and every kind of bad cursor is an InvalidCursor (HTTP 422)."""

from __future__ import annotations

import base64
import json

import pytest

from imgsearch.query.cursor import Cursor, fingerprint
from imgsearch.query.deletions import tombstones_since
from imgsearch.query.errors import InvalidCursor

VERSION = "20240601T120000Z-ab12cd"
QUERY = fingerprint("text", "two red circles")


def test_a_cursor_round_trips_exactly():
    cursor = Cursor(VERSION, QUERY, returned=20, score=0.1 + 0.2, id=2**63 - 1)
    assert Cursor.decode(cursor.encode(), VERSION, QUERY) == cursor


def test_fingerprints_differ_by_kind_and_query():
    assert fingerprint("text", "a") != fingerprint("image", "a") != fingerprint("text", "b")
    assert fingerprint("image", b"\x00\x01") == fingerprint("image", b"\x00\x01")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "!!!",
        "a" * 600,
        base64.urlsafe_b64encode(b"[1,2,3]").decode(),
        # a valid layout with a wrong checksum
        base64.urlsafe_b64encode(json.dumps([VERSION, QUERY, 5, 0.5, 1]).encode() + b"xxxx")
        .decode()
        .rstrip("="),
    ],
)
def test_malformed_cursors_are_refused(token):
    with pytest.raises(InvalidCursor):
        Cursor.decode(token, VERSION, QUERY)


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        (Cursor("20240101T000000Z-000000", QUERY, 5, 0.5, 1), "index version"),
        (Cursor(VERSION, fingerprint("text", "blue"), 5, 0.5, 1), "another query"),
        (Cursor(VERSION, QUERY, 0, 0.5, 1), "malformed"),
        (Cursor(VERSION, QUERY, 5, float("nan"), 1), "malformed"),
    ],
)
def test_cursors_of_another_version_or_query_or_with_bad_values_are_refused(cursor, message):
    with pytest.raises(InvalidCursor, match=message):
        Cursor.decode(cursor.encode(), VERSION, QUERY)


def test_tombstones_are_read_from_before_the_snapshot():
    assert tombstones_since("2024-06-01T12:30:00.000000Z") == "2024-06-01T11:30:00.000000Z"
    assert tombstones_since("not a time") == ""
