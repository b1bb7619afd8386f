"""A real Kubernetes node on this machine: kubelet, kube-proxy, containerd and runc.

This machine is a privileged container on cgroup v1, the same kind of place kind
runs its nodes in. A node here is a process tree in namespaces of its own:

- mount: every top-level folder a copy-on-write overlay of this machine's (as
  tests/support/nodes.py makes them), /run a tmpfs of its own, containerd's
  root a folder of the test's; whatever the node writes, /etc/hosts included,
  stays in the node;
- network: its own interfaces, routes and iptables, reached from a
  "workstation" namespace through a veth pair (the only link it has); kube-proxy
  programs iptables there and the CNI bridge plugin makes the pods' bridge;
- UTS (its hostname) and PID (its processes, containerd's shims included, end
  with it).

The API server stays on this machine's loopback: in the node's namespace a
forwarder (tests/support/forward.py) listens on the node's own address, on
the API server's port, and carries each connection to it. The API server
advertises that address, so the `kubernetes` Service reaches it from pods too,
through kube-proxy, as on any cluster.

kubelet runs with what this machine needs: the cgroupfs driver, swap allowed,
`failCgroupV1: false` (Kubernetes 1.35 and later refuse cgroup v1 without it),
no cloud provider, and its pods' cgroups under a root of its own, removed at
the end. containerd reads the node's `/etc/containerd/certs.d` (its registry
`config_path`), as containerd 2 does by default. Images come from
tests/support/images.py, imported with `ctr`.

`Machine` takes what the machine looks like before (iptables, links, mounts,
processes, /etc) and checks it is the same after.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import textwrap
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.engine.cluster import ControlPlane
from tests.support.forward import Forwarder
from tests.support.images import Image
from tests.support.nodes import overlay_mounts
from tests.support.polling import eventually

# The workstation network: one /30 per node, the workstation side first.
WORKSTATION_NET = "192.168.77"
POD_NETS = "10.88"
CNI_BIN = "/usr/lib/cni"
SOCKET = "/run/containerd/containerd.sock"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Our processes, by the names they run as: none may be left when the node is gone.
DAEMONS = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "pause")


def node_address(index: int) -> str:
    """Node `index`'s address (1, 2...), on its link to the workstation."""
    return f"{WORKSTATION_NET}.{4 * index - 2}"


def run(*argv: str, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout, **kwargs)


class Workstation:
    """A network namespace the nodes hang off: it routes between them, and a test pushes
    from it as from a workstation (with a mount namespace of its own: /etc is its copy)."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        boot = self.root / "boot.sh"
        boot.write_text(
            "set -e\n" + "\n".join(overlay_mounts(self.root)) + "\n"
            "mount -t tmpfs -o mode=755 tmpfs /run\n"
            "ip link set lo up\n"
            "echo 1 > /proc/sys/net/ipv4/ip_forward\n"
            "exec sleep infinity\n"
        )
        self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--net", "sh", str(boot)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(self._ready, "the workstation", 20)

    def _ready(self) -> bool:
        return self.sh("cat /proc/sys/net/ipv4/ip_forward", check=False).stdout.strip() == "1"

    def inside(self, *argv: str, check: bool = True, timeout: float = 120, stdin: str | None = None):
        return run("nsenter", "-t", str(self.process.pid), "--mount", "--net", *argv, check=check, timeout=timeout,
                   input=stdin)

    def sh(self, script: str, check: bool = True, timeout: float = 120):
        return self.inside("sh", "-c", script, check=check, timeout=timeout)

    def path(self, path: str) -> Path:
        return Path(f"/proc/{self.process.pid}/root{path}")

    def stop(self) -> None:
        _end(self.process)
        _wait(lambda: not Path(f"/proc/{self.process.pid}").exists(), "the workstation to end", 30)


@dataclass
class RealNode:
    """One node: start() brings it up to containerd with the images; join() starts
    kube-proxy and kubelet, which registers it."""

    name: str
    index: int  # 1, 2...: its addresses
    root: Path
    bin_dir: Path
    cluster: ControlPlane
    workstation: Workstation
    process: subprocess.Popen | None = None
    # The node's pid 1 (unshare --fork's child), whose namespaces are the node's.
    pid: int = 0
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)
    forwarder: Forwarder | None = None
    cgroup: str = ""
    # Each daemon's command line, to start it again.
    argv: dict[str, list[str]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return node_address(self.index)

    @property
    def gateway(self) -> str:
        return f"{WORKSTATION_NET}.{4 * self.index - 3}"

    @property
    def pod_cidr(self) -> str:
        return f"{POD_NETS}.{self.index}.0/24"

    # ---- running things in it ------------------------------------------------------

    def inside(self, *argv: str, check: bool = True, timeout: float = 120, stdin: str | None = None):
        """A command in the node: all its namespaces."""
        return run("nsenter", "-t", str(self.pid), "--all", *argv, check=check, timeout=timeout, input=stdin)

    def sh(self, script: str, check: bool = True, timeout: float = 120):
        return self.inside("sh", "-c", script, check=check, timeout=timeout)

    def path(self, path: str) -> Path:
        """A path in the node, as the test sees it."""
        return Path(f"/proc/{self.pid}/root{path}")

    def read(self, path: str) -> bytes:
        return self.path(path).read_bytes()

    def ctr(self, *args: str, check: bool = True):
        return self.inside("ctr", "--address", SOCKET, "-n", "k8s.io", *args, check=check)

    def crictl(self, *args: str, check: bool = True):
        return self.inside(str(self.bin_dir / "crictl"), "--runtime-endpoint", f"unix://{SOCKET}", *args, check=check)

    # ---- life ------------------------------------------------------------------------

    def start(self, images: dict[str, Image]) -> RealNode:
        self.root.mkdir(parents=True)
        (self.root / "overlay").mkdir()
        (self.root / "containerd").mkdir()
        (self.root / "logs").mkdir()
        boot = self.root / "boot.sh"
        reaper = "import os, time\nwhile True:\n    try:\n        os.waitpid(-1, 0)\n    except ChildProcessError:\n        time.sleep(1)\n"
        boot.write_text(
            "set -e\n" + "\n".join(overlay_mounts(self.root / "overlay")) + "\n"
            "mount -t tmpfs -o mode=755 tmpfs /run\n"
            "mkdir -p /run/lock /var/lib/containerd /var/lib/kubelet /var/log/pods\n"
            f"mount --bind {self.root / 'containerd'} /var/lib/containerd\n"
            f"hostname {self.name}\n"
            "ip link set lo up\n"
            # The node's pid 1 reaps what its daemons leave (containerd's shims).
            f"exec python3 -c {_quote(reaper)}\n"
        )
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--net", "--uts", "--pid", "--fork", "--mount-proc",
             "sh", str(boot)], stdout=open(self.root / "logs" / "boot.log", "wb"), stderr=subprocess.STDOUT)
        self.pid = _wait(lambda: _child(self.process.pid), f"node {self.name} to start", 10)
        _wait(lambda: self.path("/run/lock").exists(), f"node {self.name} to boot", 30)
        self._network()
        self._write_configs(images)
        self._start("containerd", ["containerd", "--config", "/etc/containerd/config.toml"])
        _wait(lambda: self.ctr("version", check=False).returncode == 0, "containerd", 30)
        for image in images.values():
            if image.name.rsplit("/", 1)[1].split(":")[0] != "hello":
                self.ctr("images", "import", "--all-platforms", str(image.archive))
                # By digest too, as a pull records it: CRI finds `name@sha256:...` only so.
                self.ctr("images", "tag", image.name, f"{image.name.rsplit(':', 1)[0]}@{image.digest}")
        return self

    def join(self) -> float:
        """kube-proxy and kubelet start; returns when the Node object exists (monotonic)."""
        self._cgroups("make")
        self._start("kube-proxy", [str(self.bin_dir / "kube-proxy"), "--config", "/etc/kubernetes/kube-proxy.yaml",
                                   "--hostname-override", self.name])
        self._start("kubelet", [str(self.bin_dir / "kubelet"), "--config", "/etc/kubernetes/kubelet.yaml",
                                "--kubeconfig", "/etc/kubernetes/kubeconfig", "--node-ip", self.address,
                                "--hostname-override", self.name, "--root-dir", "/var/lib/kubelet", "--v", "2"])
        return _wait(lambda: self.cluster.api.find(f"/api/v1/nodes/{self.name}") and time.monotonic(),
                     f"node {self.name} to register", 120)

    def restart(self, daemon: str) -> None:
        """Stop one daemon (TERM, as systemctl does) and start it again."""
        self._stop(daemon)
        self._start(daemon, self.argv[daemon])

    def stop(self) -> None:
        """Every process ends (kubelet first, so that it starts nothing more), the namespaces
        go with the last of them, and the pods' cgroups are removed."""
        for name in ("kubelet", "kube-proxy", "containerd"):
            if name in self.daemons:
                self._stop(name)
        if self.forwarder is not None:
            self.forwarder.stop()
        if self.pid:
            # The pid namespace's init: the kernel ends every process left in it (the shims, the pods).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            _end(self.process)
        _wait(lambda: not Path(f"/proc/{self.pid}").exists(), f"node {self.name} to end", 30)
        self._cgroups("remove")

    def _stop(self, name: str) -> None:
        """TERM to the daemon itself (nsenter, its parent, forwards nothing), then wait."""
        process = self.daemons.pop(name)
        daemon = _child(process.pid)
        if daemon:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon, signal.SIGKILL)
            process.wait(10)

    # ---- internals -----------------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> None:
        self.argv[name] = argv
        log = open(self.root / "logs" / f"{name}.log", "ab")
        self.daemons[name] = subprocess.Popen(["nsenter", "-t", str(self.pid), "--all", *argv],
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _network(self) -> None:
        ws = self.workstation
        outer, inner = f"ws{self.index}", "eth0"
        # Made inside the node's namespace, then one end moved to the workstation's:
        # no link is ever made in this machine's own namespace.
        self.inside("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        run("nsenter", "-t", str(self.pid), "--net", "ip", "link", "set", outer, "netns", str(ws.process.pid))
        self.sh(f"ip addr add {self.address}/30 dev {inner} && ip link set {inner} up && "
                f"ip route add default via {self.gateway} && echo 1 > /proc/sys/net/ipv4/ip_forward")
        ws.inside("sh", "-c", f"ip addr add {self.gateway}/30 dev {outer} && ip link set {outer} up && "
                              f"ip route add {self.pod_cidr} via {self.address}")
        api = urllib.parse.urlsplit(self.cluster.api.server)
        # The API server's port, on the node's address: where the `kubernetes` Service's endpoint is.
        self.forwarder = Forwarder((self.address, api.port), (api.hostname, api.port),
                                   listen_netns=f"/proc/{self.pid}/ns/net")

    def _write_configs(self, images: dict[str, Image]) -> None:
        api = urllib.parse.urlsplit(self.cluster.api.server)
        kubeconfig = json.loads(self.cluster.kubeconfig.read_text())
        kubeconfig["clusters"][0]["cluster"]["server"] = f"https://{self.address}:{api.port}"
        # The API server's certificate names `kubernetes`, not every node's address.
        kubeconfig["clusters"][0]["cluster"]["tls-server-name"] = "kubernetes"
        files = {
            "/etc/kubernetes/kubeconfig": json.dumps(kubeconfig),
            "/etc/containerd/config.toml": containerd_config(images["pause"].name, self.pod_cidr),
            "/etc/cni/net.d/10-registry-test.conflist": cni_config(self.pod_cidr),
            "/etc/kubernetes/kubelet.yaml": kubelet_config(self.address, self._cgroup_root()),
            "/etc/kubernetes/kube-proxy.yaml": kube_proxy_config(f"{POD_NETS}.0.0/16"),
        }
        for path, text in files.items():
            target = self.path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        # What kubelet's pods get as their resolver: the node's, which names no server here.
        self.path("/etc/resolv.conf").write_text("nameserver 127.0.0.53\n")

    def _cgroup_root(self) -> str:
        if not self.cgroup:
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
            self.cgroup = f"/registry-test-{self.name}-{digest}"
        return self.cgroup

    def _cgroups(self, action: str) -> None:
        """The pods' cgroup root in every v1 hierarchy: made before kubelet, removed (deepest first) after."""
        for hierarchy in sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()):
            folder = hierarchy / self._cgroup_root().lstrip("/")
            if action == "make":
                folder.mkdir(exist_ok=True)
                continue
            if not folder.exists():
                continue
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                folder.rmdir()


def containerd_config(pause: str, pod_cidr: str) -> str:
    return textwrap.dedent(f"""\
        version = 2
        root = "/var/lib/containerd"
        state = "/run/containerd"
        [grpc]
          address = "{SOCKET}"
        [plugins."io.containerd.grpc.v1.cri"]
          sandbox_image = "{pause}"
          # In a container, a process may not lower its own OOM score below its parent's.
          restrict_oom_score_adj = true
          disable_hugetlb_controller = true
          [plugins."io.containerd.grpc.v1.cri".containerd]
            snapshotter = "overlayfs"
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
              runtime_type = "io.containerd.runc.v2"
              [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                SystemdCgroup = false
          [plugins."io.containerd.grpc.v1.cri".cni]
            bin_dir = "{CNI_BIN}"
            conf_dir = "/etc/cni/net.d"
          [plugins."io.containerd.grpc.v1.cri".registry]
            config_path = "/etc/containerd/certs.d"
        """)


def cni_config(pod_cidr: str) -> str:
    return json.dumps({
        "cniVersion": "0.4.0", "name": "registry-test",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    })


def kubelet_config(address: str, cgroup_root: str) -> str:
    return json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # What this machine needs: cgroup v1 without systemd, swap allowed.
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupRoot": cgroup_root, "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{SOCKET}",
        "address": address, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "staticPodPath": "", "resolvConf": "/etc/resolv.conf",
        # A shared disk: no eviction and no image collection for what others fill it with.
        "evictionHard": {"memory.available": "0%", "nodefs.available": "0%", "imagefs.available": "0%",
                         "nodefs.inodesFree": "0%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "localStorageCapacityIsolation": False, "protectKernelDefaults": False,
        "serializeImagePulls": False, "rotateCertificates": False,
    })


def kube_proxy_config(cluster_cidr: str) -> str:
    return json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "iptables", "clusterCIDR": cluster_cidr,
        "clientConnection": {"kubeconfig": "/etc/kubernetes/kubeconfig"},
        # No conntrack sysctls: they are this machine's, not the node's.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
    })


class Machine:
    """What this machine looks like now; `changes()` says what differs later."""

    def __init__(self):
        self.before = self.look()

    @staticmethod
    def look() -> dict[str, object]:
        def mounts() -> list[str]:
            return sorted(line.split(" - ")[0].split(" ", 4)[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())

        def processes() -> list[str]:
            found = []
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    with contextlib.suppress(OSError):
                        name = (proc / "comm").read_text().strip()
                        if name in DAEMONS:
                            found.append(name)
            return sorted(found)

        etc = hashlib.sha256()
        for path in sorted(Path("/etc").rglob("*")):
            with contextlib.suppress(OSError):
                etc.update(str(path).encode())
                if path.is_file() and not path.is_symlink():
                    etc.update(path.read_bytes())
        return {
            "iptables": run("iptables-save", check=False).stdout.splitlines()[1:-1],
            "links": sorted(run("ip", "-o", "link", "show").stdout.split("\n")),
            "routes": run("ip", "route", "show").stdout,
            "mounts": mounts(),
            "processes": processes(),
            "etc": etc.hexdigest(),
            "cgroups": sorted(p.name for h in CGROUP_ROOT.iterdir() if h.is_dir() for p in h.iterdir()
                              if p.name.startswith("registry-test")),
        }

    def changes(self) -> dict[str, tuple]:
        after = self.look()
        return {key: (self.before[key], after[key]) for key in after if after[key] != self.before[key]}


def _child(pid: int) -> int:
    """The first child of a process, or 0."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _wait(check, what: str, seconds: float):
    return eventually(check, what, seconds, ignoring=(OSError, subprocess.SubprocessError))


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)



@dataclass
class RealCluster:
    """A control plane (tests/support/engine/cluster.py) and real nodes on one workstation network."""

    cluster: ControlPlane
    workstation: Workstation
    nodes: dict[str, RealNode]


@contextlib.contextmanager
def real_cluster(bin_dir: Path, root: Path, images: dict[str, Image], names: tuple[str, ...] = ("node-1", "node-2"),
                 service_cidr: str = "10.96.0.0/12"):
    """Every node started up to containerd with the images (none joined yet), and a volume
    of the default class for the registry's claim; at the end, the machine as it was."""
    machine = Machine()
    workstation = Workstation(root / "workstation")
    nodes: dict[str, RealNode] = {}
    cluster = ControlPlane(bin_dir, root / "cluster", service_cidr=service_cidr, node_names=(),
                           advertise=node_address(1))
    try:
        cluster.start()
        volume = root / "cluster" / "volumes" / cluster.add_volume()
        os.chown(volume, 1000, 1000)  # a hostPath volume: the registry's user (1000) must write it
        for index, name in enumerate(names, start=1):
            nodes[name] = RealNode(name, index, root / name, bin_dir, cluster, workstation).start(images)
        yield RealCluster(cluster, workstation, nodes)
    finally:
        for node in nodes.values():
            node.stop()
        workstation.stop()
        cluster.stop()
        changes = machine.changes()
        assert changes == {}, f"the machine is not as it was: {changes}"
