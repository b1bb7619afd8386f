"""The lint and type gate, as CI runs it: ruff's rules over everything, ruff's
format and pyright (basic) over the program (pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

from tests.support.stack import ROOT

BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_program_is_formatted():
    result = run("ruff", "format", "--check", "registry", "__main__.py", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_pyright_finds_no_type_error_in_the_program():
    result = run("pyright")
    assert result.returncode == 0, result.stdout + result.stderr
