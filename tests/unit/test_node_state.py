"""The node program's base and state parts, sourced in a shell with the state
folder in a temporary directory: install, revert, the manifest, pending work
and owners, in milliseconds, with no root and no node. The whole program runs
over real SSH in simulated nodes in tests/node/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import ROOT

PARTS = ROOT / "registry" / "node"
# The shells the program must run in: Debian's sh (dash), bash, busybox ash (Alpine-like nodes).
SHELLS = {"dash": ["dash"], "bash": ["bash", "--posix"], "busybox": ["busybox", "sh"]}
PARAMS = {"REG_NAME": "image-registry", "REG_PORT": "5000", "REG_STACK": "org/registry/dev", "REG_ENTRY": "cp",
          "REG_IP": "10.96.0.50", "STEP_TIMEOUT": "20"}


@pytest.fixture(params=list(SHELLS))
def shell(request) -> list[str]:
    argv = SHELLS[request.param]
    if shutil.which(argv[0]) is None:
        message = f"missing: {argv[0]} (apt-get install {request.param})"
        if os.environ.get("CI"):
            pytest.fail(message + " -- CI must install it; .ci/run does", pytrace=False)
        pytest.skip(message)
    return argv


class Parts:
    """common.sh, base.sh and state.sh sourced in `shell`, with the state under `root`."""

    def __init__(self, shell: list[str], root: Path):
        self.shell, self.root = shell, root
        self.state = root / "state" / "image-registry_5000"

    def run(self, script: str, **params: str) -> subprocess.CompletedProcess:
        prelude = (
            f". {PARTS / 'common.sh'}\n. {PARTS / 'base.sh'}\n. {PARTS / 'state.sh'}\n"
            f'STATE_ROOT="{self.root}/state"; STATE="$STATE_ROOT/${{REG_NAME}}_$REG_PORT"\n'
            'MANIFEST="$STATE/manifest"; OWNERS="$STATE/owners"; mkdir -p "$STATE"\n'
            f'WORK=$(mktemp -d "{self.root}/work.XXXXXX"); : >"$WORK/desired"\n'
        )
        env = {"PATH": os.environ["PATH"], **PARAMS, **params}
        return subprocess.run([*self.shell, "-c", prelude + script], env=env, capture_output=True, text=True, timeout=30)

    def ok(self, script: str, **params: str) -> str:
        result = self.run(script, **params)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def manifest(self) -> list[str]:
        path = self.state / "manifest"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def parts(shell, tmp_path) -> Parts:
    return Parts(shell, tmp_path)


def test_install_then_revert_gives_a_file_back_byte_for_byte_and_keeps_no_backup(parts, tmp_path):
    target = tmp_path / "etc" / "docker.json"
    target.parent.mkdir()
    target.write_bytes(b"the user's\r\nbytes, no final newline")
    target.chmod(0o600)
    (tmp_path / "ours").write_text("ours\n")
    parts.ok(f"install_file {tmp_path / 'ours'} {target}")
    assert target.read_text() == "ours\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    assert parts.manifest() == [f"file {target}"], "listed before it was written"
    parts.ok(f"revert_file {target}")
    assert target.read_bytes() == b"the user's\r\nbytes, no final newline"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert not any((parts.state / "backup").iterdir())


def test_a_second_install_of_the_same_bytes_changes_nothing_and_says_so(parts, tmp_path):
    (tmp_path / "ours").write_text("ours\n")
    target = tmp_path / "new" / "deeper" / "ca.crt"
    first = parts.run(f"install_file {tmp_path / 'ours'} {target}")
    second = parts.run(f"install_file {tmp_path / 'ours'} {target}")
    assert (first.returncode, second.returncode) == (0, 1), "0: changed, 1: already held those bytes"
    assert parts.manifest() == [f"dir {tmp_path / 'new'}", f"dir {target.parent}", f"file {target}"]


def test_reverting_a_file_create_made_removes_it_and_the_folders_it_made(parts, tmp_path):
    (tmp_path / "ours").write_text("ours\n")
    target = tmp_path / "new" / "deeper" / "ca.crt"
    parts.ok(f"install_file {tmp_path / 'ours'} {target}")
    parts.ok(f'revert_file {target}\nreverse_lines "$MANIFEST" | while read -r kind path; do\n'
             '  [ "$kind" = dir ] && rmdir "$path"; forget "$kind $path"; done')
    assert not (tmp_path / "new").exists() and parts.manifest() == []


def test_a_link_that_was_there_is_put_back_as_the_same_link_and_its_target_never_touched(parts, tmp_path):
    (tmp_path / "theirs").write_text("theirs\n")
    (tmp_path / "ours").write_text("ours\n")
    link = tmp_path / "hosts"
    link.symlink_to(tmp_path / "theirs")
    parts.ok(f"install_file {tmp_path / 'ours'} {link}")
    assert not link.is_symlink() and link.read_text() == "ours\n"
    assert (tmp_path / "theirs").read_text() == "theirs\n", "the link's target is not written through"
    parts.ok(f"revert_file {link}")
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "theirs")


def test_work_owed_is_written_down_before_and_cleared_after(parts):
    parts.ok("owe refresh")
    assert (parts.state / "pending-refresh").exists()
    assert parts.run("owed refresh").returncode == 0 and parts.run("owed restart-k3s").returncode == 1
    parts.ok("paid refresh")
    assert not (parts.state / "pending-refresh").exists()


def test_owners_are_added_and_dropped_each_alone_and_the_others_kept_as_they_are(parts):
    parts.ok("CA_SUM=abc; set_owner add", REG_STACK="org/other/prod", REG_ENTRY="node-a")
    parts.ok("CA_SUM=abc; set_owner add")
    owners = (parts.state / "owners").read_text()
    assert owners == "org/other/prod node-a 10.96.0.50 abc\norg/registry/dev cp 10.96.0.50 abc\n"
    assert parts.run("others_own").returncode == 0
    parts.ok("set_owner drop")
    assert (parts.state / "owners").read_text() == "org/other/prod node-a 10.96.0.50 abc\n"
    assert parts.run("others_own", REG_STACK="org/other/prod", REG_ENTRY="node-a").returncode == 1, "no one else"


def test_another_stack_with_another_address_for_the_name_is_refused_before_any_change(parts):
    parts.ok("CA_SUM=abc; set_owner add", REG_STACK="org/other/prod", REG_ENTRY="node-a", REG_IP="10.96.0.99")
    result = parts.run("CA_SUM=abc; check_owners")
    assert result.returncode != 0
    assert "image-registry:5000 is already set up for stack org/other/prod (node entry node-a), with address 10.96.0.99" in result.stderr
    assert parts.run("CA_SUM=abc; check_owners", REG_IP="10.96.0.99").returncode == 0, "the same registry is shared"


def test_the_same_name_on_another_port_is_refused(parts):
    parts.ok("CA_SUM=abc; set_owner add", REG_PORT="5001", REG_STACK="org/other/prod")
    result = parts.run("CA_SUM=abc; check_owners")
    assert result.returncode != 0 and "already names the registry on port 5001 of stack org/other/prod" in result.stderr


def test_a_temporary_file_left_by_a_killed_run_is_removed_by_the_next_and_nothing_else(parts, tmp_path):
    listed, other = tmp_path / "certs.d", tmp_path / "elsewhere"
    listed.mkdir()
    other.mkdir()
    stray = listed / ".registry-node-trust.Dqkj7I"  # mktemp's name: killed before its rename
    stray.write_text("half a certificate")
    probe = listed / ".registry-node-trust-probe.4242"
    probe.write_text("")
    link = listed / ".registry-node-trust.AbCdEf"
    link.symlink_to(tmp_path / "target-of-a-link")
    users = [listed / ".registry-node-trust.kept-by-me", listed / "ca.crt", other / ".registry-node-trust.Xy12Zw"]
    for path in users:
        path.write_text("the user's")
    parts.ok(f'record "file {listed / "ca.crt"}"; hosts_file() {{ printf /nonexistent/hosts; }}; sweep_temps')
    assert not stray.exists() and not probe.exists()
    assert link.is_symlink(), "a link is never followed nor removed"
    assert all(path.read_text() == "the user's" for path in users), "only our names, only where we write"
