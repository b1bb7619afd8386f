"""Garbage collection that never races a push: the real registry, run as the program's
Deployment runs it (registry_serve.sh), and the CronJob's exact command and settings
(registry_gc.sh), on one data volume.

The registry's pod listens on the Service's clusterIP; the job's pod on an address of its
own (127.0.0.1, a SAN of the certificate), as the Service would add it. skopeo on this
machine pushes and pulls over TLS with the pull secret's credentials.

One test hook: `registry garbage-collect` in the job's pod waits for the test's signal
before it runs (the real binary then), so that the window can be probed at leisure.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.constants import CLUSTER_IP
from tests.support.nodes import require_tools
from tests.support.oci import INDEX, read_image, write_image, write_index
from tests.support.polling import eventually
from tests.support.registry_server import REGISTRY_BINARY, REGISTRY_TOOL, PodSource, Registry
from tests.support.stack import StackRun, run_stack

TOOLS = {**REGISTRY_TOOL, "skopeo": "skopeo"}
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
])
# The waits the pod spec gives (10 s each) are for kube-proxy; here nothing sits between.
FAST = {"REGISTRY_GC_GRACE_SECONDS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class World:
    """The registry started as the Deployment runs it, and what a job of the CronJob needs beside it."""

    run: StackRun
    root: Path
    registry: Registry
    source: PodSource
    job_pod: dict  # the CronJob's pod spec
    job_port: int  # where a job's own read-only server listens
    password: str
    certs: Path  # a certs.d folder with the CA, for skopeo
    authfile: Path  # credentials for both the registry and the job's server


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_tools(TOOLS)
    root = tmp_path_factory.mktemp("gc")
    run = run_stack({"serviceCidr": "127.0.0.0/8", "clusterIp": CLUSTER_IP, "users": ["admin"]})
    assert run.error is None, run.error
    cron_job = run.one("kubernetes:batch/v1:CronJob").inputs
    job_pod = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    source = PodSource.from_run(run)
    registry = Registry(source, root).start(extra_env=FAST)
    job_port = free_port()
    certs = root / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text(registry.ca_pem)
    auth = {f"{CLUSTER_IP}:5000": "", f"127.0.0.1:{job_port}": ""}
    token = base64.b64encode(f"{run.outputs['username']}:{run.outputs['password']}".encode()).decode()
    (root / "auth.json").write_text(json.dumps({"auths": {k: {"auth": token} for k in auth}}))
    world = World(run=run, root=root, registry=registry, source=source, job_pod=job_pod, job_port=job_port,
                  password=run.outputs["password"], certs=certs, authfile=root / "auth.json")
    try:
        wait_for_mode(world, "rw")
        yield world
    finally:
        registry.stop()


def data(world) -> Path:
    return world.registry.path("/var/lib/registry")


def mode(world) -> str:
    """The mode's first word (rw, ro, switching, starting, stopped); "ro" is followed by a token."""
    path = data(world) / ".maintenance" / "mode"
    words = path.read_text().split() if path.exists() else []
    return words[0] if words else ""


def wait_for_mode(world, wanted: str, seconds: float = 30) -> None:
    eventually(lambda: mode(world) == wanted, f"mode {wanted!r}", seconds, every=0.1, detail=lambda: f"mode is {mode(world)!r}")


def skopeo(world, *args):
    return subprocess.run(["skopeo", "--command-timeout", "60s", *args], capture_output=True, text=True, timeout=120)


def push(world, layout: Path, target: str):
    return skopeo(world, "copy", "--dest-authfile", str(world.authfile), "--dest-cert-dir", str(world.certs),
                  f"oci:{layout}:v1", f"docker://{target}")


def pull(world, source: str, out: Path):
    return skopeo(world, "copy", "--src-authfile", str(world.authfile), "--src-cert-dir", str(world.certs),
                  f"docker://{source}", f"oci:{out}:v1")


def api(world, method: str, path: str, headers=None):
    context = ssl.create_default_context(cadata=world.registry.ca_pem)
    connection = http.client.HTTPSConnection(CLUSTER_IP, 5000, context=context, timeout=10)
    token = base64.b64encode(f"admin:{world.password}".encode()).decode()
    connection.request(method, path, headers={"Authorization": f"Basic {token}", **(headers or {})})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def blob_path(world, digest: str) -> Path:
    hex_ = digest.split(":", 1)[1]
    return data(world) / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def something_pushed(world) -> None:
    """A collection pauses in its hook only where there is something to collect."""
    layout = world.root / "image-something"
    if not layout.exists():
        write_image(layout, "v1")
        assert push(world, layout, f"{CLUSTER_IP}:5000/gc/something:1").returncode == 0


def wait_until_collecting(world, name: str, why: str = "the job never started collecting") -> None:
    """Until the job `name` reaches `registry garbage-collect` (its hook says so)."""
    eventually(lambda: (world.root / f"{name}-collecting").exists(), f"the job {name} to start collecting", 30, every=0.1,
               detail=lambda: why)


def job(world, name: str, gc_hook: bool = True, binary: str = REGISTRY_BINARY, port: int = 0) -> Registry:
    """The CronJob's pod: its exact container (command, env, mounts) on the registry's volume."""
    hook = world.root / f"{name}-registry"
    if gc_hook:
        hook.write_text(
            "#!/bin/sh\n"
            f'[ "$1" = garbage-collect ] || exec {binary} "$@"\n'
            f"touch {world.root}/{name}-collecting\n"
            f"while [ ! -e {world.root}/{name}-go ]; do sleep 0.1; done\n"
            f'exec {binary} "$@"\n'
        )
        hook.chmod(0o755)
    return Registry(world.source, world.root, address="127.0.0.1", port=port or world.job_port,
                    pod=world.job_pod, name=name, binary=binary)


def test_collection_deletes_an_untagged_image_refuses_pushes_meanwhile_and_keeps_pulls(world):
    root = world.root
    for name in ("a", "b", "c"):
        write_image(root / f"image-{name}", "v1", layers=2, layer_bytes=32 * 1024)
    for name in ("a", "b"):
        result = push(world, root / f"image-{name}", f"{CLUSTER_IP}:5000/gc/{name}:1")
        assert result.returncode == 0, result.stderr

    # A's tag goes through the API: its manifest by digest, as `DELETE` takes it.
    response, body = api(world, "GET", "/v2/gc/a/manifests/1", {"Accept": MANIFEST_TYPES})
    assert response.status == 200
    digest = response.getheader("Docker-Content-Digest")
    manifest = json.loads(body)
    a_blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    assert all(blob_path(world, d).exists() for d in a_blobs)
    response, _ = api(world, "DELETE", f"/v2/gc/a/manifests/{digest}")
    assert response.status == 202

    collector = job(world, "job")
    collector.start(extra_env=FAST)  # ready once its own read-only server answers
    job_endpoint = f"127.0.0.1:{world.job_port}"
    try:
        wait_for_mode(world, "ro")
        wait_until_collecting(world, "job")

        # The window: both pods serve read-only.
        for target in (CLUSTER_IP + ":5000", job_endpoint):
            refused = push(world, root / "image-c", f"{target}/gc/c:1")
            assert refused.returncode != 0 and "405" in refused.stderr, refused.stderr
            pulled = pull(world, f"{target}/gc/b:1", root / f"during-{target.replace(':', '-')}")
            assert pulled.returncode == 0, pulled.stderr
            assert read_image(root / f"during-{target.replace(':', '-')}")[0] == read_image(root / "image-b")[0]

        (root / "job-go").touch()
        assert collector.process.wait(60) == 0, (root / "job.log").read_text()[-3000:]
    finally:
        (root / "job-go").touch()
        collector.stop()

    assert mode(world) == "rw" and not (data(world) / ".maintenance" / "collecting").exists()
    assert not (data(world) / ".maintenance" / "collecting.lock").exists()
    assert not any(blob_path(world, d).exists() for d in a_blobs), "A's blobs are gone from storage"
    response, _ = api(world, "GET", "/v2/gc/c/manifests/1", {"Accept": MANIFEST_TYPES})
    assert response.status == 404, "the refused push left nothing behind"
    out = root / "after-b"
    result = pull(world, f"{CLUSTER_IP}:5000/gc/b:1", out)
    assert result.returncode == 0, result.stderr
    assert read_image(out)[0] == read_image(root / "image-b")[0]
    result = push(world, root / "image-c", f"{CLUSTER_IP}:5000/gc/c:1")
    assert result.returncode == 0, "pushes work again after: " + result.stderr
    result = pull(world, f"{CLUSTER_IP}:5000/gc/c:1", root / "after-c")
    assert result.returncode == 0 and read_image(root / "after-c")[0] == read_image(root / "image-c")[0]


def test_a_collection_stopped_midway_hands_the_registry_back_read_write(world):
    """Kubernetes stops a job with SIGTERM (activeDeadlineSeconds, a drain): the flag goes, pushes work again."""
    something_pushed(world)
    root = world.root
    collector = job(world, "stopped")
    collector.start(extra_env=FAST)
    try:
        wait_for_mode(world, "ro")
        collector.process.send_signal(signal.SIGTERM)
        assert collector.process.wait(60) != 0, "a stopped collection does not report success"
    finally:
        (root / "stopped-go").touch()
        collector.stop()
    assert mode(world) == "rw"
    assert not (data(world) / ".maintenance" / "collecting").exists()
    write_image(root / "image-d", "v1")
    result = push(world, root / "image-d", f"{CLUSTER_IP}:5000/gc/d:1")
    assert result.returncode == 0, result.stderr


ALL_TYPES = f"{MANIFEST_TYPES}, {INDEX}, application/vnd.docker.distribution.manifest.list.v2+json"
FAST_JOB = {**FAST, "REGISTRY_GC_RENEW_SECONDS": "1"}


def run_job(world, name: str, **kwargs) -> tuple[int, str]:
    """A whole collection, unpaused: its exit status and its log."""
    collector = job(world, name, gc_hook=False, **kwargs)
    collector.start(extra_env=FAST_JOB, wait=False)
    try:
        status = collector.process.wait(120)
    finally:
        collector.stop()
    return status, (world.root / f"{name}.log").read_text()


def served(world, repository: str, digest: str) -> bool:
    response, _ = api(world, "HEAD", f"/v2/{repository}/manifests/{digest}", {"Accept": ALL_TYPES})
    return response.status == 200


@pytest.mark.parametrize("kind", ["multi-arch", "buildx"])
def test_collection_keeps_every_platform_and_the_attestation_of_a_tagged_index(world, kind):
    # distribution 2.8's --delete-untagged deletes an index's untagged children
    # and their blobs (distribution#3178): the registry:2 default lost these.
    root = world.root
    layout = root / f"index-{kind}"
    parts = write_index(layout, "v1", kind)
    repository = f"gc/{kind}"
    pushed = skopeo(world, "copy", "--all", "--dest-authfile", str(world.authfile), "--dest-cert-dir",
                    str(world.certs), f"oci:{layout}:v1", f"docker://{CLUSTER_IP}:5000/{repository}:v1")
    assert pushed.returncode == 0, pushed.stderr
    # As the registry holds them (skopeo compresses the layers on the way).
    response, body = api(world, "GET", f"/v2/{repository}/manifests/v1", {"Accept": ALL_TYPES})
    index = json.loads(body)
    children = [m["digest"] for m in index["manifests"]]
    assert len(children) == len(parts["children"]) == 2
    blobs = []
    for child in children:
        _, body = api(world, "GET", f"/v2/{repository}/manifests/{child}", {"Accept": ALL_TYPES})
        manifest = json.loads(body)
        blobs += [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    assert all(blob_path(world, d).exists() for d in blobs)

    status, log = run_job(world, f"keep-{kind}")
    assert status == 0, log[-3000:]
    assert "collecting" in log
    for digest in [response.getheader("Docker-Content-Digest"), *children]:
        assert served(world, repository, digest), f"{digest} of the tagged {kind} index was collected"
    assert all(blob_path(world, d).exists() for d in blobs), "a blob of the tagged index was collected"
    pulled = skopeo(world, "copy", "--all", "--src-authfile", str(world.authfile), "--src-cert-dir", str(world.certs),
                    f"docker://{CLUSTER_IP}:5000/{repository}:v1", f"oci:{root / f'pulled-{kind}'}:v1")
    assert pulled.returncode == 0, pulled.stderr


def test_the_registry_steps_aside_only_once_the_jobs_own_server_serves_pulls(world):
    # Otherwise, for a moment, no pod of the Service would be Ready.
    collector = job(world, "order", gc_hook=False)
    collector.start(extra_env={**FAST_JOB, "REGISTRY_GC_GRACE_SECONDS": "3"}, wait=False)
    context = ssl.create_default_context(cadata=world.registry.ca_pem)
    serving = stepped_aside = None
    try:

        def stepped_aside_yet() -> float | None:
            nonlocal serving
            if serving is None:
                try:
                    with socket.create_connection(("127.0.0.1", world.job_port), timeout=0.5) as sock:
                        context.wrap_socket(sock, server_hostname="127.0.0.1").close()
                    serving = time.monotonic()
                except OSError:
                    pass
            return time.monotonic() if mode(world) != "rw" else None

        stepped_aside = eventually(stepped_aside_yet, "the registry to step aside", 60, every=0.05)
        assert serving is not None and serving < stepped_aside
        assert collector.process.wait(120) == 0, (world.root / "order.log").read_text()[-3000:]
    finally:
        collector.stop()
    wait_for_mode(world, "rw")


def test_a_collection_on_a_registry_nothing_was_pushed_to_succeeds(world, tmp_path):
    # The first Sunday after `pulumi up`: garbage-collect itself fails on an empty store.
    world.registry.stop()
    empty = Registry(world.source, tmp_path).start(extra_env=FAST)
    try:
        collector = Registry(world.source, tmp_path, address="127.0.0.1", port=free_port(), pod=world.job_pod, name="job")
        collector.start(extra_env=FAST_JOB, wait=False)
        status = collector.process.wait(120)
        collector.stop()
        log = (tmp_path / "job.log").read_text()
        assert status == 0 and "nothing was pushed yet" in log, log[-3000:]
    finally:
        empty.stop()
        world.registry.start(extra_env=FAST)
    wait_for_mode(world, "rw")


def test_a_distribution_2_image_collects_nothing_and_says_why(world):
    require_tools({"docker-registry": "docker-registry"})
    write_image(world.root / "image-kept", "v1")
    status, log = run_job(world, "two", binary="docker-registry")
    assert status != 0 and "distribution 2" in log and "nothing collected" in log, log[-2000:]
    assert mode(world) == "rw" and not (data(world) / ".maintenance" / "collecting").exists()


def test_a_second_collection_beside_a_running_one_leaves_it_and_the_registry_stays_read_only(world):
    # `kubectl create job --from=cronjob/registry-gc` beside the scheduled one:
    # before, the first to finish turned the registry read-write under the other.
    something_pushed(world)
    root = world.root
    first = job(world, "first")
    first.start(extra_env=FAST_JOB)
    try:
        wait_for_mode(world, "ro")
        status, log = run_job(world, "second", port=free_port())
        assert status == 0 and "another collection is running" in log, log[-2000:]
        assert mode(world) == "ro" and (data(world) / ".maintenance" / "collecting").exists()
        write_image(root / "image-during", "v1")
        refused = push(world, root / "image-during", f"{CLUSTER_IP}:5000/gc/during:1")
        assert refused.returncode != 0 and "405" in refused.stderr, refused.stderr
        (root / "first-go").touch()
        assert first.process.wait(60) == 0, (root / "first.log").read_text()[-3000:]
    finally:
        (root / "first-go").touch()
        first.stop()
    wait_for_mode(world, "rw")


def test_a_flag_left_by_a_killed_job_is_taken_over_by_the_next_one(world):
    something_pushed(world)
    root = world.root
    dead = job(world, "dead")
    dead.start(extra_env=FAST_JOB)
    try:
        wait_for_mode(world, "ro")
        subprocess.run(["pkill", "-KILL", "-P", str(dead.process.pid)], check=False)
        dead.process.kill()
        dead.process.wait(10)
    finally:
        (root / "dead-go").touch()
        dead.stop()
    assert (data(world) / ".maintenance" / "collecting").exists(), "SIGKILL leaves the flag"
    status, log = run_job(world, "next", port=free_port())
    assert status == 0 and "taking over" in log, log[-3000:]
    wait_for_mode(world, "rw")


def test_a_collection_stops_without_deleting_once_the_registry_leaves_read_only(world):
    # The registry's pod stops mid-collection (gcSchedule turned off, a node
    # drain): it says so, and the sweep is killed before any pod could serve a push.
    root = world.root
    write_image(root / "image-e", "v1", layers=2)
    assert push(world, root / "image-e", f"{CLUSTER_IP}:5000/gc/e:1").returncode == 0
    response, body = api(world, "GET", "/v2/gc/e/manifests/1", {"Accept": MANIFEST_TYPES})
    manifest = json.loads(body)
    e_blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    api(world, "DELETE", f"/v2/gc/e/manifests/{response.getheader('Docker-Content-Digest')}")
    collector = job(world, "interrupted")
    collector.start(extra_env=FAST_JOB)
    registry = world.registry
    try:
        wait_for_mode(world, "ro")
        wait_until_collecting(world, "interrupted")
        registry.stop()
        assert mode(world) == "stopped"
        eventually(lambda: "collection stopped" in (root / "interrupted.log").read_text(), "the job to say it stopped", 10,
                   every=0.1, detail=lambda: (root / "interrupted.log").read_text()[-3000:])
        registry.start(extra_env=FAST)  # the pod that follows; the job hands back to it
        assert collector.process.wait(60) != 0
    finally:
        (root / "interrupted-go").touch()
        collector.stop()
        if registry.process.poll() is not None:
            registry.start(extra_env=FAST)
    log = (root / "interrupted.log").read_text()
    assert "left read-only" in log, log[-3000:]
    assert all(blob_path(world, d).exists() for d in e_blobs), "nothing was deleted"
    wait_for_mode(world, "rw")


def test_a_job_stopped_mid_sweep_stops_the_sweep_at_once_and_hands_back(world):
    # The sweep runs beside the script, so SIGTERM (the CronJob deleted when
    # gcSchedule is turned off, a drain) is not held until it finishes.
    something_pushed(world)
    root = world.root
    collector = job(world, "termed")
    collector.start(extra_env=FAST_JOB)
    try:
        wait_until_collecting(world, "termed")
        stopped = time.monotonic()
        collector.process.send_signal(signal.SIGTERM)
        assert collector.process.wait(60) != 0
        assert "collection stopped before it finished" in (root / "termed.log").read_text()
        assert time.monotonic() - stopped < 15, "the stop waited for the sweep"
    finally:
        (root / "termed-go").touch()
        collector.stop()
    assert mode(world) == "rw"


def test_a_flag_whose_time_is_off_counts_by_the_registrys_own_clock(world):
    # A volume server whose clock runs an hour ahead (NFS): the flag looks fresh
    # for an hour by its time, but nobody renews it, so it goes stale by ours.
    registry = world.registry
    registry.stop()
    flag = data(world) / ".maintenance" / "collecting"
    try:
        registry.start(extra_env={**FAST, "REGISTRY_GC_STALE_SECONDS": "4"})
        wait_for_mode(world, "rw")
        flag.touch()
        future = time.time() + 3600
        os.utime(flag, (future, future))
        wait_for_mode(world, "ro")
        wait_for_mode(world, "rw", seconds=20)
    finally:
        flag.unlink(missing_ok=True)
        registry.stop()
        registry.start(extra_env=FAST)
    wait_for_mode(world, "rw")


def test_a_read_only_mode_left_by_an_earlier_pod_is_no_handshake(world):
    # The mode says "ro" from a pod that died; the job collects only once the
    # registry answers its own flag's token.
    something_pushed(world)
    root = world.root
    registry = world.registry
    registry.stop()
    (data(world) / ".maintenance" / "mode").write_text("ro 1\n")
    collector = job(world, "leftover")
    collector.start(extra_env=FAST_JOB)
    try:
        time.sleep(4)
        assert not (root / "leftover-collecting").exists(), "it collected on a mode nobody wrote for it"
        registry.start(extra_env=FAST)
        wait_until_collecting(world, "leftover", "the job never collected once the registry answered")
        (root / "leftover-go").touch()
        assert collector.process.wait(60) == 0, (root / "leftover.log").read_text()[-3000:]
    finally:
        (root / "leftover-go").touch()
        collector.stop()
        if registry.process.poll() is not None:
            registry.start(extra_env=FAST)
    wait_for_mode(world, "rw")


def test_ready_means_the_registry_serves_read_write_on_its_port(world):
    from registry import maintenance
    from registry.pod import DATA_DIR, REGISTRY_PORT

    # The registry's own port behind the proxy (in the pod, 5002 on its loopback; here, where it listens).
    probe = world.source.deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["exec"]["command"][-1] == maintenance.readiness_command(DATA_DIR, REGISTRY_PORT)
    command = maintenance.readiness_command(str(data(world)), int(world.registry.backend.rsplit(":", 1)[1]))

    def ready() -> bool:
        return subprocess.run(["sh", "-c", command]).returncode == 0

    registry = world.registry
    assert ready()
    registry.stop()
    try:
        assert mode(world) == "stopped" and not ready()
        # A mode left by an earlier pod says rw, and nothing listens: not Ready.
        (data(world) / ".maintenance" / "mode").write_text("rw\n")
        assert not ready()
    finally:
        registry.start(extra_env=FAST)
    wait_for_mode(world, "rw")
    assert ready()


def test_a_full_volume_is_collected_and_pushes_work_again(world, tmp_path):
    # Collection exists for a full disk: the handshake writes in place and
    # needs no free block.
    source = world.source
    world.registry.stop()  # this one takes the Service's address
    registry = Registry(source, tmp_path)
    volume = registry.path("/var/lib/registry")
    volume.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(volume)], check=True)
    try:
        registry.start(extra_env=FAST)
        target = f"{CLUSTER_IP}:5000"
        auth = tmp_path / "auth.json"
        token = base64.b64encode(f"admin:{world.password}".encode()).decode()
        auth.write_text(json.dumps({"auths": {target: {"auth": token}}}))

        def push_to(name: str):
            return skopeo(world, "copy", "--dest-authfile", str(auth), "--dest-cert-dir", str(world.certs),
                          f"oci:{tmp_path / name}:v1", f"docker://{target}/full/{name}:1")

        write_image(tmp_path / "big", "v1", layers=2, layer_bytes=2 * 1024 * 1024)
        assert push_to("big").returncode == 0
        write_image(tmp_path / "more", "v1", layers=2, layer_bytes=2 * 1024 * 1024)
        assert push_to("more").returncode != 0, "the volume is full"
        context = ssl.create_default_context(cadata=registry.ca_pem)

        def manifest(method: str, reference: str):
            connection = http.client.HTTPSConnection(CLUSTER_IP, 5000, context=context, timeout=10)
            headers = {"Authorization": f"Basic {token}", "Accept": MANIFEST_TYPES}
            connection.request(method, f"/v2/full/big/manifests/{reference}", headers=headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            return response

        manifest("DELETE", manifest("GET", "1").getheader("Docker-Content-Digest"))
        collector = Registry(source, tmp_path, address="127.0.0.1", port=free_port(), pod=world.job_pod, name="job")
        collector.start(extra_env=FAST_JOB)
        status = collector.process.wait(120)
        collector.stop()
        assert status == 0, (tmp_path / "job.log").read_text()[-3000:]
        result = push_to("more")
        assert result.returncode == 0, result.stderr
    finally:
        registry.stop()
        subprocess.run(["umount", str(volume)], check=False)
        world.registry.start(extra_env=FAST)


def test_the_cron_job_runs_beside_the_registry_pod_with_its_volume_and_config(world):
    pod = world.job_pod
    deployment_pod = world.source.deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (registry,) = deployment_pod["containers"]
    assert container["image"] == registry["image"] and container["env"] == registry["env"]
    assert container["volumeMounts"] == registry["volumeMounts"] and pod["volumes"] == deployment_pod["volumes"]
    assert container["command"][:2] == ["/bin/sh", "-c"] and "garbage-collect --delete-untagged" in container["command"][2]
    term = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == world.source.deployment["spec"]["selector"]["matchLabels"]
    cron = world.run.one("kubernetes:batch/v1:CronJob").inputs["spec"]
    assert cron["schedule"] == "0 3 * * 0" and cron["concurrencyPolicy"] == "Forbid"


def test_both_maintenance_scripts_are_shellcheck_clean_posix_sh():
    """They run under the registry image's busybox sh: POSIX only."""
    require_tools({"shellcheck": "shellcheck"})
    from registry import maintenance
    for script in (maintenance.SERVE_SCRIPT, maintenance.GC_SCRIPT):
        result = subprocess.run(["shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
