"""Day two, the fast layer: what the program registers across runs when the CA rotates
(caGeneration) or one password is replaced; ProviderState plays the engine's state."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509

from tests.support.rotation import (
    COMMAND,
    bundle,
    cas,
    commands,
    config,
    htpasswd_lines,
    kubernetes_inputs,
    replace_password,
    serving,
    signed_by,
    up,
)
from tests.support.stack import ProviderState

# ---- the fast layer ----------------------------------------------------------------------------


def test_raising_ca_generation_adds_the_new_ca_signs_with_it_and_drops_the_one_before_the_previous():
    state = ProviderState()
    first = up(config(generation=1), state)
    assert set(cas(first)) == {"registry-ca"}, "generation 1 keeps the names of stacks made before rotation"
    second = up(config(generation=2), state)
    third = up(config(generation=3), state)

    assert set(cas(second)) == {"registry-ca", "registry-ca-g2"}
    assert cas(second)["registry-ca"] == cas(first)["registry-ca"], "the previous CA is kept, not re-made"
    assert bundle(second) == [x509.load_pem_x509_certificate(cas(second)[n].encode()) for n in ("registry-ca-g2", "registry-ca")], \
        "clients trust both, newest first"
    assert signed_by(serving(second), cas(second)["registry-ca-g2"])

    assert set(cas(third)) == {"registry-ca-g2", "registry-ca-g3"}
    assert cas(third)["registry-ca-g2"] == cas(second)["registry-ca-g2"]
    assert signed_by(serving(third), cas(third)["registry-ca-g3"])
    assert len(bundle(third)) == 2


def test_a_rotation_updates_every_node_command_in_place_with_both_cas():
    state = ProviderState()
    before = commands(up(config(generation=1), state))
    run = up(config(generation=2), state)
    after = commands(run)
    for name, inputs in after.items():
        assert inputs["triggers"] == before[name]["triggers"], f"{name} would be replaced, not updated"
        assert inputs["create"] != before[name]["create"]
        for pem in cas(run).values():
            assert pem.strip().splitlines()[1] in inputs["create"], "the node gets both CAs"


def test_the_pods_roll_out_only_after_every_node_trusts_the_ca():
    run = up(config(), ProviderState())
    nodes = {c.urn for c in run.of_type(COMMAND)}
    assert len(nodes) == 2
    deployment = run.one("kubernetes:apps/v1:Deployment")
    tls = run.one("kubernetes:core/v1:Secret", "registry-tls")
    assert nodes <= set(deployment.dependencies), "the Deployment waits for the node commands"
    assert nodes <= set(tls.dependencies), "a restarted pod cannot pick up a certificate the nodes do not trust yet"
    service = run.one("kubernetes:core/v1:Service")
    for command in run.of_type(COMMAND):
        assert service.urn in command.dependencies
    # The nodes need the Service's clusterIP and the pods need the nodes: an
    # awaited Service (which waits for ready endpoints, that is pods) would never finish.
    assert service.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}








def password_of(run, user: str) -> str:
    return run.one("random:index/randomPassword:RandomPassword", f"registry-{user}-password").outputs["result"]


@pytest.mark.parametrize("user, changed", [
    ("admin", {"registry-auth", "registry-deployment"}),
    ("ci", {"registry-auth", "registry-deployment"}),
    ("cluster-puller", {"registry-auth", "registry-deployment", "registry-pull-default"}),
])
def test_replacing_one_password_changes_that_user_alone(user, changed):
    state = ProviderState()
    before = up(config(), state)
    replace_password(state, before, user)
    after = up(config(), state)

    assert password_of(after, user) != password_of(before, user)
    others = [u for u in ("admin", "ci", "cluster-puller") if u != user]
    assert all(password_of(after, u) == password_of(before, u) for u in others)
    old, new = htpasswd_lines(before), htpasswd_lines(after)
    assert [u for u in old if old[u] != new[u]] == [user], "only that user's htpasswd line changes"
    was, now = kubernetes_inputs(before), kubernetes_inputs(after)
    assert {name for name in now if now[name] != was[name]} == changed
    annotations = [run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["metadata"]["annotations"]
                   for run in (before, after)]
    assert {k for k in annotations[1] if annotations[1][k] != annotations[0][k]} == {"registry.pulumi.com/config-digest"}, \
        "the pods roll once, for the new htpasswd"
    if user == "cluster-puller":
        auth = json.loads(now["registry-pull-default"]["stringData"][".dockerconfigjson"])["auths"]
        token = base64.b64decode(auth["image-registry:5000"]["auth"]).decode()
        assert token == f"cluster-puller:{password_of(after, user)}", "the pull secret follows its user"
