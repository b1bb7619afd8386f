"""Simulated cluster nodes, reached over real OpenSSH.

A node is a mount namespace in which every top-level folder (/etc, /usr, /var,
/srv, /root, ...) is a copy-on-write overlay of this machine's, /run a tmpfs of its own, with its own
sshd listening on its own loopback address. Scripts arrive over SSH exactly as pulumi-command would
send them and change only the node's copies. The test reads the node's files
through /proc/<sshd pid>/root and runs other commands there with nsenter.

A stub `systemctl` in the node's /usr/local/sbin records restarts instead of
doing them.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.polling import eventually

# Every top-level folder of this machine but the kernel's, /run (a tmpfs of the
# node's own) and /tmp (where the nodes' own files live) is a copy-on-write
# overlay in a node: whatever a node's script or a test writes, anywhere, stays
# in the node (tests/node/test_nodes.py writes to /srv, /opt, /root and /home).
NOT_OVERLAID = {"proc", "sys", "dev", "run", "tmp", "lost+found"}


def _overlaid() -> tuple[str, ...]:
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    return tuple(
        f"/{entry.name}" for entry in sorted(Path("/").iterdir(), key=lambda e: e.name)
        if entry.is_dir() and not entry.is_symlink() and entry.name not in NOT_OVERLAID
        and f"/{entry.name}" not in mounts  # another file system: a mount of its own, left as it is
    )


OVERLAID = _overlaid()
SNAPSHOT_ROOTS = ("/etc", "/usr/local")
SSH_PORT = 2222
NEEDED = {
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "flock": "util-linux",
    "update-ca-certificates": "ca-certificates",
    "sudo": "sudo",
}


def require_tools(tools: dict[str, str]) -> None:
    """Skip (outside CI) or fail (in CI) when a tool the tests need is missing."""
    missing = [f"{tool} (apt-get install {package})" for tool, package in tools.items() if not shutil.which(tool)]
    if os.geteuid() != 0:
        missing.append("root (mount namespaces and overlays need it)")
    if missing:
        message = "missing: " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + " -- CI must install these; .ci/run does", pytrace=False)
        pytest.skip(message)


@dataclass(frozen=True)
class Entry:
    kind: str  # file, dir, link
    mode: int
    uid: int
    gid: int
    content: bytes  # file bytes, or link target


Snapshot = dict[str, Entry]


class Node:
    def __init__(self, index: int, key_path: Path, authorized_keys: Path, base: Path):
        self.index = index
        self.address = f"127.0.20.{index}"
        self.port = SSH_PORT
        self.key_path = key_path
        self.dir = base / f"node{index}"
        self.authorized_keys = authorized_keys
        self.systemctl_log = self.dir / "systemctl.log"
        self.process: subprocess.Popen | None = None

    # ---- lifecycle ----------------------------------------------------------

    def start(self, prepare: str = "", base: Path | None = None) -> Node:
        """Start the node; `prepare` is shell run inside the namespace before sshd starts.

        `base` holds settled layers (see NodeFactory.settle) stacked under the node's own.
        """
        self.dir.mkdir(parents=True)
        mounts = overlay_mounts(self.dir, base)
        host_key = self.dir / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        config = self.dir / "sshd_config"
        config.write_text(textwrap.dedent(f"""\
            ListenAddress {self.address}:{self.port}
            HostKey {host_key}
            PidFile none
            AuthorizedKeysFile {self.authorized_keys}
            StrictModes no
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            AcceptEnv NONE
            LogLevel ERROR
            """))
        stub = textwrap.dedent(f"""\
            #!/bin/sh
            # test stub: records what would have been restarted
            case "$1" in
              restart|reload|try-restart) printf '%s\\n' "$*" >> {self.systemctl_log}; exit 0 ;;
              cat|is-active|status) exit 1 ;;
              *) exit 0 ;;
            esac
            """)
        boot = self.dir / "boot.sh"
        boot.write_text(
            "set -e\n"
            + "\n".join(mounts)
            # A /run of its own, as a machine has: locks and pid files stay in the node.
            + "\nmount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/sshd /run/lock && chmod 1777 /run/lock"
            + "\nmkdir -p /usr/local/sbin\n"
            + f"cat > /usr/local/sbin/systemctl <<'STUB'\n{stub}STUB\n"
            + "chmod 755 /usr/local/sbin/systemctl\n"
            + prepare
            + f"\nexec /usr/sbin/sshd -D -e -f {config}\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.log = open(self.dir / "sshd.log", "wb")
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", str(boot)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )

        def listening() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.index} did not start: {(self.dir / 'sshd.log').read_text()}")
            socket.create_connection((self.address, self.port), timeout=0.5).close()
            return True

        eventually(listening, f"sshd of node {self.index} to listen", 15, every=0.05, ignoring=(OSError,))
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- talking to it --------------------------------------------------------

    def ssh(self, command: str, user: str = "root", timeout: float = 180, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Run `command` as pulumi-command does: one SSH exec request, the user's shell runs it,
        `stdin` (a remote.Command's `stdin`) on its standard input."""
        return subprocess.run(
            ["ssh", "-i", str(self.key_path), "-p", str(self.port),
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
             f"{user}@{self.address}", command],
            capture_output=True, text=True, timeout=timeout,
            **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
        )

    def run_command(self, inputs: dict, which: str, **kwargs) -> subprocess.CompletedProcess:
        """Run a remote.Command's `create` or `delete` from its inputs, with its `stdin`."""
        return self.ssh(inputs[which], stdin=inputs["stdin"], **kwargs)

    def inside(self, *argv: str, check: bool = True, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Run a command in the node's mount namespace, as root, without SSH."""
        return subprocess.run(
            ["nsenter", "--mount", "-t", str(self.process.pid), *argv],
            capture_output=True, text=True, check=check, timeout=timeout, input=stdin,
        )

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.inside("sh", "-c", script, check=check)

    def path(self, path: str) -> Path:
        """A path inside the node, as seen from the test."""
        return Path(f"/proc/{self.process.pid}/root{path}")

    def read(self, path: str) -> bytes:
        return self.path(path).read_bytes()

    def write(self, path: str, data: bytes) -> None:
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def restarts(self) -> list[str]:
        return self.systemctl_log.read_text().splitlines() if self.systemctl_log.exists() else []

    def snapshot(self, roots=SNAPSHOT_ROOTS, extra=("/var/lib/registry-node-trust",)) -> Snapshot:
        """Every file, directory and link under `roots`: bytes, mode and owner (not times)."""
        return snapshot(self.path, (*roots, *extra))


def snapshot(resolve: Callable[[str], Path], roots: tuple[str, ...]) -> Snapshot:
    """Every file, directory and link under `roots` of a node whose paths `resolve` gives:
    bytes, mode and owner (not times)."""
    found: Snapshot = {}
    for root in roots:
        base = resolve(root)
        if not os.path.lexists(base):
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            for name in [*dirnames, *filenames, ""]:
                full = os.path.join(dirpath, name) if name else dirpath
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    kind, content = "link", os.readlink(full).encode()
                elif stat.S_ISDIR(st.st_mode):
                    kind, content = "dir", b""
                else:
                    kind = "file"
                    with open(full, "rb") as f:
                        content = f.read()
                rel = root + full[len(str(base)):]
                found[rel] = Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, content)
    return found


def _jks_certificates(content: bytes) -> list[str]:
    """The certificates in a Java keystore, by alias, without creation dates."""
    with tempfile.NamedTemporaryFile() as store:
        store.write(content)
        store.flush()
        listing = subprocess.run(
            ["keytool", "-list", "-rfc", "-keystore", store.name, "-storepass", "changeit"],
            capture_output=True, text=True, check=True,
        ).stdout
    entries = listing.split("Alias name:")[1:]
    return sorted("\n".join(line for line in e.splitlines() if not line.startswith("Creation date:")) for e in entries)


# Stores that tools rebuild from the system trust store rather than edit. Debian's
# ca-certificates-java hook rebuilds the Java keystore on every
# update-ca-certificates, stamping entries with the day they were added, so
# after delete it holds the same certificates in other bytes. It is compared
# by its certificates.
DERIVED = {"/etc/ssl/certs/java/cacerts": _jks_certificates}


def same(path: str, a: Entry | None, b: Entry | None) -> bool:
    if a == b:
        return True
    if a is None or b is None or path not in DERIVED:
        return False
    if (a.kind, a.mode, a.uid, a.gid) != (b.kind, b.mode, b.uid, b.gid):
        return False
    return DERIVED[path](a.content) == DERIVED[path](b.content)


def diff(before: Snapshot, after: Snapshot) -> list[str]:
    """What changed between two snapshots, one line a path."""
    changes = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if same(path, a, b):
            continue
        if a is None:
            changes.append(f"added {path}")
        elif b is None:
            changes.append(f"removed {path}")
        else:
            what = [f for f in ("kind", "mode", "uid", "gid", "content") if getattr(a, f) != getattr(b, f)]
            changes.append(f"changed {path}: {', '.join(what)}")
    return changes


def overlay_mounts(directory: Path, base: Path | None = None) -> list[str]:
    """Shell lines that mount a copy-on-write overlay on each OVERLAID path, uppers in `directory`."""
    mounts = []
    for path in OVERLAID:
        name = path.strip("/").replace("/", "_")
        upper, work = directory / f"{name}.upper", directory / f"{name}.work"
        upper.mkdir()
        work.mkdir()
        lower = f"{base / (name + '.upper')}:{path}" if base else path
        mounts.append(f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} {path}")
    return mounts


class NodeFactory:
    """Makes nodes for one test module; stops them all at the end."""

    # Addresses are never reused within a test session, so a node that is
    # slow to die cannot answer for its successor.
    next_index = 1

    def __init__(self, base: Path):
        self.base = base
        self.key_path = base / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key_path)], check=True)
        self.authorized_keys = base / "authorized_keys"
        shutil.copy(f"{self.key_path}.pub", self.authorized_keys)
        os.chmod(self.authorized_keys, 0o644)
        self.nodes: list[Node] = []
        self.settled = self.settle()

    def settle(self) -> Path:
        """A layer in which the machine's trust store is up to date, shared by every node.

        A machine whose ca-certificates was upgraded may have derived stores
        (Debian's Java keystore) not yet rebuilt; the first update-ca-certificates
        on it, ours included, rebuilds them. Nodes start from the settled state,
        so that what a test sees change is the node command's doing alone.
        """
        base = self.base / "settled"
        base.mkdir()
        script = "set -e\n" + "\n".join(overlay_mounts(base)) + "\nupdate-ca-certificates --fresh >/dev/null 2>&1\n"
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], check=True, timeout=300)
        for work in base.glob("*.work"):
            shutil.rmtree(work)
        return base

    @property
    def private_key(self) -> str:
        return self.key_path.read_text()

    def start(self, prepare: str = "") -> Node:
        node = Node(NodeFactory.next_index, self.key_path, self.authorized_keys, self.base)
        NodeFactory.next_index += 1
        self.nodes.append(node)
        return node.start(prepare, base=self.settled)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def simulated_nodes(tools: dict[str, str] | None = None) -> Iterator[NodeFactory]:
    """The one way a test module gets nodes: the tools checked first, every node stopped at the end."""
    require_tools(tools or NEEDED)
    base = Path(tempfile.mkdtemp(prefix="registry-nodes-"))
    os.chmod(base, 0o755)
    factory = NodeFactory(base)
    try:
        yield factory
    finally:
        factory.close()
