"""``imgsearch retrain``: start a retraining run (on demand), and follow it with ``--wait``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgsearch.core.errors import ImgsearchError
from imgsearch_devkit.cli.common import announce_start, fail, print_json, stack_command
from imgsearch_devkit.cli.pipeline import follow_states
from imgsearch_devkit.cli.target import resolve_target
from imgsearch_devkit.ops.retrain import read_run_report, start_retrain
from imgsearch_devkit.target import Target, TargetError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = stack_command(
        subparsers,
        "retrain",
        run_retrain,
        help="fine-tune the serving model on the feedback, evaluate it, hand a winner over",
        description="Start the retraining workflow: prepare the judged pairs (feedback, "
        "captions, the golden set), fine-tune the serving model on a training job, evaluate the "
        "candidate against it on held-out queries, register it validated or rejected, and start "
        "the model rollout for a validated one. Refused while another run is under way.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="train even if too little new data came in since the last run",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the run (and the rollout it starts) to its end",
    )


def _summary(result: dict[str, Any]) -> str:
    status, reason = result.get("status", ""), result.get("reason", "")
    if status == "validated":
        return f"validated {result['candidate']} (parent {result['champion']}): rollout started"
    if status == "rejected":
        return f"rejected {result['candidate']}: {reason}"
    if status == "skipped":
        return f"skipped: {reason}\n  `imgsearch retrain --force` trains anyway"
    return f"failed at {result.get('step') or '?'}: {reason}"


def run_retrain(args: argparse.Namespace) -> int:
    try:
        target = resolve_target(args)
        execution = start_retrain(target, force=args.force)
    except (TargetError, ImgsearchError) as exc:
        return fail(str(exc))
    except (BotoCoreError, ClientError) as exc:
        return fail(f"cannot start retraining: {exc}")
    if not announce_start(execution, args):
        return 0
    sfn = target.client("stepfunctions")
    try:
        end, states = follow_states(sfn, execution, quiet=args.json)
        output = json.loads(end.get("output") or "{}")
        rollout: dict[str, Any] = {}
        if output.get("rollout"):
            if not args.json:
                print(_summary(output))
                print(f"following the rollout {output['rollout']}", flush=True)
            rollout_end, rollout_states = follow_states(sfn, output["rollout"], quiet=args.json)
            rollout = {
                "execution": output["rollout"],
                "status": rollout_end["status"],
                "states": rollout_states,
                "result": json.loads(rollout_end.get("output") or "{}"),
            }
    except (BotoCoreError, ClientError) as exc:
        return fail(f"lost track of {execution}: {exc}")
    result = {"execution": execution, "status": end["status"], "states": states, "result": output}
    if rollout:
        result["rollout"] = rollout
    if end["status"] != "SUCCEEDED":
        result.update(error=end.get("error", ""), cause=end.get("cause", ""))
    if args.json:
        print_json(result)
    elif end["status"] != "SUCCEEDED":
        report = _failure(target, execution)
        print(report or f"{end['status']}: {end.get('error', '')}", file=sys.stderr)
    elif rollout:
        done = rollout["result"]
        print(
            f"promoted {done.get('candidate')}: index {done.get('version')} serves"
            if rollout["status"] == "SUCCEEDED" and done.get("status") == "promoted"
            else f"the rollout did not promote it: {done.get('reason') or rollout['status']}"
        )
    else:
        print(_summary(output))
    return (
        0
        if end["status"] == "SUCCEEDED" and rollout.get("status", "SUCCEEDED") == "SUCCEEDED"
        else 1
    )


def _failure(target: Target, execution: str) -> str:
    report = read_run_report(target, execution)
    return _summary(report.dump()) if report else ""
