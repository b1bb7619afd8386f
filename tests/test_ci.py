"""The test command is safe on any machine: .ci/run starts or stops no service and
leaves the system's Python alone; ./test.sh runs in the .venv it makes."""

import os
import re
import signal
import subprocess
import time

import pytest

from tests.nodes import NEEDED, diff, make_factory, require_tools
from tests.stack import ROOT

CI = (ROOT / ".ci" / "run").read_text()
TEST = (ROOT / "test.sh").read_text()


def commands(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_ci_kills_no_process_and_touches_no_service():
    for line in commands(CI):
        assert not re.search(r"(^|[;&|(]\s*)(pkill|killall|kill|systemctl|service|invoke-rc\.d)\b", line), line


def test_ci_installs_packages_only_through_the_guard():
    installs = [line for line in commands(CI) if "apt-get install" in line or "install-packages" in line]
    assert installs == [next(line for line in commands(CI) if line.startswith(".ci/install-packages "))], installs


# ---- .ci/install-packages in a simulated node, with apt-get played by a stub ------------------

# What the packages' postinst scripts do: enable a service at boot (systemd and
# sysv links, deb-systemd-helper's state) and try to start it through invoke-rc.d's policy.
APT_STUB = """#!/bin/sh
mkdir -p /etc/systemd/system/multi-user.target.wants /etc/rc2.d /var/lib/systemd/deb-systemd-helper-enabled
ln -sf /lib/systemd/system/fake.service /etc/systemd/system/multi-user.target.wants/fake.service
ln -sf ../init.d/fake /etc/rc2.d/S01fake
touch /var/lib/systemd/deb-systemd-helper-enabled/fake.service.dsh-also
if [ -x /usr/sbin/policy-rc.d ]; then /usr/sbin/policy-rc.d fake start; echo "policy $?" > /tmp/apt-stub.seen; fi
[ -n "${APT_STUB_HANG:-}" ] && sleep 60
exit 0
"""
BOOT = ("/etc/systemd/system", "/etc/rc2.d", "/var/lib/systemd/deb-systemd-helper-enabled", "/usr/sbin")


@pytest.fixture(scope="module")
def nodes():
    require_tools(NEEDED)
    factory = make_factory()
    yield factory
    factory.close()


def guarded_node(nodes):
    node = nodes.start()
    node.write("/usr/local/stub/apt-get", APT_STUB.encode())
    node.sh("chmod 755 /usr/local/stub/apt-get")
    return node


def install(node, **env):
    variables = [f"{k}={v}" for k, v in {"PATH": f"/usr/local/stub:{os.environ['PATH']}", **env}.items()]
    return subprocess.Popen(["nsenter", "--mount", "-t", str(node.process.pid), "env", *variables,
                             str(ROOT / ".ci" / "install-packages"), "fake"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def test_install_blocks_service_starts_only_while_it_runs_and_leaves_boot_as_it_was(nodes):
    node = guarded_node(nodes)
    before = node.snapshot(roots=BOOT, extra=())
    process = install(node)
    assert process.wait(60) == 0, process.stderr.read()
    assert node.read("/tmp/apt-stub.seen") == b"policy 101\n", "services were kept from starting during the install"
    assert diff(before, node.snapshot(roots=BOOT, extra=())) == [], "no service enabled at boot, no policy-rc.d left"


def test_a_killed_install_is_put_right_by_its_watchdog(nodes):
    node = guarded_node(nodes)
    before = node.snapshot(roots=BOOT, extra=())
    process = install(node, APT_STUB_HANG="1")
    deadline = time.monotonic() + 30
    while not node.path("/etc/rc2.d/S01fake").is_symlink():
        assert time.monotonic() < deadline, "the stub never ran"
        time.sleep(0.1)
    assert node.path("/usr/sbin/policy-rc.d").exists()
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, apt-get too; no trap runs
    process.wait(10)
    deadline = time.monotonic() + 15
    while diff(before, node.snapshot(roots=BOOT, extra=())):
        assert time.monotonic() < deadline, diff(before, node.snapshot(roots=BOOT, extra=()))
        time.sleep(0.2)


def test_python_packages_go_into_a_venv_and_the_tests_use_it():
    pips = [line for line in commands(CI) if re.search(r"\bpip\b", line)]
    assert pips and all(line.startswith(".venv/bin/python3 -m pip") for line in pips), pips
    assert "python3 -m venv .venv" in CI and "python3-venv" in CI
    assert 'PATH="$PWD/.venv/bin:$PATH"' in TEST
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()
    assert commands(CI)[-1] == "./test.sh", "CI runs the README's test command"
