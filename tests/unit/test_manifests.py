"""Every Kubernetes object the program creates validates strictly against real Kubernetes schemas,
for the oldest and newest minor versions the README says are supported."""

import kubernetes_validate
import pytest

from tests.support.constants import BASE_CONFIG
from tests.support.stack import run_stack

SUPPORTED = ("1.29.0", "1.37.0")


def manifests(run):
    return [(r.urn, r.inputs) for r in run.resources if r.type.startswith("kubernetes:")]


@pytest.fixture(scope="module")
def objects():
    run = run_stack({**BASE_CONFIG, "storageClass": "fast-ssd"})
    assert run.error is None, run.error
    found = manifests(run)
    kinds = sorted(inputs["kind"] for _, inputs in found)
    assert kinds == ["ConfigMap", "ConfigMap", "CronJob", "Deployment", "Namespace", "PersistentVolumeClaim", "Secret", "Secret", "Secret", "Secret", "Service"]
    return found


@pytest.fixture(scope="module")
def s3_objects():
    run = run_stack({**BASE_CONFIG, "storage": "s3", "replicas": 3, "s3": {"bucket": "registry", "endpoint": "http://minio:9000"},
                     "s3AccessKeyId": "AK", "s3SecretAccessKey": "SK"})
    assert run.error is None, run.error
    found = manifests(run)
    kinds = sorted(inputs["kind"] for _, inputs in found)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "Secret", "Secret", "Secret", "Secret", "Secret", "Service"]
    return found


@pytest.fixture(scope="module")
def knob_objects():
    """Every scheduling knob set, and the registry image from a mirror with its own pull secret."""
    from tests.support.constants import KNOBS, MIRROR_AUTH
    run = run_stack({**BASE_CONFIG, **KNOBS, "imagePullSecret": MIRROR_AUTH})
    assert run.error is None, run.error
    return manifests(run)


@pytest.fixture(scope="module")
def node_objects():
    run = run_stack({**BASE_CONFIG, "storage": "node", "storageNode": "cp"})
    assert run.error is None, run.error
    return manifests(run)


@pytest.mark.parametrize("version", SUPPORTED)
@pytest.mark.parametrize("storage", ["pvc", "s3", "pvc with every knob", "node"])
def test_every_object_validates_strictly(objects, s3_objects, knob_objects, node_objects, storage, version):
    chosen = {"pvc": objects, "s3": s3_objects, "pvc with every knob": knob_objects, "node": node_objects}[storage]
    for urn, manifest in chosen:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{urn} is invalid for Kubernetes {version}: {error.message} at {list(error.path)}")


def test_a_broken_manifest_is_caught():
    """The check can fail: a misspelt field is refused in strict mode."""
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"clusterIp": "1.2.3.4"}}, SUPPORTED[0], strict=True)


def test_readme_states_the_supported_versions():
    from tests.support.stack import ROOT
    readme = (ROOT / "README.md").read_text()
    assert "Kubernetes 1.29 to 1.37" in readme
