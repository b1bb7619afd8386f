"""Pushers and pullers, with the real parts: the registry's pod as the program renders it
(the real registry behind Debian's nginx with the ConfigMap's nginx.conf,
tests/support/registry_server.py), skopeo as the clients, and raw HTTP for every write
route of the distribution spec.

By default the pull secrets' user can pull every image and write nothing; the login
outputs push; a puller of registry:pullers is the same; an anonymous client is asked
to log in as the registry asked before the proxy.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.nodes import require_tools
from tests.support.oci import read_image, write_image, write_index
from tests.support.registry_server import REGISTRY_TOOL, Registry, pull_authfile, serving
from tests.support.stack import StackRun, run_stack

# Its own address: no other test's, and none of the simulated nodes'.
ADDRESS = "127.0.14.1"
TOOLS = {**REGISTRY_TOOL, "skopeo": "skopeo"}
ALL_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


@dataclass
class World:
    run: StackRun
    registry: Registry
    root: Path
    certs: Path
    login: Path  # the login outputs: a pusher
    authfile: Path  # the pull secret: the pull secrets' own user
    puller: Path  # a puller of registry:pullers
    pushed: dict  # what the pusher pushed first: {"manifest": digest, "blob": digest, "upload": location}

    def auth(self, file: Path) -> str:
        entry = json.loads(file.read_text())["auths"][f"{ADDRESS}:5000"]
        return "Basic " + entry["auth"]

    def http(self, method: str, path: str, authorization: str | None = None, body: bytes = b"",
             headers: dict | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        context = ssl.create_default_context(cadata=self.registry.ca_pem)
        connection = http.client.HTTPSConnection(ADDRESS, 5000, context=context, timeout=30)
        sent = {**({"Authorization": authorization} if authorization else {}), **(headers or {})}
        if method in ("PUT", "PATCH", "POST"):
            sent.setdefault("Content-Length", str(len(body)))
        try:
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def skopeo(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["skopeo", "--command-timeout", "120s", *args], capture_output=True, text=True,
                              timeout=240)

    def push(self, layout: Path, target: str, *more: str, authfile: Path | None = None) -> subprocess.CompletedProcess:
        return self.skopeo("copy", *more, "--dest-authfile", str(authfile or self.login), "--dest-cert-dir",
                           str(self.certs), f"oci:{layout}:v1", f"docker://{ADDRESS}:5000/{target}")

    def pull(self, source: str, out: Path, *more: str, authfile: Path | None = None) -> subprocess.CompletedProcess:
        return self.skopeo("copy", *more, "--src-authfile", str(authfile or self.authfile), "--src-cert-dir",
                           str(self.certs), f"docker://{ADDRESS}:5000/{source}", f"oci:{out}:v1")


def login_file(path: Path, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {f"{ADDRESS}:5000": {"auth": token}}}))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_tools(TOOLS)
    root = tmp_path_factory.mktemp("pull-only")
    run = run_stack({"serviceCidr": "127.0.0.0/8", "clusterIp": ADDRESS, "users": ["admin", "ci"],
                     "pullers": ["scanner"], "nodeTrust": "cluster"})
    assert run.error is None, run.error
    with serving(run, root / "registry") as registry:
        certs = root / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_text(registry.ca_pem)
        pull = json.loads(pull_authfile(run, root / "pull.json").read_text())["auths"]
        # The pull secret names the Service by its name; the test dials its address.
        authfile = root / "pull-by-address.json"
        authfile.write_text(json.dumps({"auths": {f"{ADDRESS}:5000": pull[run.outputs["endpoint"]]}}))
        login = login_file(root / "login.json", run.outputs["username"], run.outputs["password"])
        puller = login_file(root / "scanner.json", "scanner", run.outputs["pullerCredentials"]["scanner"])
        world = World(run, registry, root, certs, login, authfile, puller, {})
        layout = root / "first"
        write_image(layout, "v1", layers=2, seed=b"first")
        pushed = world.push(layout, "team/app:v1")
        assert pushed.returncode == 0, pushed.stderr
        response, _ = world.http("HEAD", "/v2/team/app/manifests/v1", world.auth(login), headers={"Accept": ALL_TYPES})
        manifest = response.getheader("Docker-Content-Digest")
        _, body = world.http("GET", f"/v2/team/app/manifests/{manifest}", world.auth(login),
                             headers={"Accept": ALL_TYPES})
        blob = json.loads(body)["layers"][0]["digest"]
        # An upload a pusher has started and not finished: a puller must not touch it either.
        response, _ = world.http("POST", "/v2/team/app/blobs/uploads/", world.auth(login))
        assert response.status == 202
        world.pushed.update(manifest=manifest, blob=blob, upload=response.getheader("Location"))
        yield world


def state(world: World) -> dict:
    """What the registry holds, as a pusher reads it: the catalog, the tags, the manifest, the blob, the upload."""
    login = world.auth(world.login)
    pushed = world.pushed
    _, catalog = world.http("GET", "/v2/_catalog", login)
    _, tags = world.http("GET", "/v2/team/app/tags/list", login)
    manifest, _ = world.http("HEAD", f"/v2/team/app/manifests/{pushed['manifest']}", login, headers={"Accept": ALL_TYPES})
    blob, _ = world.http("HEAD", f"/v2/team/app/blobs/{pushed['blob']}", login)
    upload, _ = world.http("GET", pushed["upload"].split(":5000", 1)[1], login)
    return {"catalog": json.loads(catalog), "tags": json.loads(tags), "manifest": manifest.status,
            "blob": blob.status, "upload": (upload.status, upload.getheader("Range"))}


def write_routes(world: World) -> list[tuple[str, str, bytes, dict]]:
    """Every write route of the distribution spec (end-4 to end-10), aimed at what exists."""
    pushed = world.pushed
    data = b"written by a puller"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = pushed["upload"].split(":5000", 1)[1]
    joiner = "&" if "?" in upload else "?"
    _, body = world.http("GET", f"/v2/team/app/manifests/{pushed['manifest']}", world.auth(world.login),
                         headers={"Accept": ALL_TYPES})
    manifest = json.loads(body)
    octets = {"Content-Type": "application/octet-stream"}
    return [
        ("POST", "/v2/team/app/blobs/uploads/", b"", {}),  # end-4a: start an upload
        ("POST", f"/v2/team/app/blobs/uploads/?digest={digest}", data, octets),  # end-4b: monolithic
        ("POST", f"/v2/other/app/blobs/uploads/?mount={pushed['blob']}&from=team/app", b"", {}),  # end-11: mount
        ("PATCH", upload, data, {**octets, "Content-Range": f"0-{len(data) - 1}"}),  # end-5: a chunk
        ("PUT", f"{upload}{joiner}digest={digest}", data, octets),  # end-6: finish the upload
        ("PUT", "/v2/team/app/manifests/v2", json.dumps(manifest).encode(),
         {"Content-Type": manifest["mediaType"]}),  # end-7: tag
        ("PUT", "/v2/team/app/manifests/v1", json.dumps(manifest).encode(),
         {"Content-Type": manifest["mediaType"]}),  # end-7: overwrite a tag
        ("DELETE", f"/v2/team/app/manifests/{pushed['manifest']}", b"", {}),  # end-9
        ("DELETE", "/v2/team/app/manifests/v1", b"", {}),  # end-9, by tag
        ("DELETE", f"/v2/team/app/blobs/{pushed['blob']}", b"", {}),  # end-10
        ("DELETE", upload, b"", {}),  # cancel the upload
    ]


@pytest.mark.parametrize("who", ["the pull secrets' user", "a puller of registry:pullers"])
def test_a_pullers_every_write_is_refused_and_nothing_of_the_registry_changes(world, who):
    file = world.authfile if who == "the pull secrets' user" else world.puller
    before = state(world)
    for method, path, body, headers in write_routes(world):
        response, _ = world.http(method, path, world.auth(file), body=body, headers=headers)
        assert response.status == 401, f"{method} {path}: {response.status}"
    assert state(world) == before


def test_a_pullers_writes_reach_no_registry_log_line(world):
    """Refused by the proxy before the registry sees them: its log names no such request."""
    marker = "/v2/never-seen/blobs/uploads/"
    response, _ = world.http("POST", marker, world.auth(world.authfile))
    assert response.status == 401
    assert marker not in (world.registry.root / "registry.log").read_text()


def test_the_pull_secrets_user_pulls_every_image_the_pusher_pushed(world):
    out = world.root / "pulled"
    pulled = world.pull("team/app:v1", out)
    assert pulled.returncode == 0, pulled.stderr
    assert read_image(out)[0] == read_image(world.root / "first")[0]
    for file in (world.authfile, world.puller):
        for method, path in (("GET", "/v2/"), ("GET", "/v2/_catalog"), ("GET", "/v2/team/app/tags/list"),
                             ("HEAD", f"/v2/team/app/manifests/{world.pushed['manifest']}"),
                             ("GET", f"/v2/team/app/blobs/{world.pushed['blob']}")):
            response, _ = world.http(method, path, world.auth(file), headers={"Accept": ALL_TYPES})
            assert response.status == 200, f"{method} {path}: {response.status}"


def test_a_puller_cannot_push_with_skopeo_and_is_told_it_is_unauthorized(world):
    layout = world.root / "by-a-puller"
    write_image(layout, "v1", layers=1, seed=b"puller")
    refused = world.push(layout, "team/app:by-puller", authfile=world.authfile)
    assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower(), refused.stderr
    _, tags = world.http("GET", "/v2/team/app/tags/list", world.auth(world.login))
    assert "by-puller" not in json.loads(tags)["tags"]


@pytest.mark.parametrize("kind", ["multi-arch", "buildx"])
def test_indexes_users_push_are_pushed_by_a_pusher_and_pulled_whole_by_the_puller(world, kind):
    layout = world.root / f"index-{kind}"
    parts = write_index(layout, "v1", kind)
    pushed = world.push(layout, f"index/{kind}:v1", "--all")
    assert pushed.returncode == 0, pushed.stderr
    out = world.root / f"pulled-{kind}"
    pulled = world.pull(f"index/{kind}:v1", out, "--all")
    assert pulled.returncode == 0, pulled.stderr
    index = json.loads((out / "index.json").read_text())["manifests"][0]
    children = json.loads((out / "blobs" / "sha256" / index["digest"].split(":", 1)[1]).read_text())["manifests"]
    assert len(children) == len(parts["children"]) == 2, "every platform, and the attestation, arrives"


def test_two_pushers_push_at_once_while_the_puller_pulls(world):
    layouts = []
    for n in range(2):
        layout = world.root / f"concurrent-{n}"
        write_image(layout, "v1", layers=3, layer_bytes=512 * 1024, seed=f"concurrent-{n}".encode())
        layouts.append(layout)
    other = login_file(world.root / "ci.json", "ci", world.run.outputs["credentials"]["ci"])
    results: dict[str, subprocess.CompletedProcess] = {}

    def push(n: int, file: Path) -> None:
        results[f"push-{n}"] = world.push(layouts[n], f"concurrent/app{n}:v1", authfile=file)

    def pull() -> None:
        results["pull"] = world.pull("team/app:v1", world.root / "pulled-meanwhile")

    threads = [threading.Thread(target=push, args=(0, world.login)), threading.Thread(target=push, args=(1, other)),
               threading.Thread(target=pull)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r.returncode == 0 for r in results.values()), {k: r.stderr for k, r in results.items()}
    for n in range(2):
        out = world.root / f"concurrent-pulled-{n}"
        pulled = world.pull(f"concurrent/app{n}:v1", out)
        assert pulled.returncode == 0, pulled.stderr
        assert read_image(out)[0] == read_image(layouts[n])[0]


def test_an_anonymous_client_is_asked_to_log_in_as_the_registry_asked_before(world):
    response, _ = world.http("GET", "/v2/")
    assert response.status == 401
    assert response.getheader("WWW-Authenticate") == 'Basic realm="image-registry registry"'
    assert response.getheader("Docker-Distribution-Api-Version") == "registry/2.0"
    for method, path, body, headers in write_routes(world)[:3]:
        response, _ = world.http(method, path, body=body, headers=headers)
        assert response.status == 401 and response.getheader("WWW-Authenticate"), f"{method} {path}"


def test_the_registrys_own_header_is_passed_on_once(world):
    response, _ = world.http("GET", "/v2/", world.auth(world.authfile))
    assert response.status == 200
    assert response.headers.get_all("Docker-Distribution-Api-Version") == ["registry/2.0"]


def test_a_wrong_password_is_refused_for_reads_and_writes(world):
    wrong = "Basic " + base64.b64encode(b"admin:not-the-password").decode()
    for method, path in (("GET", "/v2/"), ("POST", "/v2/team/app/blobs/uploads/")):
        response, _ = world.http(method, path, wrong)
        assert response.status == 401, f"{method} {path}"


def test_the_location_of_an_upload_is_https_by_the_name_the_client_dialled(world):
    response, _ = world.http("POST", "/v2/team/app/blobs/uploads/", world.auth(world.login))
    assert response.status == 202
    assert response.getheader("Location").startswith(f"https://{ADDRESS}:5000/v2/team/app/blobs/uploads/")


def test_the_probes_path_answers_without_a_password_and_shows_the_registry_behind(world):
    assert world.registry.probe() == 200
    world.registry.process.terminate()
    world.registry.process.wait(10)
    try:
        assert world.registry.probe() == 502, "the proxy alone is not a registry that serves"
    finally:
        world.registry.start()
