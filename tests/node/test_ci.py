"""The test command is safe on any machine: .ci/run starts or stops no service and
leaves the system's Python alone; ./test.sh runs in the .venv it makes."""

import os
import re
import signal
import subprocess

from tests.support.nodes import diff, require_tools
from tests.support.polling import eventually
from tests.support.stack import ROOT

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
    eventually(lambda: node.path("/etc/rc2.d/S01fake").is_symlink(), "the stub to run", 30, every=0.1)
    assert node.path("/usr/sbin/policy-rc.d").exists()
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, apt-get too; no trap runs
    process.wait(10)
    eventually(lambda: not diff(before, node.snapshot(roots=BOOT, extra=())), "the watchdog to put the node right", 15,
               detail=lambda: str(diff(before, node.snapshot(roots=BOOT, extra=()))))


def test_python_packages_go_into_a_venv_and_the_tests_use_it():
    pips = [line for line in commands(CI) if re.search(r"\bpip\b", line)]
    assert pips and all(line.startswith(".venv/bin/python3 -m pip") for line in pips), pips
    assert "python3 -m venv .venv" in CI and "python3-venv" in CI
    assert 'PATH="$PWD/.venv/bin:$PATH"' in TEST
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()
    assert commands(CI)[-1] == "./test.sh", "CI runs the README's test command"


# A package of the test's own, built here, with the maintainer script debhelper
# writes for a service: enabled at boot (deb-systemd-helper, update-rc.d) and
# started through invoke-rc.d, which asks policy-rc.d. Installed by the real
# apt-get and dpkg in a simulated node, from its file: no download.
SERVICE = "registry-ci-fake"
POSTINST = f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
  deb-systemd-helper unmask {SERVICE}.service >/dev/null || true
  if deb-systemd-helper --quiet was-enabled {SERVICE}.service; then
    deb-systemd-helper enable {SERVICE}.service >/dev/null || true
  else
    deb-systemd-helper update-state {SERVICE}.service >/dev/null || true
  fi
  update-rc.d {SERVICE} defaults >/dev/null
  invoke-rc.d {SERVICE} start || exit 1
fi
# What dh_runit adds (openssh-server has it): runit's link that starts the service at boot.
NAME='{SERVICE}' ENABLE='yes' ONUPGRADE='restart' /lib/runit-helper/runit-helper postinst "$@"
"""
INIT = f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          {SERVICE}
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: a service that records that it was started
### END INIT INFO
[ "$1" = start ] && touch /var/lib/{SERVICE}-started
exit 0
"""
UNIT = "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
RUNIT = "#!/bin/sh\nexec sleep infinity\n"
RUNIT_LINK = f"/etc/runit/runsvdir/default/{SERVICE}"


def fake_package(folder) -> str:
    require_tools({"dpkg-deb": "dpkg", "deb-systemd-helper": "init-system-helpers",
                   "/lib/runit-helper/runit-helper": "runit-helper"})
    root = folder / "pkg"
    for path, text, mode in (("DEBIAN/control", f"Package: {SERVICE}\nVersion: 1.0\nArchitecture: all\n"
                              "Maintainer: tests <tests@localhost>\nDescription: test service\n", 0o644),
                             ("DEBIAN/postinst", POSTINST, 0o755), (f"etc/init.d/{SERVICE}", INIT, 0o755),
                             (f"lib/systemd/system/{SERVICE}.service", UNIT, 0o644),
                             (f"etc/sv/{SERVICE}/run", RUNIT, 0o755)):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(folder / f"{SERVICE}.deb")],
                   check=True, capture_output=True)
    return str(folder / f"{SERVICE}.deb")


def plain_node(nodes):
    """A node as a running host is: no policy-rc.d (Docker images ship one), and a runlevel
    (invoke-rc.d starts nothing where /sbin/runlevel cannot tell one)."""
    node = nodes.start()
    node.sh("rm -f /usr/sbin/policy-rc.d && printf '#!/bin/sh\\necho N 2\\n' > /usr/sbin/runlevel && chmod 755 /usr/sbin/runlevel")
    return node


def test_without_the_guard_the_same_install_starts_the_service_and_enables_it_at_boot(nodes, tmp_path):
    # The control: what .ci/run did before, which the test below must tell apart.
    package = fake_package(tmp_path)
    node = plain_node(nodes)
    result = node.inside("apt-get", "install", "-y", "-qq", package, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert node.path(f"/var/lib/{SERVICE}-started").exists()
    assert node.path(f"/etc/rc2.d/S01{SERVICE}").is_symlink()
    assert node.path(RUNIT_LINK).is_symlink()


def test_a_real_package_install_starts_no_service_and_enables_none_at_boot(nodes, tmp_path):
    package = fake_package(tmp_path)
    node = plain_node(nodes)
    roots = (*BOOT, "/etc/init.d", "/etc/runit", "/etc/sv")
    before = node.snapshot(roots=roots, extra=())
    result = node.inside("env", f"PATH={os.environ['PATH']}", str(ROOT / ".ci" / "install-packages"), package, check=False,
                         timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert node.inside("dpkg", "-s", SERVICE, check=False).returncode == 0, "installed"
    assert not node.path(f"/var/lib/{SERVICE}-started").exists(), "policy-rc.d kept it from starting"
    changes = diff(before, node.snapshot(roots=roots, extra=()))
    assert sorted(changes) == [f"added /etc/init.d/{SERVICE}", f"added /etc/sv/{SERVICE}", f"added /etc/sv/{SERVICE}/run"], \
        "the package's files, and no link that starts it at boot (systemd, sysv or runit)"

