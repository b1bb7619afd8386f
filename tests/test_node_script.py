"""The node scripts as text: quoted, POSIX, shellcheck-clean, and safe to hand to any login shell."""

import shutil
import subprocess

import pytest

from registry.node_script import CREATE_STEPS, NodeTrustParams, create_script, delete_script, remote_command
from tests.nodes import require_tools

PARAMS = NodeTrustParams("image-registry", 5000)
CA = "-----BEGIN CERTIFICATE-----\nMIIB'quote\"dollar$(x)`tick`\n-----END CERTIFICATE-----\n"


def header_values(script: str) -> list[str]:
    """Run the script's parameter lines in dash and print what each variable holds."""
    header = script.split("# shellcheck shell=sh", 1)[0]
    show = 'printf "%s\\0" "$REG_NAME" "$REG_PORT" "$REG_IP" "$REG_RUNTIME" "$REG_CA" "$STEP_TIMEOUT"'
    out = subprocess.run(["/bin/sh", "-c", header + show], capture_output=True, check=True).stdout
    return out.decode().split("\0")[:-1]


def test_every_value_reaches_the_script_unchanged_whatever_it_holds():
    values = header_values(create_script(PARAMS, "10.96.0.50", CA))
    assert values == ["image-registry", "5000", "10.96.0.50", "auto", CA.strip(), "120"]


def test_delete_needs_neither_ca_nor_ip():
    values = header_values(delete_script(PARAMS))
    assert values[2] == "" and values[4] == ""
    assert delete_script(PARAMS) == delete_script(NodeTrustParams("image-registry", 5000, runtime="docker"))


@pytest.mark.parametrize("script", ["create", "delete"])
def test_scripts_are_shellcheck_clean_posix_sh(script, tmp_path):
    require_tools({"shellcheck": "shellcheck"})
    text = create_script(PARAMS, "10.96.0.50", CA) if script == "create" else delete_script(PARAMS)
    path = tmp_path / f"{script}.sh"
    path.write_text(text)
    result = subprocess.run(["shellcheck", "--shell=sh", "--severity=warning", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    parse = subprocess.run(["/bin/sh", "-n", str(path)], capture_output=True, text=True)
    assert parse.returncode == 0, parse.stderr


def test_root_runs_the_script_with_sh_and_others_through_sudo_n():
    script = delete_script(PARAMS)
    assert remote_command(script, "root").startswith("/bin/sh -c '")
    as_user = remote_command(script, "ubuntu")
    assert as_user.startswith("sudo -n true 2>/dev/null || {") and "sudo -n /bin/sh -c '" in as_user
    assert "ubuntu cannot run sudo without a password" in as_user


def test_the_command_line_is_one_word_for_any_login_shell():
    script = create_script(PARAMS, "10.96.0.50", CA)
    for shell in ("/bin/sh", "/bin/bash"):
        if not shutil.which(shell):
            continue
        # The login shell only sees `/bin/sh -c WORD`; WORD must reach /bin/sh intact.
        probe = remote_command(script.replace("\nbegin\n", "\nprintf '%s' \"$REG_CA\"; exit 0\n", 1), "root")
        out = subprocess.run([shell, "-c", probe], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout == CA.strip(), (shell, out.stderr)


def test_failure_can_be_injected_only_after_a_known_step():
    assert "die 'injected failure after step_hosts'" in create_script(PARAMS, "1.2.3.4", CA, fail_after="step_hosts")
    with pytest.raises(ValueError):
        create_script(PARAMS, "1.2.3.4", CA, fail_after="step_nothing")
    assert CREATE_STEPS[0] == "step_prepare" and CREATE_STEPS[-1] == "step_restart"
