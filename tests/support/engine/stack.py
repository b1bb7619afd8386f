"""A stack of the engine layer: its config, set with the CLI, and the material
pulumi-tls and pulumi-random would make, made by the program under the mock layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.support.engine.program import MATERIAL
from tests.support.engine.project import EngineProject
from tests.support.stack import FakeCluster, ProviderState, StackRun, run_stack


@dataclass
class Stack:
    """A stack of the project, its config, and the material that config makes."""

    project: EngineProject
    config: dict[str, Any] = field(default_factory=dict)
    state: ProviderState = field(default_factory=ProviderState)
    run: StackRun | None = None
    # The cluster as the program reads it when the material is made (its nodes' addresses
    # go into the server certificate); by default one that fits.
    cluster: FakeCluster | None = None

    def configure(self, **changes: Any) -> StackRun:
        """Set `changes` (keys without `registry:`) in the stack, with the material that config makes.

        The material comes from the program run under the mock layer with the
        same config and the state of the previous runs, so that, as with
        pulumi-tls and pulumi-random, only what a change touches is new.
        """
        self.config.update(changes)
        run = run_stack(self.config, self.state, cluster=self.cluster)
        assert run.error is None, run.error
        for key, value in changes.items():
            self.project.set(f"registry:{key}", value, secret=key in ("sshPrivateKey", "imagePullSecret"))
        for key, (value, secret) in material(run).items():
            # --raw: the bytes pulumi-tls would give, final newline included.
            self.project.set(f"{MATERIAL}:{key}", value, secret=secret, raw=True)
        self.run = run
        return run



def material(run: StackRun) -> dict[str, tuple[Any, bool]]:
    """What pulumi-tls and pulumi-random gave the program in `run`: key -> (value, secret);
    the passwords and salts of every user (pushers, pullers, the pull secrets')."""
    password = "random:index/randomPassword:RandomPassword"
    users = [r.name.removeprefix("registry-").removesuffix("-password") for r in run.of_type(password)
             if r.name != "registry-http-secret"]
    return {
        # Every CA the nodes trust: during a rotation (caGeneration 2), the new and the old one.
        "caCert": (run.outputs["caCertificate"], False),
        "serverCert": (run.one("tls:index/locallySignedCert:LocallySignedCert").outputs["certPem"], False),
        "serverKey": (run.one("tls:index/privateKey:PrivateKey", "registry-server-key").outputs["privateKeyPem"], True),
        "httpSecret": (run.one(password, "registry-http-secret").outputs["result"], True),
        "passwords": ({u: run.one(password, f"registry-{u}-password").outputs["result"] for u in users}, True),
        "salts": ({u: run.one("random:index/randomId:RandomId", f"registry-{u}-salt").outputs["hex"] for u in users}, False),
    }
