"""The README's commands stay true: every `sam-triton` line parses with the real CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sam_triton.cli.main import COMMANDS, build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands():
    text = README.read_text().replace("\\\n", " ")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("docker "):  # the image is named sam-triton; tests/test_docker.py checks these lines
                continue
            match = re.search(r"(?:^|\s)(?:\.venv/bin/)?sam-triton (.*)$", line)
            if match:
                commands.append(match.group(1))
    return commands


def test_readme_shows_every_command():
    """Each `sam-triton` command appears in the README's examples (and so is parsed below)."""
    shown = {shlex.split(command)[0] for command in readme_commands()}
    assert shown == set(COMMANDS), f"not in the README's bash examples: {sorted(set(COMMANDS) - shown)}"


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    build_parser().parse_args(shlex.split(command))


def test_readme_make_targets_exist():
    makefile = (README.parent / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README.read_text(), re.M):
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target} is in the README but not in the Makefile"
