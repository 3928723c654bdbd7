"""``imgsearch backfill`` against the running local stack: the same state machine as on AWS,
its Distributed Map run by moto, found through the state file."""

from __future__ import annotations

import json

import pytest
from stack_support import Seeded, run_cli

pytestmark = pytest.mark.slow


def test_a_backfill_fills_in_what_the_table_lacks_and_shows_in_history(
    seeded_stack: Seeded,
) -> None:
    dynamodb = seeded_stack.client("dynamodb")
    table = seeded_stack.target.table
    items = [i for i in dynamodb.scan(TableName=table)["Items"] if i["status"]["S"] == "ok"]
    # Images that were in the bucket before the stack: their items are not in the table.
    missing = items[:3]
    for item in missing:
        dynamodb.delete_item(TableName=table, Key={"key": item["key"], "model": item["model"]})

    status, out, output = run_cli(seeded_stack, "backfill", "--wait", "--json", "--chunk-size", "4")
    assert status == 0, output
    result = json.loads(out)
    report = result["report"]
    assert report["status"] == "succeeded", report
    assert report["embedded"] == len(missing)
    assert report["skipped"].get("unchanged", 0) >= len(items) - len(missing)
    assert report["failed"] == 0
    held = {i["key"]["S"] for i in dynamodb.scan(TableName=table)["Items"]}
    assert {i["key"]["S"] for i in missing} <= held

    status, out, output = run_cli(seeded_stack, "backfill", "history", "--json")
    assert status == 0, output
    runs = json.loads(out)["runs"]
    assert runs[0]["name"] == result["run"] and runs[0]["status"] == "succeeded"
    assert runs[0]["embedded"] == len(missing)

    status, _, output = run_cli(seeded_stack, "backfill", "--prefix", "elsewhere/", "--wait")
    assert status == 1
    assert "outside the image prefix" in output
