"""The `workstationSetup` output: one command that readies a workstation for its first push.

    pulumi stack output workstationSetup | sudo sh

It trusts the registry's CA for every external endpoint (node address and node
port), where Docker and podman/skopeo/CRI-O look (their certs.d), and prints the
login command. It holds no secret: the CA certificate is public, and the
password stays with `pulumi stack output password --show-secrets`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

CERTS_DIRS = ("/etc/docker/certs.d", "/etc/containers/certs.d")


def setup_script(endpoints: Sequence[str], ca_pem: str, login_command: str) -> str:
    """A POSIX sh script, every value quoted."""
    if not endpoints:
        return (
            "#!/bin/sh\n"
            "echo 'This registry has no external endpoint: "
            "give registry:nodes to reach it from outside the cluster.' >&2\n"
            "exit 1\n"
        )
    lines = [
        "#!/bin/sh",
        "# Trusts the registry's CA on this machine; run as root.",
        "set -eu",
        '[ "$(id -u)" -eq 0 ] || '
        '{ echo "run it as root: pulumi stack output workstationSetup | sudo sh" >&2; exit 1; }',
        f"ca={shlex.quote(ca_pem.strip())}",
        f"for endpoint in {' '.join(shlex.quote(e) for e in endpoints)}; do",
        f"  for dir in {' '.join(CERTS_DIRS)}; do",
        '    mkdir -p "$dir/$endpoint"',
        '    printf \'%s\\n\' "$ca" > "$dir/$endpoint/ca.crt"',
        '    echo "trusted: $dir/$endpoint/ca.crt"',
        "  done",
        "done",
        "echo 'Now log in (no sudo needed):'",
        f"echo {shlex.quote(login_command)}",
    ]
    return "\n".join(lines) + "\n"
