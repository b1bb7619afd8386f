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


def test_tests_wait_through_the_one_polling_helper_and_define_shared_values_once():
    tests = Path(__file__).resolve().parents[1]
    polling = tests / "support" / "polling.py"
    loops, copies = [], []
    shared = ("CLUSTER_IP = \"127.0.10.1\"", "SERVICE_CIDR = ", "STORAGE = ", "COMMAND = ", "NAMESPACE = ")
    for path in tests.rglob("*.py"):
        if path in (polling, tests / "support" / "constants.py", Path(__file__).resolve()):
            continue
        text = path.read_text()
        if "deadline = time.monotonic()" in text:
            loops.append(str(path.relative_to(tests)))
        copies += [f"{path.relative_to(tests)}: {value}" for value in shared if f"\n{value}" in text]
    assert loops == [], "wait with tests/support/polling.py's eventually"
    assert copies == [], "import these from tests/support/constants.py"
