"""Retraining on the local stack, as an operator starts it: ``imgsearch retrain --wait`` runs the
real workflow on moto (the training job would run in-process; here there is too little data to
get that far), and ``imgsearch feedback simulate`` says what it needs. The whole loop, with a
training job and the rollout it hands over to, is tests/integration/test_retrain.py."""

from __future__ import annotations

import json

import pytest
from stack_support import Seeded, run_cli

pytestmark = pytest.mark.slow


def test_a_run_without_new_data_is_a_skip_and_says_how_to_force_one(seeded_stack: Seeded) -> None:
    status, out, output = run_cli(seeded_stack, "retrain", "--wait")
    assert status == 0, output
    assert "ok Prepare" in out and "skipped: too little new data since the last run" in out
    assert "`imgsearch retrain --force` trains anyway" in out

    status, out, output = run_cli(seeded_stack, "retrain", "--wait", "--force", "--json")
    assert status == 0, output
    answer = json.loads(out)
    assert answer["status"] == "SUCCEEDED"
    assert answer["result"]["status"] == "skipped"  # forced, but too few queries to train on
    assert "too little data to train on" in answer["result"]["reason"]
    assert answer["result"]["trigger"] == "on-demand"


def test_simulated_users_need_the_demo_images(seeded_stack: Seeded) -> None:
    status, _, output = run_cli(seeded_stack, "feedback", "simulate")
    assert status == 1
    assert "no demo images under s3://" in output and "imgsearch local up" in output
