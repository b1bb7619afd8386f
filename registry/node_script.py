"""Pure functions that build the node commands' text.

The logic lives in registry/node/ (POSIX sh, shellcheck-clean): its parts,
joined in the order of PARTS, and its two awk programs. That program travels
on the command's standard input (`program()`), the same bytes for every node
and for create and delete. The command line itself only sets the parameters,
each one quoted, and runs what arrives on stdin: one SSH packet carries the
command line, and some servers stop at 32 KiB, which the program alone would
soon pass.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent / "node"
PARTS = ("common", "base", "state", "files", "trust", "create", "delete", "main")
LIBRARY = "\n".join((HERE / f"{part}.sh").read_text() for part in PARTS)
# storage: node's folder program (registry/node/storage.sh), which shares the common part.
STORAGE_PARTS = ("common", "storage")
HOSTS_AWK = (HERE / "hosts.awk").read_text()
BLOCK_AWK = (HERE / "block.awk").read_text()

# What a node holds, and what it means. Raising it replaces every node's
# command (old delete, then new create), since it is in the commands'
# triggers: raise it when an older delete could not undo what a newer create
# leaves, or the reverse.
STATE_FORMAT = 2
# The create run's steps, in order (registry/node/create.sh).
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
    "step_verify",
    "step_own",
)

DEFAULT_STEP_TIMEOUT = 120
# nodeTrust: cluster: the owner entry of the DaemonSet's runs (an SSH run's is the node's name).
CLUSTER_ENTRY = "cluster"
# The DaemonSet's side: it runs in the pod and hands the program to the host (registry/node/pod.sh).
POD_SCRIPT = "# shellcheck disable=SC3043  # `local` is in dash and busybox ash\n" + (HERE / "pod.sh").read_text()

# Runs the program that arrives on stdin. An empty stdin must fail, not succeed
# doing nothing; the program is read whole first, so that no command in it can
# swallow the rest of it from stdin.
_RUN_STDIN = (
    'program=$(cat) && [ -n "$program" ] || '
    '{ echo "registry-node-trust: no program on standard input" >&2; exit 1; }\n'
    'exec /bin/sh -c "$program" registry-node-trust\n'
)


@dataclass(frozen=True)
class NodeTrustParams:
    hostname: str
    port: int
    # Who asks: the stack (organization/project/stack) and its node entry. A
    # node keeps the changes as long as any owner is left.
    stack: str
    entry: str
    runtime: str = "auto"
    step_timeout: int = DEFAULT_STEP_TIMEOUT


def program() -> str:
    """The bytes every command reads on stdin: what the program is told by this
    module, the awk programs, then the parts of registry/node/."""
    return (
        "# shellcheck disable=SC3043  # `local`: dash, bash and busybox ash have it\n"
        f"CREATE_STEPS={shlex.quote(' '.join(CREATE_STEPS))}\n"
        f"HOSTS_AWK={shlex.quote(HOSTS_AWK)}\nBLOCK_AWK={shlex.quote(BLOCK_AWK)}\n" + LIBRARY
    )


@dataclass(frozen=True)
class StorageParams:
    path: str
    # registry:keepData: whether the last delete leaves the folder.
    keep: bool
    # Who uses the folder: the stack and how it reaches the node (ssh or cluster).
    # Each way claims it, so a switch between them never removes it.
    claim: str
    step_timeout: int = DEFAULT_STEP_TIMEOUT


def storage_program() -> str:
    """The bytes the folder's commands read on stdin (registry/node/storage.sh)."""
    return "# shellcheck disable=SC3043  # `local`: dash, bash and busybox ash have it\n" + "\n".join(
        (HERE / f"{part}.sh").read_text() for part in STORAGE_PARTS
    )


def storage_script(action: str, params: StorageParams) -> str:
    """The parameters of the folder's create or delete run."""
    return _assignments(
        {
            "STORAGE_ACTION": action,
            "STORAGE_PATH": params.path,
            "STORAGE_KEEP": "true" if params.keep else "false",
            "STORAGE_CLAIM": params.claim,
            "STEP_TIMEOUT": str(params.step_timeout),
        }
    )


def _assignments(values: dict[str, str]) -> str:
    """Each value quoted, assigned and exported: the program sees exactly these."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items()) + f"export {' '.join(values)}\n"


def _header(
    action: str, params: NodeTrustParams, cluster_ip: str, ca_pem: str, runtime: str, extra: dict[str, str]
) -> str:
    values = {
        "REG_ACTION": action,
        "REG_NAME": params.hostname,
        "REG_PORT": str(params.port),
        "REG_STACK": params.stack,
        "REG_ENTRY": params.entry,
        "REG_IP": cluster_ip,
        "REG_RUNTIME": runtime,
        "REG_CA": ca_pem.strip(),
        "STEP_TIMEOUT": str(params.step_timeout),
        **extra,
    }
    return _assignments(values)


def create_script(
    params: NodeTrustParams,
    cluster_ip: str,
    ca_pem: str,
    fail_after: str | None = None,
    kill_after_rename: int | None = None,
) -> str:
    """The parameters of the create run, which installs the CA and the hosts entry; idempotent.

    For tests: `fail_after` names a step after which the run stops with an
    error; `kill_after_rename` kills it (SIGKILL, no cleanup) right after that
    many files were put in place. Both prove that the next run finishes the job.
    """
    if fail_after is not None and fail_after not in CREATE_STEPS:
        raise ValueError(f"unknown step {fail_after!r}; steps are {CREATE_STEPS}")
    extra = {}
    if fail_after is not None:
        extra["FAIL_AFTER"] = fail_after
    if kill_after_rename is not None:
        extra["KILL_AFTER_RENAME"] = str(kill_after_rename)
    return _header("create", params, cluster_ip, ca_pem, params.runtime, extra)


def delete_script(params: NodeTrustParams) -> str:
    """The parameters of the delete run, which removes what create added; it needs
    neither the CA nor the IP, because it finds everything through its markers,
    its manifest and its owners."""
    return _header("delete", params, "", "", "auto", {})


def remote_command(script: str, user: str) -> str:
    """The command line sent over SSH: `script`'s parameters, then the program on stdin, as root.

    The login shell may be anything, so the whole text is handed to /bin/sh as
    one quoted word. A non-root user goes through `sudo -n`, which fails at
    once, with sudo's own message, instead of waiting for a password.
    """
    return as_root(script + _RUN_STDIN, user)


def as_root(script: str, user: str) -> str:
    """`script` as one quoted word for /bin/sh, through `sudo -n` for a non-root user."""
    run = f"/bin/sh -c {shlex.quote(script)}"
    return run if user == "root" else f"sudo -n {run}"


def daemon_files(params: NodeTrustParams, cluster_ip: str, ca_pem: str) -> dict[str, str]:
    """What the trust DaemonSet's pods read (registry/node/pod.sh): the program, the
    parameters of create and delete, what runs the program from stdin, and pod.sh."""
    return {
        "program": program(),
        "create": create_script(params, cluster_ip, ca_pem),
        "delete": delete_script(params),
        "run": _RUN_STDIN,
        "pod.sh": POD_SCRIPT,
    }


def storage_claim(stack: str, way: str) -> str:
    """How `stack` claims the data folder when it reaches the node `way` (ssh or cluster)."""
    return f"{stack} {way}"


def storage_daemon_files(params: StorageParams) -> dict[str, str]:
    """What the storage DaemonSet's pod reads: the same as daemon_files, for the folder."""
    return {
        "program": storage_program(),
        "create": storage_script("create", params),
        "delete": storage_script("delete", params),
        "run": _RUN_STDIN,
        "pod.sh": POD_SCRIPT,
    }
