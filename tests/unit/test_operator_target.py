"""Where the operator commands point: the state file found as git finds its repository, and a
state file that a second local stack may not take from a running one."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from imgsearch_devkit.cli import build_parser, main
from imgsearch_devkit.target import (
    LOCAL_STATE_FILE,
    STATE_VARIABLE,
    Target,
    TargetError,
    claim_state_file,
    find_state_file,
    state_file_alive,
)


def write_state(path: Path, target: Target) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(target.to_json(), encoding="utf-8")
    return path


@pytest.fixture
def listening() -> Iterator[str]:
    """An endpoint that accepts connections, as a running stack's would."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def closed_endpoint() -> str:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def local(endpoint: str, bucket: str = "b") -> Target:
    return Target(region="us-east-1", bucket=bucket, table="t", aws_endpoint=endpoint)


def test_the_state_file_is_found_from_a_subfolder(tmp_path: Path) -> None:
    state = write_state(tmp_path / LOCAL_STATE_FILE, local("http://127.0.0.1:5000"))
    deep = tmp_path / "photos" / "2024"
    deep.mkdir(parents=True)
    assert find_state_file(start=deep, environ={}) == state


def test_state_option_beats_the_variable_which_beats_the_walk(tmp_path: Path) -> None:
    write_state(tmp_path / LOCAL_STATE_FILE, local("http://a"))
    other = write_state(tmp_path / "elsewhere" / "b.json", local("http://b"))
    named = write_state(tmp_path / "c.json", local("http://c"))
    env = {STATE_VARIABLE: str(other)}
    assert find_state_file(start=tmp_path, environ=env) == other
    assert find_state_file(named, start=tmp_path, environ=env) == named


def test_a_missing_state_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(TargetError) as raised:
        find_state_file(start=tmp_path, environ={})
    message = str(raised.value)
    assert f"no {LOCAL_STATE_FILE} in {tmp_path.resolve()} or any folder above it" in message
    assert "--state FILE" in message and STATE_VARIABLE in message
    with pytest.raises(TargetError, match=r"no local stack state at .*nope.json \(from --state\)"):
        find_state_file(tmp_path / "nope.json", environ={})
    with pytest.raises(TargetError, match=rf"\(from {STATE_VARIABLE}\)"):
        find_state_file(start=tmp_path, environ={STATE_VARIABLE: str(tmp_path / "x.json")})


def test_every_stack_command_takes_state_and_json() -> None:
    """``--state`` wherever ``--stack`` is; ``--json`` on every command that prints a result."""
    lacking_state, lacking_json = [], []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subcommands:
            for sub, child in subcommands[0].choices.items():
                walk(child, f"{name} {sub}".strip())
            return
        options = {o for a in parser._actions for o in a.option_strings}
        if "--stack" in options and "--state" not in options:
            lacking_state.append(name)
        if name != "local up" and "--json" not in options:
            lacking_json.append(name)

    walk(build_parser(), "")
    assert lacking_state == [] and lacking_json == []


def test_the_cli_reads_the_state_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stats", "--state", str(tmp_path / "gone.json")]) == 1
    assert f"no local stack state at {tmp_path / 'gone.json'} (from --state)" in (
        capsys.readouterr().err
    )


def test_a_running_stack_keeps_its_state_file(tmp_path: Path, listening: str) -> None:
    path = write_state(tmp_path / LOCAL_STATE_FILE, local(listening))
    assert state_file_alive(path)
    with pytest.raises(TargetError) as raised:
        claim_state_file(path, local("http://127.0.0.1:1", bucket="second"))
    assert "still running" in str(raised.value) and "--state FILE" in str(raised.value)
    assert listening in str(raised.value)
    # The stack that wrote it may write it again.
    claim_state_file(path, local(listening))


def test_a_stale_or_missing_state_file_may_be_replaced(tmp_path: Path) -> None:
    path = tmp_path / LOCAL_STATE_FILE
    claim_state_file(path)  # none yet
    write_state(path, local(closed_endpoint()))
    assert not state_file_alive(path)
    claim_state_file(path, local("http://127.0.0.1:2"))
    path.write_text("not json")
    assert not state_file_alive(path)
    claim_state_file(path)


def test_the_help_promises_only_commands_that_exist() -> None:
    dlq = build_parser().format_help().split("dlq", 1)[1].splitlines()[0]
    assert "inspect" not in dlq and "redrive" in dlq
