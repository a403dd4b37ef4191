"""The README's console examples, run as written on the embedded defaults.

Each ``$ mailprefs ...`` line in a ``console`` block runs in a fresh folder (no
config file, so the built-in demo defaults apply, as for a newcomer); the lines
after it are its expected output, where ``…`` stands for anything. An example whose
output starts with ``error:`` must fail with exit code 1; all others must succeed.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from tests.conftest import REPO, run_cli

README = (REPO / "README.md").read_text(encoding="utf-8")


def examples() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
    return found


def as_pattern(expected: list[str]) -> re.Pattern[str]:
    parts = [re.escape(line).replace("…", ".*?") for line in expected]
    return re.compile(r"\A" + r"\n".join(parts) + r"\s*\Z", flags=re.S)


def test_readme_has_the_two_setup_commands() -> None:
    assert "```sh\n./dev run\n```" in README
    assert "```sh\n./dev test\n```" in README
    ci = (REPO / ".ci" / "run").read_text()
    assert "./dev test" in ci


def test_readme_console_examples_run_as_written(tmp_path: Path) -> None:
    runs = examples()
    assert len(runs) >= 8
    for command, expected in runs:
        if command.startswith("printf "):  # the tour writes a small CSV first
            subprocess.run(command, shell=True, cwd=tmp_path, check=True)
            continue
        argv = shlex.split(command)
        assert argv[0] == "mailprefs", command
        result = run_cli(*argv[1:], cwd=tmp_path)
        output = (result.stdout + result.stderr).rstrip("\n")
        wants_error = bool(expected) and expected[0].startswith("error:")
        assert result.returncode == (1 if wants_error else 0), (command, output)
        assert as_pattern(expected).match(output), f"{command}\n--- got:\n{output}"
