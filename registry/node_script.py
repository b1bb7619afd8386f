"""Pure functions that build the node commands' shell text.

The logic lives in node_trust.sh (POSIX sh, shellcheck-clean); these functions
put the parameters above it, each one quoted, and the steps to run below it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

LIBRARY = Path(__file__).with_name("node_trust.sh").read_text()

# In this order: nothing is changed before step_prepare has proved that every
# place to write is writable, and restarts come last, once everything is in place.
CREATE_STEPS = (
    "step_prepare",
    "step_hosts",
    "step_trust_store",
    "step_docker",
    "step_containerd",
    "step_containers",
    "step_k3s",
    "step_converge",
    "step_restart",
)

DEFAULT_STEP_TIMEOUT = 120


@dataclass(frozen=True)
class NodeTrustParams:
    hostname: str
    port: int
    runtime: str = "auto"
    step_timeout: int = DEFAULT_STEP_TIMEOUT


def _header(params: NodeTrustParams, cluster_ip: str, ca_pem: str, runtime: str) -> str:
    values = {
        "REG_NAME": params.hostname,
        "REG_PORT": str(params.port),
        "REG_IP": cluster_ip,
        "REG_RUNTIME": runtime,
        "REG_CA": ca_pem.strip(),
        "STEP_TIMEOUT": str(params.step_timeout),
    }
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def create_script(
    params: NodeTrustParams, cluster_ip: str, ca_pem: str, fail_after: Optional[str] = None
) -> str:
    """The script that installs the CA and the hosts entry; idempotent.

    `fail_after` names a step after which the script stops with an error, for
    tests that prove a half-done create is finished by the next one.
    """
    if fail_after is not None and fail_after not in CREATE_STEPS:
        raise ValueError(f"unknown step {fail_after!r}; steps are {CREATE_STEPS}")
    lines = ["begin"]
    for step in CREATE_STEPS:
        lines.append(step)
        if step == fail_after:
            lines.append(f"die {shlex.quote('injected failure after ' + step)}")
    lines.append('log "trusted and resolvable as $ID -> $REG_IP"')
    return _header(params, cluster_ip, ca_pem, params.runtime) + LIBRARY + "\n".join(lines) + "\n"


def delete_script(params: NodeTrustParams) -> str:
    """The script that removes what create added; needs neither the CA nor the IP,
    because it finds everything through its markers and its manifest."""
    return _header(params, "", "", "auto") + LIBRARY + 'begin\nundo_all\nlog "removed"\n'


def remote_command(script: str, user: str) -> str:
    """The command line sent over SSH: the script run by /bin/sh as root.

    The login shell may be anything, so the script is handed to /bin/sh whole.
    A non-root user goes through `sudo -n`, which fails at once instead of
    waiting for a password that will never be typed.
    """
    run = f"/bin/sh -c {shlex.quote(script)}"
    if user == "root":
        return run
    message = (
        f"registry-node-trust: user {user} cannot run sudo without a password "
        "(sudo -n failed); allow it NOPASSWD for /bin/sh or connect as root"
    )
    return f"sudo -n true 2>/dev/null || {{ echo {shlex.quote(message)} >&2; exit 1; }}; sudo -n {run}"
