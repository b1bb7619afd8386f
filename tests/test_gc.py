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
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.nodes import require_tools
from tests.oci import read_image, write_image
from tests.registry_server import PodSource, Registry
from tests.stack import run_stack

CLUSTER_IP = "127.0.10.1"
TOOLS = {"docker-registry": "docker-registry", "skopeo": "skopeo"}
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
])
# The waits the pod spec gives (10 s each) are for kube-proxy; here nothing sits between.
FAST = {"REGISTRY_GC_GRACE_SECONDS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    world = {
        "run": run, "root": root, "registry": registry, "source": source, "job_pod": job_pod,
        "job_port": job_port, "password": run.outputs["password"],
    }
    certs = root / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text(registry.ca_pem)
    auth = {f"{CLUSTER_IP}:5000": "", f"127.0.0.1:{job_port}": ""}
    token = base64.b64encode(f"admin:{world['password']}".encode()).decode()
    (root / "auth.json").write_text(json.dumps({"auths": {k: {"auth": token} for k in auth}}))
    world["certs"], world["authfile"] = certs, root / "auth.json"
    try:
        wait_for_mode(world, "rw")
        yield world
    finally:
        registry.stop()


def data(world) -> Path:
    return world["registry"].path("/var/lib/registry")


def mode(world) -> str:
    path = data(world) / ".maintenance" / "mode"
    return path.read_text().strip() if path.exists() else ""


def wait_for_mode(world, wanted: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while mode(world) != wanted:
        assert time.monotonic() < deadline, f"mode stayed {mode(world)!r}, wanted {wanted!r}"
        time.sleep(0.1)


def skopeo(world, *args):
    return subprocess.run(["skopeo", "--command-timeout", "60s", *args], capture_output=True, text=True, timeout=120)


def push(world, layout: Path, target: str):
    return skopeo(world, "copy", "--dest-authfile", str(world["authfile"]), "--dest-cert-dir", str(world["certs"]),
                  f"oci:{layout}:v1", f"docker://{target}")


def pull(world, source: str, out: Path):
    return skopeo(world, "copy", "--src-authfile", str(world["authfile"]), "--src-cert-dir", str(world["certs"]),
                  f"docker://{source}", f"oci:{out}:v1")


def api(world, method: str, path: str, headers=None):
    context = ssl.create_default_context(cadata=world["registry"].ca_pem)
    connection = http.client.HTTPSConnection(CLUSTER_IP, 5000, context=context, timeout=10)
    token = base64.b64encode(f"admin:{world['password']}".encode()).decode()
    connection.request(method, path, headers={"Authorization": f"Basic {token}", **(headers or {})})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def blob_path(world, digest: str) -> Path:
    hex_ = digest.split(":", 1)[1]
    return data(world) / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def job(world, name: str, gc_hook: bool = True) -> Registry:
    """The CronJob's pod: its exact container (command, env, mounts) on the registry's volume."""
    hook = world["root"] / f"{name}-registry"
    if gc_hook:
        hook.write_text(
            "#!/bin/sh\n"
            '[ "$1" = garbage-collect ] || exec docker-registry "$@"\n'
            f"touch {world['root']}/{name}-collecting\n"
            f"while [ ! -e {world['root']}/{name}-go ]; do sleep 0.1; done\n"
            'exec docker-registry "$@"\n'
        )
        hook.chmod(0o755)
    return Registry(world["source"], world["root"], address="127.0.0.1", port=world["job_port"],
                    pod=world["job_pod"], name=name)


def test_collection_deletes_an_untagged_image_refuses_pushes_meanwhile_and_keeps_pulls(world):
    root = world["root"]
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
    job_endpoint = f"127.0.0.1:{world['job_port']}"
    try:
        wait_for_mode(world, "ro")
        deadline = time.monotonic() + 30
        while not (root / "job-collecting").exists():
            assert time.monotonic() < deadline, "the job never started collecting"
            time.sleep(0.1)

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
    root = world["root"]
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


def test_the_cron_job_runs_beside_the_registry_pod_with_its_volume_and_config(world):
    pod = world["job_pod"]
    deployment_pod = world["source"].deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (registry,) = deployment_pod["containers"]
    assert container["image"] == registry["image"] and container["env"] == registry["env"]
    assert container["volumeMounts"] == registry["volumeMounts"] and pod["volumes"] == deployment_pod["volumes"]
    assert container["command"][:2] == ["/bin/sh", "-c"] and "garbage-collect --delete-untagged" in container["command"][2]
    term = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == world["source"].deployment["spec"]["selector"]["matchLabels"]
    cron = world["run"].one("kubernetes:batch/v1:CronJob").inputs["spec"]
    assert cron["schedule"] == "0 3 * * 0" and cron["concurrencyPolicy"] == "Forbid"


def test_both_maintenance_scripts_are_shellcheck_clean_posix_sh():
    """They run under the registry image's busybox sh: POSIX only."""
    require_tools({"shellcheck": "shellcheck"})
    from registry import maintenance
    for script in (maintenance.SERVE_SCRIPT, maintenance.GC_SCRIPT):
        result = subprocess.run(["shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
