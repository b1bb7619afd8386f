"""The test command is safe on any machine: .ci/run starts or stops no service and
leaves the system's Python alone; ./test.sh runs in the .venv it makes."""

import re

from tests.stack import ROOT

CI = (ROOT / ".ci" / "run").read_text()
TEST = (ROOT / "test.sh").read_text()


def commands(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_ci_kills_no_process_and_touches_no_service():
    for line in commands(CI):
        assert not re.search(r"(^|[;&|(]\s*)(pkill|killall|kill|systemctl|service|invoke-rc\.d)\b", line), line


def test_ci_keeps_package_services_from_starting_while_it_installs():
    install = CI.index("apt-get install")
    assert CI.index("/usr/sbin/policy-rc.d") < install
    assert "exit 101" in CI, "101: the action is not allowed (invoke-rc.d's policy interface)"
    assert "trap 'rm -f \"$POLICY\"' EXIT" in CI, "its own policy goes when it ends; one that was there stays"


def test_python_packages_go_into_a_venv_and_the_tests_use_it():
    pips = [line for line in commands(CI) if re.search(r"\bpip\b", line)]
    assert pips and all(line.startswith(".venv/bin/python3 -m pip") for line in pips), pips
    assert "python3 -m venv .venv" in CI and "python3-venv" in CI
    assert 'PATH="$PWD/.venv/bin:$PATH"' in TEST
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()
    assert commands(CI)[-1] == "./test.sh", "CI runs the README's test command"
