"""TestKubelet: a small stand-in for kubelet, for the simulated nodes of tests/support/nodes.py.

The real kubelet runs in tests/engine/test_real_node.py (tests/support/real_node.py:
kubelet, kube-proxy, containerd and runc, with images made here): what a kubelet or
a container runtime decides is shown there. This stand-in stays where a real node
cannot be had cheaply on this machine: many nodes at once (tests/engine/test_cluster_trust.py
runs four, bench/cluster_trust.py eight), a node cut off from the API server at
destroy, a node whose node program fails, an IPv6 API server address, a namespace
deleted by hand (tests/engine/test_give_back.py). It runs the container's command
on the node's own files, and plays the rest of the pod's life as the API server
sees a kubelet play it:

- it registers a Node object and keeps its Ready condition fresh;
- it follows the API server's pods bound to its nodes, runs their init
  containers in order, then their container, and restarts what exits
  (restartPolicy Always), reporting each in the pod's status and Ready;
- the container's root is a tmpfs of its own with the node's /usr, /etc...
  read-only (standing in for the image), its volumes mounted where the pod
  says (hostPath from the node, configMap, emptyDir, the service account's
  projected token from the TokenRequest API), and it runs as root with only
  the capabilities its securityContext adds (setpriv), no_new_privs as
  allowPrivilegeEscalation false asks;
- a container's exec readiness probe runs in the container (its mount
  namespace and root, its environment), as kubelet runs it;
- a pod marked for deletion gets SIGTERM, then SIGKILL when its grace period
  is out; then the pod object is deleted, as kubelet does.

A node taken `down` stops all of that, as when its kubelet stops or the node
is cut off; the node controller (kube-controller-manager) then marks it and
its pods NotReady. Back `up`, it carries on where it was.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.engine.cluster import ApiError, KubeApi
from tests.support.nodes import Node

# What the container's root holds of the node's, read-only: the "image".
IMAGE_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc")
HEARTBEAT_SECONDS = 5
MAX_BACKOFF = 4.0


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api(KubeApi):
    def patch(self, path: str, body: dict, kind: str = "application/merge-patch+json") -> Any:
        request = urllib.request.Request(self.server + path, data=json.dumps(body).encode(), method="PATCH")
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", kind)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, "PATCH", path, error.read().decode(errors="replace")) from None


@dataclass
class Running:
    name: str
    init: bool
    process: subprocess.Popen
    log: Path
    started: str = field(default_factory=now)


@dataclass
class PodRun:
    """One pod on one node, through its life."""

    uid: str
    namespace: str
    name: str
    dir: Path
    spec: dict
    next_init: int = 0
    running: Running | None = None
    restarts: dict[str, int] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    not_before: float = 0.0
    backoff: float = 0.5
    terminating_until: float | None = None
    ready: bool = False
    reported: str = ""
    # When the readiness probe last ran (monotonic).
    probed: float = 0.0


class TestKubelet:
    __test__ = False  # not a test class, whatever its name

    def __init__(
        self, api: KubeApi, root: Path, service: tuple[str, int] | None = None,
        played: Callable[[dict], bool] = lambda pod: False,
    ):
        """`service`: the API server's address and port as pods are told it (KUBERNETES_SERVICE_HOST
        and _PORT), by default the ones the tests dial; an IPv6 address reaches the same API server
        where the test forwards it (tests/engine/test_give_back.py). `played`: the pods whose life
        is played here without running them, as kwok plays its nodes' (a registry the test runs
        itself, from the pod's Secrets)."""
        self.api = Api(api.server, "", api.token)
        self.api.context = api.context
        url = urllib.parse.urlsplit(api.server)
        self.service_host, self.service_port = service or (url.hostname, url.port)
        self.played = played
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[str, Node] = {}
        self.down_nodes: set[str] = set()
        self.pods: dict[str, PodRun] = {}
        self.pod_node: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._loop, name="test-kubelet", daemon=True)
        self.thread.start()

    # ---- what tests use ---------------------------------------------------------

    def join(self, name: str, node: Node, labels: dict[str, str] | None = None) -> float:
        """Register `node` as the Node `name`; returns when its Node object was created (monotonic)."""
        self.api.create("/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                 **(labels or {})}},
        })
        created = time.monotonic()
        with self.lock:
            self.nodes[name] = node
        self._heartbeat(name, "True")
        return created

    def down(self, name: str) -> None:
        """The node's kubelet stops (or the node is cut off from the API server): its
        containers keep running, nobody reports for it, and the node controller turns it
        and its pods NotReady once its grace period is out, as for any node."""
        with self.lock:
            self.down_nodes.add(name)

    def up(self, name: str) -> None:
        with self.lock:
            self.down_nodes.discard(name)
        self._heartbeat(name, "True")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
        for run in list(self.pods.values()):
            self._kill(run)
        shutil.rmtree(self.root, ignore_errors=True)

    def container_pids(self, pod_prefix: str, node: str) -> list[int]:
        with self.lock:
            return [
                run.running.process.pid for uid, run in self.pods.items()
                if self.pod_node[uid] == node and run.name.startswith(pod_prefix) and run.running
            ]

    def logs(self) -> str:
        """The containers' output, and what went wrong in the kubelet itself."""
        parts = [f"test kubelet error: {error}" for error in self.errors[-5:]]
        for path in sorted(self.root.glob("pods/*/*.log")):
            parts.append(f"--- {path.relative_to(self.root)}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    # ---- the loop ---------------------------------------------------------------

    def _loop(self) -> None:
        last_beat = 0.0
        while not self.stopping.is_set():
            try:
                if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    last_beat = time.monotonic()
                    for name in self._live_nodes():
                        self._heartbeat(name, "True")
                for name in self._live_nodes():
                    self._sync_node(name)
            except Exception as error:  # reported by tests; the loop goes on, as kubelet's does
                self.errors.append(repr(error))
            time.sleep(0.2)

    def _live_nodes(self) -> list[str]:
        with self.lock:
            return [n for n in self.nodes if n not in self.down_nodes]

    def _heartbeat(self, name: str, ready: str) -> None:
        stamp = now()
        conditions = [{"type": "Ready", "status": ready, "reason": "TestKubeletReady" if ready == "True" else "NodeStatusUnknown",
                       "message": "test kubelet" if ready == "True" else "Kubelet stopped posting node status.",
                       "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]
        capacity = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        self.api.patch(f"/api/v1/nodes/{name}/status", {"status": {
            "conditions": conditions, "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": self.nodes[name].address}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.36.3-test", "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "test://0", "kernelVersion": "", "osImage": "test",
                         "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        }}, kind="application/strategic-merge-patch+json")

    def _sync_node(self, name: str) -> None:
        selector = urllib.parse.quote(f"spec.nodeName={name}")
        pods = self.api.items(f"/api/v1/pods?fieldSelector={selector}")
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            with self.lock:
                run = self.pods.get(uid)
                if run is None:
                    run = PodRun(uid, pod["metadata"]["namespace"], pod["metadata"]["name"],
                                 self.root / "pods" / uid, pod["spec"])
                    run.dir.mkdir(parents=True, exist_ok=True)
                    self.pods[uid] = run
                    self.pod_node[uid] = name
            self._sync_pod(name, run, pod)
        with self.lock:
            gone = [uid for uid, node in self.pod_node.items() if node == name and uid not in seen]
        for uid in gone:  # deleted without us (force deletion): stop what runs
            with self.lock:
                run = self.pods.pop(uid)
                self.pod_node.pop(uid)
            self._kill(run)

    def _sync_pod(self, node_name: str, run: PodRun, pod: dict) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            self._terminate(run, meta.get("deletionGracePeriodSeconds", 30))
            return
        if self.played(pod):
            self._play(run, pod)
            return
        inits = run.spec.get("initContainers", [])
        if run.running is not None and run.running.process.poll() is not None:
            finished, code = run.running, run.running.process.returncode
            # What the container left behind goes with it, as its cgroup does.
            self._signal(finished, signal.SIGKILL)
            run.running = None
            run.exit_codes[finished.name] = code
            if finished.init and code == 0:
                run.next_init += 1
                run.backoff = 0.5
            else:
                run.restarts[finished.name] = run.restarts.get(finished.name, 0) + 1
                run.ready = False
                run.not_before = time.monotonic() + run.backoff
                run.backoff = min(run.backoff * 2, MAX_BACKOFF)
        if run.running is None and time.monotonic() >= run.not_before:
            if run.next_init < len(inits):
                run.running = self._start(node_name, run, pod, inits[run.next_init], init=True)
            else:
                container = run.spec["containers"][0]
                run.running = self._start(node_name, run, pod, container, init=False)
                run.ready = "readinessProbe" not in container
        elif run.running is not None and not run.running.init:
            self._probe(run, pod, node_name)
        self._report(run, pod)

    def _probe(self, run: PodRun, pod: dict, node_name: str) -> None:
        """The container's exec readiness probe, as kubelet runs it: its command in the
        container (its mount namespace and root), with the container's environment."""
        assert run.running is not None
        container = run.spec["containers"][0]
        probe = container.get("readinessProbe")
        if probe is None or time.monotonic() - run.probed < probe.get("periodSeconds", 10):
            return
        run.probed = time.monotonic()
        env = self._env(run, pod, container, node_name)
        try:
            result = subprocess.run(
                ["nsenter", "--target", str(run.running.process.pid), "--mount", "--root",
                 "env", "-i", *(f"{k}={v}" for k, v in env.items()), *probe["exec"]["command"]],
                capture_output=True, timeout=probe.get("timeoutSeconds", 1) + 4,
            )
            run.ready = result.returncode == 0
        except subprocess.TimeoutExpired:
            run.ready = False

    def _play(self, run: PodRun, pod: dict) -> None:
        """Running and Ready at once, with nothing run, as kwok reports a pod."""
        if run.reported == "played":
            return
        stamp = now()
        conditions = [{"type": t, "status": "True", "lastTransitionTime": stamp}
                      for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "started": True,
                     "restartCount": 0, "state": {"running": {"startedAt": stamp}}} for c in run.spec["containers"]]
        self.api.patch(f"/api/v1/namespaces/{run.namespace}/pods/{run.name}/status", {"status": {
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": stamp,
            "conditions": conditions, "containerStatuses": statuses}})
        run.reported = "played"

    def _terminate(self, run: PodRun, grace: int) -> None:
        if run.terminating_until is None:
            run.terminating_until = time.monotonic() + grace
            if run.running is not None:
                self._signal(run.running, signal.SIGTERM)
        alive = run.running is not None and run.running.process.poll() is None
        if alive and time.monotonic() < run.terminating_until:
            return
        if run.running is not None and not alive:
            run.exit_codes[run.running.name] = run.running.process.returncode
        self._kill(run)
        try:
            self.api.request("DELETE", f"/api/v1/namespaces/{run.namespace}/pods/{run.name}",
                             {"gracePeriodSeconds": 0, "preconditions": {"uid": run.uid}})
        except ApiError as error:
            if error.status not in (404, 409):
                raise
        with self.lock:
            self.pods.pop(run.uid, None)
            self.pod_node.pop(run.uid, None)

    def _signal(self, running: Running, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(running.process.pid, sig)
            else:
                running.process.send_signal(sig)

    def _kill(self, run: PodRun) -> None:
        if run.running is not None:
            self._signal(run.running, signal.SIGKILL)
            run.running.process.wait()

    def _report(self, run: PodRun, pod: dict) -> None:
        inits = run.spec.get("initContainers", [])
        initialized = run.next_init >= len(inits)
        ready = initialized and run.ready and run.running is not None

        def status(container: dict, init: bool, index: int) -> dict:
            name = container["name"]
            running = run.running is not None and run.running.name == name
            done = init and index < run.next_init
            state: dict = {"waiting": {"reason": "PodInitializing"}}
            if running:
                state = {"running": {"startedAt": run.running.started}}
            elif done:
                state = {"terminated": {"exitCode": 0, "reason": "Completed"}}
            elif name in run.exit_codes:
                state = {"waiting": {"reason": "CrashLoopBackOff"}}
            return {"name": name, "image": container["image"], "imageID": "", "ready": (done if init else ready),
                    "started": running, "restartCount": run.restarts.get(name, 0), "state": state}

        truth = {True: "True", False: "False"}
        stamp = now()
        body = {"status": {
            "phase": "Running" if initialized and run.running is not None else "Pending",
            "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": stamp,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": truth[initialized]},
                {"type": "ContainersReady", "status": truth[ready]},
                {"type": "Ready", "status": truth[ready]},
            ],
            "initContainerStatuses": [status(c, True, i) for i, c in enumerate(inits)],
            "containerStatuses": [status(c, False, 0) for c in run.spec["containers"]],
        }}
        key = json.dumps(body["status"]["conditions"]) + json.dumps(
            [(s["name"], s["restartCount"], list(s["state"])) for s in
             body["status"]["initContainerStatuses"] + body["status"]["containerStatuses"]])
        if key == run.reported:
            return
        for condition in body["status"]["conditions"]:
            condition["lastTransitionTime"] = stamp
        self.api.patch(f"/api/v1/namespaces/{run.namespace}/pods/{run.name}/status", body)
        run.reported = key

    # ---- starting a container ------------------------------------------------------

    def _start(self, node_name: str, run: PodRun, pod: dict, container: dict, init: bool) -> Running:
        node = self.nodes[node_name]
        mounts = self._volumes(run, pod)
        lines = ["set -e", f"root={shlex.quote(str(run.dir / ('root-' + container['name'])))}",
                 'rm -rf "$root"; mkdir -p "$root"', 'mount -t tmpfs -o mode=755 tmpfs "$root"']
        # The image: each folder an overlay on the node's, whose writes (the volumes'
        # mount points, say) stay in the container's own layer, as a runtime's do.
        layer = shlex.quote(str(run.dir / ("layer-" + container["name"])))
        lines.append(f"rm -rf {layer}; mkdir -p {layer}")
        for name in IMAGE_DIRS:
            lines.append(
                f'if [ -L /{name} ]; then cp -P /{name} "$root/{name}"; '
                f'elif [ -d /{name} ]; then mkdir "$root/{name}" {layer}/{name}.upper {layer}/{name}.work; '
                f"mount -t overlay overlay -o lowerdir=/{name},upperdir={layer}/{name}.upper,workdir={layer}/{name}.work "
                f'"$root/{name}"; fi'
            )
        lines += ['mkdir "$root/proc" "$root/dev"', 'mount --rbind /proc "$root/proc"', 'mount --rbind /dev "$root/dev"']
        for mount in container.get("volumeMounts", []):
            source = mounts[mount["name"]]
            target = '"$root"' + shlex.quote(mount["mountPath"])
            lines.append(f"mkdir -p {target}; mount --rbind {shlex.quote(source)} {target}")
            if mount.get("readOnly"):
                lines.append(f"mount -o remount,bind,ro {target}")
        security = container.get("securityContext", {})
        if security.get("readOnlyRootFilesystem"):
            for name in IMAGE_DIRS:
                lines.append(f'if [ ! -L "$root/{name}" ] && [ -d "$root/{name}" ]; then mount -o remount,ro "$root/{name}"; fi')
            lines.append('mount -o remount,ro "$root"')
        setpriv = ["setpriv", "--reuid=0", "--regid=0", "--clear-groups"]
        if not security.get("privileged"):
            added = ",".join(f"+{c.lower()}" for c in security.get("capabilities", {}).get("add", []))
            setpriv += [f"--bounding-set=-all{',' + added if added else ''}", "--inh-caps=-all"]
        if security.get("allowPrivilegeEscalation") is False:
            setpriv.append("--no-new-privs")
        env = self._env(run, pod, container, node_name)
        command = [*container.get("command", []), *container.get("args", [])]
        argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
        lines.append('exec chroot "$root" ' + " ".join(shlex.quote(a) for a in [*setpriv, "--", *argv]))
        log = run.dir / f"{container['name']}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                ["nsenter", "--mount", "-t", str(node.process.pid),
                 "unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return Running(container["name"], init, process, log)

    def _env(self, run: PodRun, pod: dict, container: dict, node_name: str) -> dict[str, str]:
        """What a container's processes get: kubelet's own variables, then the container's env."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": run.name,
               "HOME": "/root", "KUBERNETES_SERVICE_HOST": self.service_host,
               "KUBERNETES_SERVICE_PORT": str(self.service_port)}
        for item in container.get("env", []):
            if "valueFrom" in item:
                env[item["name"]] = self._field(pod, item["valueFrom"]["fieldRef"]["fieldPath"], node_name)
            else:  # the API server drops an empty value
                env[item["name"]] = item.get("value", "")
        return env

    @staticmethod
    def _field(pod: dict, path: str, node_name: str) -> str:
        return {"spec.nodeName": node_name, "metadata.namespace": pod["metadata"]["namespace"],
                "metadata.name": pod["metadata"]["name"], "metadata.uid": pod["metadata"]["uid"]}[path]

    def _volumes(self, run: PodRun, pod: dict) -> dict[str, str]:
        """Each volume's source, as a path in the node: made once per pod."""
        found: dict[str, str] = {}
        ns = run.namespace
        for volume in run.spec.get("volumes", []):
            name = volume["name"]
            folder = run.dir / "volumes" / name
            if "hostPath" in volume:
                found[name] = volume["hostPath"]["path"]
                continue
            found[name] = str(folder)
            if folder.exists():
                continue
            folder.mkdir(parents=True)
            if "emptyDir" in volume:
                continue
            files: dict[str, bytes] = {}
            if "configMap" in volume:
                data = self.api.get(f"/api/v1/namespaces/{ns}/configmaps/{volume['configMap']['name']}").get("data", {})
                files = {k: v.encode() for k, v in data.items()}
            elif "projected" in volume:
                for source in volume["projected"]["sources"]:
                    if "serviceAccountToken" in source:
                        files[source["serviceAccountToken"]["path"]] = self._token(pod).encode()
                    elif "configMap" in source:
                        data = self.api.get(f"/api/v1/namespaces/{ns}/configmaps/{source['configMap']['name']}")["data"]
                        for item in source["configMap"].get("items", []):
                            files[item["path"]] = data[item["key"]].encode()
                    elif "downwardAPI" in source:
                        for item in source["downwardAPI"]["items"]:
                            files[item["path"]] = self._field(pod, item["fieldRef"]["fieldPath"], "").encode()
            elif "secret" in volume:
                data = self.api.get(f"/api/v1/namespaces/{ns}/secrets/{volume['secret']['secretName']}").get("data", {})
                files = {k: base64.b64decode(v) for k, v in data.items()}
            for key, content in files.items():
                (folder / key).write_bytes(content)
                (folder / key).chmod(0o644)
        return found

    def _token(self, pod: dict) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName", "default")
        answer = self.api.create(f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}},
        })
        return answer["status"]["token"]
