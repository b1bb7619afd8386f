"""A throwaway Kubernetes control plane on loopback, for tests.

etcd, the real kube-apiserver, kube-controller-manager and kube-scheduler, and
kwok, which plays the kubelets of a few fake nodes: pods are scheduled, get an
IP and turn Ready, though no container runs. The controller manager does what
a cluster does around a workload: ReplicaSets and pods for Deployments,
Endpoints for Services, binding claims to volumes, finishing namespace deletion
and garbage collection.

Everything listens on 127.0.0.1, on ports the kernel hands out. The binaries
come from tests/engine/toolchain.sh. Use it from any test suite:

    with ControlPlane(bin_dir, root, service_cidr="127.0.10.0/24") as cluster:
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        cluster.api.get("/api/v1/namespaces/default")
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.support.polling import eventually

LOOPBACK = "127.0.0.1"
# kwok manages only nodes that carry this annotation.
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# Pod IPs kwok hands out. They are never dialled: the tests reach the registry
# on the Service's address, where a real registry process listens.
POD_CIDR = "10.244.0.0/16"
STORAGE_CLASS = "manual"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: str):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


class KubeApi:
    """Just enough of a Kubernetes client: JSON over HTTPS with a bearer token."""

    def __init__(self, server: str, ca_pem: str, token: str):
        self.server = server
        self.token = token
        self.context = ssl.create_default_context(cadata=ca_pem)

    def request(self, method: str, path: str, body: dict | None = None) -> Any:
        payload = self.raw(method, path, body)
        return json.loads(payload) if payload else None

    def raw(self, method: str, path: str, body: dict | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, method, path, error.read().decode(errors="replace")) from None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def find(self, path: str) -> dict | None:
        """The object at `path`, or None when there is none."""
        try:
            return self.get(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def create(self, path: str, body: dict) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def items(self, path: str) -> list[dict]:
        return self.get(path)["items"]


def free_ports(count: int) -> list[int]:
    """`count` different ports free now: each socket stays bound until all are
    chosen, or the kernel may hand out one port twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificates(service_ip: str, extra_ips: tuple[str, ...] = ()) -> tuple[bytes, bytes, bytes]:
    """A CA, and the API server's serving certificate signed by it, as PEM: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test control plane CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")]
    # ::1 too: tests tell pods an IPv6 address for the API server, forwarded to it (tests/support/forward.py).
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in (LOOPBACK, "::1", service_ip, *extra_ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(ca), _pem(cert), _key_pem(key)


def kubeconfig_text(server: str, ca_pem: bytes, token: str) -> str:
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }, indent=2)


class ControlPlane:
    """etcd, API server, controller manager, scheduler and kwok, started and stopped together."""

    def __init__(
        self, bin_dir: Path, root: Path, service_cidr: str, node_names: tuple[str, ...] = ("node-1", "node-2"),
        node_grace: str | None = None, advertise: str | None = None,
    ):
        """`node_grace`: how long a node may go without a heartbeat before the node
        controller marks it NotReady (kube-controller-manager's default otherwise).
        `advertise`: the address the API server gives as the `kubernetes` Service's
        endpoint (a real node's, where it is forwarded to the API server:
        tests/support/real_node.py); without it, that Service has no endpoint."""
        self.bin = bin_dir
        self.root = root
        self.service_cidr = service_cidr
        self.node_names = node_names
        self.node_grace = node_grace
        self.advertise = advertise
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.kubeconfig = root / "kubeconfig"
        self.token = secrets.token_hex(16)
        self.api: KubeApi | None = None
        self.volume_count = 0

    # ---- lifecycle ---------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        self.root.mkdir(parents=True, exist_ok=True)
        # The first address of the range is the API server's own Service.
        service_ip = str(next(ipaddress.ip_network(self.service_cidr).hosts()))
        ca, cert, key = _certificates(service_ip, (self.advertise,) if self.advertise else ())
        files = {"ca.crt": ca, "apiserver.crt": cert, "apiserver.key": key}
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files["sa.key"] = _key_pem(sa_key)
        files["sa.pub"] = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        files["tokens.csv"] = f"{self.token},admin,admin,system:masters\n".encode()
        for name, content in files.items():
            path = self.root / name
            path.write_bytes(content)
            path.chmod(0o600)

        etcd_port, peer_port, api_port = free_ports(3)
        etcd_url, peer_url = f"http://{LOOPBACK}:{etcd_port}", f"http://{LOOPBACK}:{peer_port}"
        self._spawn("etcd", [
            "--name=test", f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}", "--log-level=warn",
            "--quota-backend-bytes=1073741824",
        ])
        self._wait(lambda: _http_ok(f"{etcd_url}/health"), "etcd", 30)

        server = f"https://{LOOPBACK}:{api_port}"
        self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}",
            f"--service-cluster-ip-range={self.service_cidr}",
            f"--bind-address={LOOPBACK}", f"--advertise-address={self.advertise or LOOPBACK}", f"--secure-port={api_port}",
            f"--tls-cert-file={self.root / 'apiserver.crt'}", f"--tls-private-key-file={self.root / 'apiserver.key'}",
            f"--client-ca-file={self.root / 'ca.crt'}",
            f"--token-auth-file={self.root / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.root / 'sa.pub'}",
            f"--service-account-signing-key-file={self.root / 'sa.key'}",
            # A loopback advertise address is not a valid Endpoints address: without a
            # real node's, nothing dials the `kubernetes` Service.
            f"--endpoint-reconciler-type={'lease' if self.advertise else 'none'}",
            "--allow-privileged=true",
            f"--cert-dir={self.root / 'apiserver-certs'}",
        ])
        self.kubeconfig.write_text(kubeconfig_text(server, ca, self.token))
        self.kubeconfig.chmod(0o600)
        self.api = KubeApi(server, ca.decode(), self.token)
        self._wait(self._api_ready, "kube-apiserver", 90)

        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0",
            f"--service-account-private-key-file={self.root / 'sa.key'}",
            f"--root-ca-file={self.root / 'ca.crt'}",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--use-service-account-credentials=false",
            *([f"--node-monitor-grace-period={self.node_grace}"] if self.node_grace else []),
        ])
        self._spawn("kube-scheduler", [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0"])
        self._spawn("kwok", [
            f"--kubeconfig={self.kubeconfig}", f"--config={self.bin / 'kwok.yaml'}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}", "--node-lease-duration-seconds=40",
        ])
        for name in self.node_names:
            self.api.create("/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {KWOK_ANNOTATION: "fake"},
                             "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}},
            })
        self._wait(self._nodes_ready, "kwok nodes Ready", 60)
        # Pods need their namespace's `default` ServiceAccount, which the controller manager makes.
        self._wait(lambda: self.api.find("/api/v1/namespaces/default/serviceaccounts/default"), "default ServiceAccount", 60)
        # The default class of volumes made by hand (add_volume): no provisioner,
        # as an operator sets one up for static volumes.
        self.api.create("/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {DEFAULT_CLASS: "true"}},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
        })
        return self

    def stop(self) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    # ---- what tests use ------------------------------------------------------

    def add_volume(self, size: str = "10Gi") -> str:
        """A PersistentVolume of the default class, which a claim with no storage
        class binds to; returns its name.

        There is no provisioner: a claim binds to a volume made beforehand, as on
        a cluster where an operator makes them by hand.
        """
        self.volume_count += 1
        name = f"test-volume-{self.volume_count}"
        path = self.root / "volumes" / name
        path.mkdir(parents=True)
        self.api.create("/api/v1/persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(path)},
            },
        })
        return name

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def wait_for(self, check, what: str, seconds: float = 60):
        return self._wait(check, what, seconds)

    # ---- internals -----------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "wb")
        process = subprocess.Popen([str(self.bin / name), *args], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append((name, process))

    def _check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")

    def _wait(self, check, what: str, seconds: float):
        """Until `check` holds; a process of the control plane that exits ends the wait at once."""

        def alive_and():
            self._check_alive()
            return check()

        return eventually(alive_and, what, seconds, ignoring=(OSError, ApiError))

    def _api_ready(self) -> bool:
        return self.api.raw("GET", "/readyz") == b"ok"

    def _nodes_ready(self) -> bool:
        nodes = self.api.items("/api/v1/nodes")
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
        }
        return ready >= set(self.node_names)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200
