"""The OCI distribution-spec conformance suite against the registry's pod as the program renders it.

The pod runs as tests/support/registry_server.py starts it: the real registry at the
version the default image runs behind the real nginx, with the program's TLS, htpasswd
files, proxy config, deletion and settings. The suite (tests/build_conformance.sh, pinned by tests/go/conformance)
pushes, pulls, lists, mounts across repositories, resumes and deletes, as the login
the stack prints. What it reports is compared test by test with what distribution
itself implements: a test that starts failing is a setting of ours that broke a
route; a test that starts passing is a registry that learnt something (update the list).
The same suite also runs against the registry alone (the same binary, plain HTTP, no
auth, no proxy, its image's config with deletion on): the pod must pass exactly what it
passes, test by test, so that the proxy loses no test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.support.nodes import require_tools
from tests.support.polling import eventually
from tests.support.registry_server import IMAGE_CONFIG, IMAGE_ENV, REGISTRY_BINARY, REGISTRY_TOOL, serving
from tests.support.stack import ROOT, run_stack

# Its own addresses: no other test's, and none of the simulated nodes'.
ADDRESS = "127.0.13.1"
BARE_ADDRESS = "127.0.13.2"
BUILD = ROOT / "tests" / "build_conformance.sh"
SUITE = subprocess.run(["bash", str(BUILD), "--path"], check=True, capture_output=True, text=True).stdout.strip()

# What distribution 3.1.1 itself does not do, with the registry's defaults, as the suite
# reports it (the same with no setting of ours: the registry alone): by the words in a test's name.
NOT_DONE_BY_DISTRIBUTION = {
    "sha512": "digests other than sha256",
    "subject": "manifests with a subject field (and so their referrers)",
    "referrers": "the referrers API",
    "invalid-digest-format": "a 400 for a malformed digest (it answers 500)",
    "non-distributable-layers": "manifests naming layers it is not sent (validation.manifests.urls allows none)",
    "chunked out-of-order": "chunks sent out of order",
}


def outcomes(junit: Path) -> dict[str, set[str]]:
    """Each test of the suite's junit.xml, by name: the statuses its runs had (passed, skipped, failure, error)."""
    found: dict[str, set[str]] = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        found.setdefault(case.get("name", ""), set()).add(case.get("status", ""))
    return found


def suite(root: Path, registry: str, tls: bool, login: tuple[str, str] | None, ca: str | None) -> dict[str, set[str]]:
    """Runs the conformance suite against `registry` (host:port); its outcomes by test."""
    env = {
        "PATH": os.environ["PATH"], "HOME": str(root), "OCI_REGISTRY": registry,
        "OCI_TLS": "enabled" if tls else "disabled",
        "OCI_REPO1": "conformance/one", "OCI_REPO2": "conformance/two",
        "OCI_RESULTS_DIR": str(root / "results"), "OCI_LOG": "error",
    }
    if ca:
        (root / "ca.crt").write_text(ca)
        env["SSL_CERT_FILE"] = str(root / "ca.crt")
    if login:
        env["OCI_USERNAME"], env["OCI_PASSWORD"] = login
    done = subprocess.run([SUITE], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    found = outcomes(root / "results" / "junit.xml")
    assert found, done.stdout + done.stderr
    return found


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> dict[str, set[str]]:
    """The registry alone: the same binary with its image's config, deletion on, nothing of ours."""
    require_tools({**REGISTRY_TOOL, SUITE: "bash tests/build_conformance.sh"})
    root = tmp_path_factory.mktemp("conformance-bare")
    env = {"PATH": os.environ["PATH"], "REGISTRY_HTTP_ADDR": f"{BARE_ADDRESS}:5000", "REGISTRY_LOG_LEVEL": "error",
           "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(root / "data"), "REGISTRY_STORAGE_DELETE_ENABLED": "true",
           "REGISTRY_HTTP_DEBUG_ADDR": "", **IMAGE_ENV}
    (root / "config.yml").write_text(IMAGE_CONFIG)
    with open(root / "registry.log", "wb") as log:
        process = subprocess.Popen([REGISTRY_BINARY, "serve", str(root / "config.yml")], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            eventually(lambda: socket.create_connection((BARE_ADDRESS, 5000), timeout=1).close() is None,
                       "the bare registry to listen", 15, every=0.05, ignoring=(OSError,))
            return suite(root, f"{BARE_ADDRESS}:5000", tls=False, login=None, ca=None)
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, str]:
    require_tools({**REGISTRY_TOOL, SUITE: "bash tests/build_conformance.sh"})
    root = tmp_path_factory.mktemp("conformance")
    run = run_stack({"serviceCidr": "127.0.0.0/8", "clusterIp": ADDRESS, "users": ["admin"], "nodeTrust": "cluster"})
    assert run.error is None, run.error
    with serving(run, root / "registry") as registry:
        found = suite(root, f"{ADDRESS}:{registry.port}", tls=True, ca=registry.ca_pem,
                      login=(run.outputs["username"], run.outputs["password"]))
    failed = sum(1 for statuses in found.values() if statuses & {"failure", "error"})
    print(f"conformance: {len(found)} tests, {failed} failed (what distribution does not do)")
    return found


def failures(report: dict[str, set[str]]) -> set[str]:
    return {name for name, statuses in report.items() if statuses & {"failure", "error"}}


def test_the_pod_as_rendered_fails_no_conformance_test_but_what_distribution_itself_does_not_do(report):
    unexplained = {name for name in failures(report) if not any(words in name for words in NOT_DONE_BY_DISTRIBUTION)}
    assert unexplained == set(), "broken by the pod's configuration"
    unused = {words for words in NOT_DONE_BY_DISTRIBUTION if not any(words in name for name in failures(report))}
    assert unused == set(), "distribution does these now: take them off the list"


def test_the_proxy_loses_no_test_the_registry_alone_passes(report, bare):
    assert set(report) == set(bare), "the same tests ran"
    assert failures(report) == failures(bare), "the same tests failed, and only those"
    assert len(report) >= 300


def test_the_suite_pushed_pulled_mounted_resumed_listed_and_deleted_through_the_pod(report):
    passed = {name for name, statuses in report.items() if statuses == {"passed"}}
    for route in ("blob-post-put", "blob-patch-chunked", "blob-patch-stream", "blob-mount", "blob-get", "blob-delete",
                  "manifest-by-tag", "manifest-delete", "tag-list", "ping"):
        assert any(name.endswith("/" + route) for name in passed), f"no test of {route} passed"
