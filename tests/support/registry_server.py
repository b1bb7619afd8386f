"""Start the registry's pod exactly as the program's Deployment configures it: the real
distribution registry, and the real nginx in front of it.

The registry is distribution at the version the default image runs (registry:3.1.1),
built from the Go module proxy by tests/build_registry.sh (.ci/run builds it). It is
started with the registry image's own built-in config.yml and environment, the
Deployment's env, and the files of the Secrets and volumes the pod mounts, re-rooted
under a temporary folder. The proxy is Debian's nginx (tests/build_nginx.sh) with the
nginx.conf of the program's ConfigMap, its mounted paths re-rooted the same way and two
addresses put where this machine has them: it listens where the Service would receive
traffic (clusterIP:port), the registry behind it on a free port of that address
instead of the pod's own loopback. Nothing here types a registry or proxy setting by
hand: when the Deployment or the ConfigMap changes, this follows.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from registry.proxy import REGISTRY_ADDRESS
from registry.pull_secrets import docker_config_json
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


def nginx_binary() -> str:
    """Debian's nginx, as tests/build_nginx.sh unpacked it."""
    return subprocess.run(["bash", str(HERE.parent / "build_nginx.sh"), "--path"], check=True, capture_output=True,
                          text=True).stdout.strip()


# For require_tools: the binaries' paths, and how to get them.
REGISTRY_BINARY = registry_binary()
NGINX_BINARY = nginx_binary()
REGISTRY_TOOL = {REGISTRY_BINARY: "bash tests/build_registry.sh", NGINX_BINARY: "bash tests/build_nginx.sh"}


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class PodSource:
    """What the registry pod is made of: its Deployment, its Service, and its namespace's Secrets.

    `secrets` maps a Secret's name to its keys' text, as the pod sees them mounted.
    """

    deployment: dict
    service: dict
    cluster_ip: str
    secrets: dict[str, dict[str, str]]
    # A ConfigMap's name to its data (the proxy's nginx.conf).
    config_maps: dict[str, dict[str, str]]

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
        config_maps = {
            r.inputs["metadata"]["name"]: r.inputs["data"]
            for r in run.of_type("kubernetes:core/v1:ConfigMap")
            if r.inputs["metadata"]["namespace"] == namespace
        }
        return cls(deployment, service.inputs, service.outputs["spec"]["clusterIP"], secrets, config_maps)

    @classmethod
    def from_cluster(cls, deployment: dict, service: dict, secrets: list[dict], config_maps: list[dict]) -> PodSource:
        """From the objects as the API server holds them (Secret data base64-encoded)."""
        texts = {
            s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}
            for s in secrets
        }
        maps = {c["metadata"]["name"]: c.get("data", {}) for c in config_maps}
        return cls(deployment, service, service["spec"]["clusterIP"], texts, maps)


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
        self.config_maps = source.config_maps
        pod = pod or source.deployment["spec"]["template"]["spec"]
        (self.container,) = pod["containers"]
        # The proxy sidecar, where the pod has one (a pod spec of an older release has none).
        self.proxy = next((c for c in pod.get("initContainers", []) if c["name"] == "proxy"), None)
        # A Job's pod (the collection's) ends when its container does, and kubelet stops its sidecar
        # then; a Deployment's registry is restarted in a pod whose proxy goes on.
        self.ends_with_container = pod.get("restartPolicy") == "Never"
        self.volumes = {v["name"]: v for v in pod["volumes"]}
        service_port = source.service["spec"]["ports"][0]
        self.host = address or source.cluster_ip
        # The name clients dial (the program labels its objects with it); a SAN of the server certificate.
        self.name = source.deployment["metadata"]["labels"]["app.kubernetes.io/instance"]
        self.port = int(port or service_port["port"])
        front = self.proxy or self.container
        target = int({p["name"]: p["containerPort"] for p in front["ports"]}[service_port["targetPort"]])
        self.backend = f"{self.host}:{free_port(self.host)}" if self.proxy else f"{self.host}:{self.port}"
        self.env = self._env(target)
        self.ca_pem = self.secrets["registry-tls"]["ca.crt"]
        self.process: subprocess.Popen | None = None
        self.proxy_process: subprocess.Popen | None = None

    def path(self, pod_path: str) -> Path:
        return self.root / "pod" / pod_path.lstrip("/")

    def proxy_path(self, pod_path: str) -> Path:
        """Where the proxy container's mounts are: its own root (its /tmp is not the registry's)."""
        return self.root / f"{self.log_name}-proxy" / pod_path.lstrip("/")

    def _env(self, container_port: int) -> dict[str, str]:
        env = {}
        for item in self.container["env"]:
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]]
            else:
                env[item["name"]] = item["value"]
        listen = env.get("REGISTRY_HTTP_ADDR", ":5000")
        if self.proxy:
            assert listen == REGISTRY_ADDRESS, "the registry listens on the pod's loopback, where the proxy sends"
        else:
            assert listen.rsplit(":", 1)[1] == str(container_port), "the registry listens where the Service sends"
        env["REGISTRY_HTTP_ADDR"] = self.backend
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
        self._mount(self.container, self.path)
        if self.proxy:
            self._mount(self.proxy, self.proxy_path)
        config = self.path(IMAGE_CONFIG_PATH)
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(IMAGE_CONFIG)

    def _mount(self, container: dict, path) -> None:
        for mount in container["volumeMounts"]:
            volume = self.volumes[mount["name"]]
            target = path(mount["mountPath"])
            source = volume.get("secret") or volume.get("configMap")
            if source:
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                data = (self.secrets[source["secretName"]] if "secretName" in source
                        else self.config_maps[source["name"]])
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (target / item["path"]).write_text(data[item["key"]])
            else:
                target.mkdir(parents=True, exist_ok=True)

    def proxy_config(self) -> Path:
        """The ConfigMap's nginx.conf with its pod paths re-rooted and this machine's addresses."""
        assert self.proxy is not None
        mounts = sorted((m["mountPath"] for m in self.proxy["volumeMounts"]), key=len, reverse=True)
        (config,) = [a for a in self.proxy["command"] if a.endswith(".conf")]
        text = self.proxy_path(config).read_text()
        pattern = "|".join(re.escape(m) for m in mounts)
        text = re.sub(rf"(?<=\s)({pattern})(?=[/;])", lambda m: str(self.proxy_path(m.group(1))), text)
        listen = re.findall(r"^\s*listen (\S+) ssl;$", text, re.M)
        assert listen == [str(self.front_port)], listen
        text = text.replace(f"listen {self.front_port} ssl;", f"listen {self.host}:{self.port} ssl;")
        assert text.count(f"server {REGISTRY_ADDRESS};") == 1
        text = text.replace(f"server {REGISTRY_ADDRESS};", f"server {self.backend};")
        rerooted = self.root / f"{self.log_name}-nginx.conf"
        rerooted.write_text(text)
        return rerooted

    @property
    def front_port(self) -> int:
        assert self.proxy is not None
        (port,) = [p["containerPort"] for p in self.proxy["ports"] if p["name"] == "registry"]
        return int(port)

    def start_proxy(self) -> None:
        """nginx as the proxy container runs it, with the rendered config re-rooted."""
        assert self.proxy is not None
        config = self.proxy_config()
        argv = [NGINX_BINARY if a == "nginx" else str(config) if a.endswith(".conf") else a
                for a in self.proxy["command"]]
        # In the pod nginx runs as the pod's user, its workers as well; here the tests run as
        # root, whose nginx would hand its workers to `nobody`, who cannot read the test's folders.
        argv += ["-g", "user root root;"]
        self.proxy_log = open(self.root / f"{self.log_name}-proxy.log", "ab")
        self.proxy_process = subprocess.Popen(argv, stdout=self.proxy_log, stderr=subprocess.STDOUT,
                                              start_new_session=True)

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
        if self.proxy and (self.proxy_process is None or self.proxy_process.poll() is not None):
            self.start_proxy()  # a sidecar: it starts first, and a restarted registry keeps it
        self.process = subprocess.Popen(
            self.argv(), env={"PATH": f"{self.bin_dir()}:{os.environ['PATH']}", **env},
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        if self.proxy and self.ends_with_container:
            # As kubelet does with a Job's sidecar: the proxy stops once the registry's container ends.
            threading.Thread(target=self._end_proxy_with, args=(self.process, self.proxy_process), daemon=True).start()
        if wait:
            self.wait_ready(tls=bool(self.proxy) or "REGISTRY_HTTP_TLS_CERTIFICATE" in env)
        return self

    def _end_proxy_with(self, main: subprocess.Popen, proxy: subprocess.Popen) -> None:
        main.wait()
        if self.process is main:  # not when a test restarts the registry in the same pod
            _stop(proxy)

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
            if self.proxy_process is not None and self.proxy_process.poll() is not None:
                raise RuntimeError("proxy exited: " + (self.root / f"{self.log_name}-proxy.log").read_text()[-2000:])
            if self.proxy:
                # The probes' path: the proxy answers with the registry's own answer once both serve.
                return self.probe() == 200
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                if context:
                    context.wrap_socket(sock, server_hostname=self.name).close()
            return True

        eventually(answers, "the registry to answer", seconds, every=0.05, ignoring=(OSError,))

    def probe(self) -> int:
        """What kubelet's probe gets: GET / over TLS, by the name the certificate has."""
        context = ssl.create_default_context(cadata=self.ca_pem)
        connection = http_connection(self.host, self.port, self.name, context)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process:
            _stop(self.process)
        if self.proxy_process:
            _stop(self.proxy_process)
        for log in ("log", "proxy_log"):
            if hasattr(self, log):
                getattr(self, log).close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_connection(host: str, port: int, name: str, context: ssl.SSLContext):
    """An HTTPS connection to host:port that checks the certificate for `name` (SNI too)."""
    import http.client

    class Named(http.client.HTTPSConnection):
        def connect(self) -> None:
            sock = socket.create_connection((host, port), timeout=self.timeout)
            self.sock = context.wrap_socket(sock, server_hostname=name)

    return Named(name, port, context=context, timeout=5)


@contextmanager
def serving(run: StackRun, root: Path, **where) -> Iterator[Registry]:
    """The registry's pod as `run` rendered it, started under `root`, stopped at the end."""
    registry = Registry(PodSource.from_run(run), root, **where).start()
    try:
        yield registry
    finally:
        registry.stop()


def login_authfile(run: StackRun, path: Path) -> Path:
    """The login outputs (username, password: a pusher) for every address the pull secret names,
    as a file skopeo reads (--authfile), readable by its owner alone."""
    pull = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["type"] == "kubernetes.io/dockerconfigjson")
    registries = json.loads(pull.inputs["stringData"][".dockerconfigjson"])["auths"]
    path.write_text(docker_config_json(list(registries), run.outputs["username"], run.outputs["password"]))
    path.chmod(0o600)
    return path


def pull_authfile(run: StackRun, path: Path) -> Path:
    """The pull secret of the first namespace, as a file skopeo reads (--authfile), readable by its owner alone."""
    pull = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["type"] == "kubernetes.io/dockerconfigjson")
    path.write_text(pull.inputs["stringData"][".dockerconfigjson"])
    path.chmod(0o600)
    return path
