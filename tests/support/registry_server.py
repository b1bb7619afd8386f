"""Start the real distribution registry exactly as the program's Deployment configures it.

The binary is distribution at the version the default image runs (registry:3.1.1),
built from the Go module proxy by tests/build_registry.sh (.ci/run builds it). It is
started with the registry image's own built-in config.yml and environment, the
Deployment's env, and the files of the Secrets and volumes the pod mounts, re-rooted
under a temporary folder. It listens where the Service would receive traffic:
clusterIP:port. Nothing here types a registry setting by hand: when the Deployment
changes, this follows.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.polling import eventually
from tests.support.stack import StackRun

HERE = Path(__file__).resolve().parent
# /etc/distribution/config.yml as the registry:3 image ships it
# (distribution-library-image's config-example.yml, which its Dockerfile copies
# there and names in CMD); the Deployment does not replace it, its env overrides
# parts of it.
IMAGE_CONFIG = """\
version: 0.1
log:
  level: debug
  fields:
    service: registry
    environment: development
storage:
    delete:
      enabled: true
    cache:
        blobdescriptor: inmemory
    filesystem:
        rootdirectory: /var/lib/registry
    tag:
      concurrencylimit: 5
http:
    addr: :5000
    debug:
        addr: :5001
        prometheus:
            enabled: true
            path: /metrics
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""
IMAGE_CONFIG_PATH = "/etc/distribution/config.yml"
# The image's own ENV (its Dockerfile).
IMAGE_ENV = {"OTEL_TRACES_EXPORTER": "none"}


def registry_binary() -> str:
    """The distribution binary the default image runs, as tests/build_registry.sh built it."""
    return subprocess.run(["bash", str(HERE.parent / "build_registry.sh"), "--path"], check=True, capture_output=True,
                          text=True).stdout.strip()


# For require_tools: the binary's path, and how to get it.
REGISTRY_BINARY = registry_binary()
REGISTRY_TOOL = {REGISTRY_BINARY: "bash tests/build_registry.sh"}


@dataclass
class PodSource:
    """What the registry pod is made of: its Deployment, its Service, and its namespace's Secrets.

    `secrets` maps a Secret's name to its keys' text, as the pod sees them mounted.
    """

    deployment: dict
    service: dict
    cluster_ip: str
    secrets: dict[str, dict[str, str]]

    @classmethod
    def from_run(cls, run: StackRun) -> PodSource:
        """From what the program registered (under mocks)."""
        deployment = run.one("kubernetes:apps/v1:Deployment").inputs
        service = run.one("kubernetes:core/v1:Service")
        namespace = deployment["metadata"]["namespace"]
        secrets = {
            r.inputs["metadata"]["name"]: r.inputs["stringData"]
            for r in run.of_type("kubernetes:core/v1:Secret")
            if r.inputs["metadata"]["namespace"] == namespace
        }
        return cls(deployment, service.inputs, service.outputs["spec"]["clusterIP"], secrets)

    @classmethod
    def from_cluster(cls, deployment: dict, service: dict, secrets: list[dict]) -> PodSource:
        """From the objects as the API server holds them (Secret data base64-encoded)."""
        texts = {
            s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}
            for s in secrets
        }
        return cls(deployment, service, service["spec"]["clusterIP"], texts)


class Registry:
    """The registry pod, as a process on this machine."""

    def __init__(
        self, source: PodSource, root: Path, address: str | None = None, port: int | None = None,
        binary: str = REGISTRY_BINARY, pod: dict | None = None, name: str = "registry",
    ):
        """`address` and `port`: where to listen instead of the Service's clusterIP and port (a
        replica's own address, a node's address and the node port); `binary`: another build of
        the distribution registry (Debian's 2.8, say); `pod`: another pod spec than the Deployment's (a
        CronJob's), on the same volumes under `root`; `name`: its log's and bin folder's name."""
        self.root = root
        self.binary = binary
        self.log_name = name
        self.secrets = source.secrets
        pod = pod or source.deployment["spec"]["template"]["spec"]
        (self.container,) = pod["containers"]
        self.volumes = {v["name"]: v for v in pod["volumes"]}
        service_port = source.service["spec"]["ports"][0]
        self.host = address or source.cluster_ip
        # The name clients dial (the program labels its objects with it); a SAN of the server certificate.
        self.name = source.deployment["metadata"]["labels"]["app.kubernetes.io/instance"]
        self.port = int(port or service_port["port"])
        target = int({p["name"]: p["containerPort"] for p in self.container["ports"]}[service_port["targetPort"]])
        self.env = self._env(target)
        self.ca_pem = self.secrets["registry-tls"]["ca.crt"]
        self.process: subprocess.Popen | None = None

    def path(self, pod_path: str) -> Path:
        return self.root / "pod" / pod_path.lstrip("/")

    def _env(self, container_port: int) -> dict[str, str]:
        env = {}
        for item in self.container["env"]:
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]]
            else:
                env[item["name"]] = item["value"]
        listen = env.get("REGISTRY_HTTP_ADDR", ":5000")
        assert listen.rsplit(":", 1)[1] == str(container_port), "the registry listens where the Service sends traffic"
        env["REGISTRY_HTTP_ADDR"] = f"{self.host}:{self.port}"
        if env.get("REGISTRY_HTTP_DEBUG_ADDR"):  # the metrics port, on this replica's own address
            self.metrics_port = int(env["REGISTRY_HTTP_DEBUG_ADDR"].rsplit(":", 1)[1])
            env["REGISTRY_HTTP_DEBUG_ADDR"] = f"{self.host}:{self.metrics_port}"
        mounts = [m["mountPath"] for m in self.container["volumeMounts"]] + [IMAGE_CONFIG_PATH]
        for key, value in env.items():
            if any(value == m or value.startswith(m.rstrip("/") + "/") for m in mounts):
                env[key] = str(self.path(value))
        return env

    def materialise(self) -> None:
        """Write the pod's mounted files; the claim's folder is kept across restarts."""
        for mount in self.container["volumeMounts"]:
            volume = self.volumes[mount["name"]]
            target = self.path(mount["mountPath"])
            if "secret" in volume:
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                data = self.secrets[volume["secret"]["secretName"]]
                items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (target / item["path"]).write_text(data[item["key"]])
            else:
                target.mkdir(parents=True, exist_ok=True)
        config = self.path(IMAGE_CONFIG_PATH)
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(IMAGE_CONFIG)

    def start(
        self,
        extra_env: dict[str, str] | None = None,
        without: tuple[str, ...] = (),
        files: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Registry:
        """Start it; `without` drops env keys by prefix, `files` replaces mounted files by pod path;
        `wait`: until it answers (a command that may end first does not)."""
        self.materialise()
        for pod_path, content in (files or {}).items():
            self.path(pod_path).write_text(content)
        env = {**IMAGE_ENV, **{k: v for k, v in self.env.items() if not (without and k.startswith(without))}}
        env.update(extra_env or {})
        self.started_env = env
        self.log = open(self.root / f"{self.log_name}.log", "ab")
        self.process = subprocess.Popen(
            self.argv(), env={"PATH": f"{self.bin_dir()}:{os.environ['PATH']}", **env},
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready(tls="REGISTRY_HTTP_TLS_CERTIFICATE" in env)
        return self

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """`registry ARGS <config>` with this pod's env and files, as `kubectl exec` into it runs it."""
        return subprocess.run(
            [self.binary, *args, str(self.path(IMAGE_CONFIG_PATH))], env={"PATH": os.environ["PATH"], **self.started_env},
            capture_output=True, text=True, timeout=300,
        )

    def argv(self) -> list[str]:
        """The container's command (with pod paths re-rooted), or the image's `registry serve`."""
        command = self.container.get("command")
        if not command:
            return [self.binary, "serve", str(self.path(IMAGE_CONFIG_PATH))]
        return [str(self.path(a)) if a == IMAGE_CONFIG_PATH else a for a in command]

    def bin_dir(self) -> Path:
        """`registry`, as the image names the binary, for a container command that calls it;
        a script at `<root>/<name>-registry` (tests' hook) takes its place when there is one."""
        folder = self.root / f"bin-{self.log_name}"
        folder.mkdir(exist_ok=True)
        link = folder / "registry"
        hook = self.root / f"{self.log_name}-registry"
        if not link.exists():
            link.symlink_to(hook if hook.exists() else shutil.which(self.binary))
        return folder

    def wait_ready(self, tls: bool = True, seconds: float = 15) -> None:
        context = ssl.create_default_context(cadata=self.ca_pem) if tls else None

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError("registry exited: " + (self.root / f"{self.log_name}.log").read_text()[-2000:])
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                if context:
                    context.wrap_socket(sock, server_hostname=self.name).close()
            return True

        eventually(answers, "the registry to answer", seconds, every=0.05, ignoring=(OSError,))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self, "log"):
            self.log.close()


@contextmanager
def serving(run: StackRun, root: Path, **where) -> Iterator[Registry]:
    """The registry's pod as `run` rendered it, started under `root`, stopped at the end."""
    registry = Registry(PodSource.from_run(run), root, **where).start()
    try:
        yield registry
    finally:
        registry.stop()


def pull_authfile(run: StackRun, path: Path) -> Path:
    """The pull secret of the first namespace, as a file skopeo reads (--authfile), readable by its owner alone."""
    pull = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["type"] == "kubernetes.io/dockerconfigjson")
    path.write_text(pull.inputs["stringData"][".dockerconfigjson"])
    path.chmod(0o600)
    return path
