"""The node commands as text: quoted, POSIX, shellcheck-clean, and safe to hand to any login shell."""

import shutil
import subprocess

import pytest

from registry.node_script import (
    CREATE_STEPS,
    POD_SCRIPT,
    STATE_FORMAT,
    NodeTrustParams,
    StorageParams,
    create_script,
    delete_script,
    program,
    remote_command,
    storage_program,
    storage_script,
)
from tests.support.nodes import require_tools

PARAMS = NodeTrustParams("image-registry", 5000, "org/registry/dev", "worker-1")
CA = "-----BEGIN CERTIFICATE-----\nMIIB'quote\"dollar$(x)`tick`\n-----END CERTIFICATE-----\n"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIRAJ3+qZ/example/base64==\n-----END CERTIFICATE-----\n"
NAMES = ("REG_ACTION", "REG_NAME", "REG_PORT", "REG_STACK", "REG_ENTRY", "REG_IP", "REG_RUNTIME", "REG_CA", "STEP_TIMEOUT")
# Stands in for the node program on stdin: prints what the command line handed it.
SHOW = "printf '%s\\0' " + " ".join(f'"${name}"' for name in NAMES) + "\n"


def received(command: str, stdin: str, shell: str = "/bin/sh") -> subprocess.CompletedProcess:
    """Run a command line as the login shell `shell` would, `stdin` on its standard input."""
    return subprocess.run([shell, "-c", command], input=stdin, capture_output=True, text=True)


def values(command: str) -> list[str]:
    out = received(command, SHOW)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\0")[:-1]


def test_every_value_reaches_the_program_unchanged_whatever_it_holds():
    got = values(remote_command(create_script(PARAMS, "10.96.0.50", CA), "root"))
    assert got == ["create", "image-registry", "5000", "org/registry/dev", "worker-1", "10.96.0.50", "auto", CA.strip(), "120"]


def test_delete_needs_neither_ca_nor_ip_nor_runtime():
    got = values(remote_command(delete_script(PARAMS), "root"))
    assert got[0] == "delete" and got[5] == "" and got[7] == ""
    assert delete_script(PARAMS) == delete_script(NodeTrustParams("image-registry", 5000, "org/registry/dev", "worker-1", runtime="docker"))


def test_an_empty_stdin_fails_instead_of_doing_nothing():
    out = received(remote_command(delete_script(PARAMS), "root"), "")
    assert out.returncode != 0 and "no program on standard input" in out.stderr


def test_the_program_and_the_command_lines_are_shellcheck_clean_posix_sh(tmp_path):
    require_tools({"shellcheck": "shellcheck"})
    texts = {
        "program": program(),
        "create": create_script(PARAMS, "10.96.0.50", PEM),
        "delete": delete_script(PARAMS),
        # nodeTrust cluster: the DaemonSet's side.
        "pod": POD_SCRIPT,
        # storage node: the folder's program and its parameters.
        "storage": storage_program(),
        "storage-create": storage_script("create", StorageParams("/var/lib/registry-data", False, "org/p/s ssh")),
    }
    for name, text in texts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text("# shellcheck shell=sh\n" + text)
        result = subprocess.run(["shellcheck", "--shell=sh", "--severity=warning", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, (name, result.stdout)
        parse = subprocess.run(["/bin/sh", "-n", str(path)], capture_output=True, text=True)
        assert parse.returncode == 0, (name, parse.stderr)


def test_root_runs_sh_and_others_go_straight_through_sudo_n():
    """No `sudo -n true` pre-check: a user allowed only /bin/sh passes, and sudo's own refusal is shown."""
    script = delete_script(PARAMS)
    assert remote_command(script, "root").startswith("/bin/sh -c '")
    assert remote_command(script, "ubuntu") == "sudo -n " + remote_command(script, "root")


def test_the_command_line_is_one_word_for_any_login_shell():
    command = remote_command(create_script(PARAMS, "10.96.0.50", CA), "root")
    for shell in ("/bin/sh", "/bin/bash"):
        if not shutil.which(shell):
            continue
        # The login shell only sees `/bin/sh -c WORD`; WORD must reach /bin/sh intact.
        out = received(command, 'printf "%s" "$REG_CA"\n', shell)
        assert out.returncode == 0 and out.stdout == CA.strip(), (shell, out.stderr)


def test_failure_and_kill_can_be_injected_only_after_a_known_step():
    assert "FAIL_AFTER=step_hosts" in create_script(PARAMS, "1.2.3.4", CA, fail_after="step_hosts")
    assert "KILL_AFTER_RENAME=3" in create_script(PARAMS, "1.2.3.4", CA, kill_after_rename=3)
    assert "FAIL_AFTER" not in create_script(PARAMS, "1.2.3.4", CA)
    with pytest.raises(ValueError):
        create_script(PARAMS, "1.2.3.4", CA, fail_after="step_nothing")
    assert CREATE_STEPS[0] == "step_prepare" and CREATE_STEPS[-1] == "step_own"


def test_the_program_runs_the_create_steps_python_names_and_the_state_format_is_pythons():
    """Values go from Python to the program, never scraped out of its text."""
    assert f"\nCREATE_STEPS='{' '.join(CREATE_STEPS)}'\n" in program()
    assert "STATE_FORMAT" not in program() and isinstance(STATE_FORMAT, int)
    assert all(f"\n{step}() {{" in program() for step in CREATE_STEPS)
