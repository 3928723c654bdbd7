"""Every ``imgsearch`` command the README and the docs show is one the CLI accepts as written.

The commands are read out of the fenced shell blocks; ``[--flag VALUE]`` is taken with its
flag, ``a | b`` as two commands, and placeholders (``VERSION``, ``N``) get a real-looking value.
Parsing is all that is checked here: the e2e tests run the commands against a stack.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from imgsearch_devkit.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = {
    "VERSION": "20250101T120000.123456Z-a1b2c3",
    "N": "3",
    "R": "not_an_image",
    "BUNDLE": "models/demo-clip",
    "PATH": "photo.jpg",
    "SECONDS": "60",
    "FILE": ".imgsearch/local.json",
    "NAME": "imgsearch-dev",
}
SHELL_FENCES = {"", "bash", "sh", "console"}


def shell_lines(text: str) -> list[str]:
    """The lines of fenced shell (or unlabelled) blocks; diagrams (not ASCII) are left out."""
    lines, fence = [], None
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
        elif fence in SHELL_FENCES and stripped.isascii():
            lines.append(stripped)
    return lines


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        for line in shell_lines(document.read_text(encoding="utf-8")):
            line = line.split(" #", 1)[0].strip()
            if line.startswith("imgsearch "):
                found.extend((document.name, c) for c in expand(line))
    return found


def expand(line: str) -> list[str]:
    """``imgsearch index list | rollback [--to VERSION]`` -> both commands, brackets opened."""
    words = line.split()
    head, rest = words[:2], " ".join(words[2:])
    variants = [v.strip() for v in rest.split(" | ")] if rest else [""]
    return [" ".join([*head, v]).replace("[", "").replace("]", "").strip() for v in variants]


def arguments(command: str) -> list[str]:
    return [PLACEHOLDERS.get(word, word) for word in shlex.split(command)[1:]]


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 15, COMMANDS


@pytest.mark.parametrize(("document", "command"), COMMANDS)
def test_a_documented_command_parses(document: str, command: str) -> None:
    try:
        args = build_parser().parse_args(arguments(command))
    except SystemExit as exc:
        pytest.fail(f"{document}: `{command}` is refused by the CLI (exit {exc.code})")
    assert callable(getattr(args, "func", None)), f"{document}: `{command}` runs nothing"
