"""Run the real Pulumi program offline, under Pulumi's mocks.

The mock monitor stands where the Pulumi engine would. It records every
resource registration as it arrives on the wire (so secret flags are the ones
the engine would see), and emulates pulumi-tls and pulumi-random with real
cryptography, so that the keys, certificates, passwords and htpasswd a run
yields are real and can be handed to real programs.

`ProviderState` plays the engine's state file: a second run that registers a
resource with the same inputs gets the same outputs back, as `pulumi up` would.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import runpy
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import json_format

from registry.cluster import kubernetes as cluster_api
from registry.cluster.view import CannotRead
from registry.config.load import parse_settings
from registry.config.model import Settings
from tests.support import sdk

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "__main__.py"
DEFAULT_ALLOCATED_IP = "10.96.0.42"


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    custom: bool
    parent: str
    inputs: dict  # plain values, secrets unwrapped
    secret_paths: list[str]  # dotted paths of inputs that arrived as secrets
    dependencies: list[str]
    delete_before_replace: bool
    outputs: dict
    # Resource options the engine acts on.
    delete_timeout: str = ""
    replace_on_changes: list[str] = field(default_factory=list)
    # create, update and delete timeouts, where given.
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    ignore_changes: list[str] = field(default_factory=list)


@dataclass
class StackRun:
    resources: list[Registration]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    error: BaseException | None = None

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.resources if r.urn == urn)


@dataclass
class ProviderState:
    """What the engine would remember between runs: outputs per URN and the inputs they came from."""

    by_urn: dict[str, tuple[dict, str, dict]] = field(default_factory=dict)


# ---- real-crypto emulation of pulumi-tls and pulumi-random ----------------------

_KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}
_EXT_USAGES = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}
_SUBJECT_FIELDS = {
    "commonName": NameOID.COMMON_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
}


def _name(subject: dict | None) -> x509.Name:
    subject = subject or {}
    return x509.Name([x509.NameAttribute(oid, str(subject[k])) for k, oid in _SUBJECT_FIELDS.items() if subject.get(k)])


def _sans(dns_names, ip_addresses) -> list:
    return [x509.DNSName(n) for n in dns_names or []] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses or []
    ]


def _load_key(pem: str):
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _private_key(inputs: dict) -> dict:
    if inputs["algorithm"] == "ECDSA":
        curve = {"P224": ec.SECP224R1(), "P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P521": ec.SECP521R1()}
        key = ec.generate_private_key(curve[inputs.get("ecdsaCurve", "P224")])
    elif inputs["algorithm"] == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))
    else:
        raise ValueError(f"unsupported algorithm {inputs['algorithm']}")
    public = key.public_key()
    return {
        **inputs,
        # pulumi-tls gives the traditional ("EC PRIVATE KEY"/"RSA PRIVATE KEY") form here.
        "privateKeyPem": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ).decode(),
        "privateKeyPemPkcs8": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "publicKeyPem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        "publicKeyOpenssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        + "\n",
    }


def _certificate(
    inputs: dict, subject: x509.Name, public_key, sans: list, issuer: x509.Name, signing_key, issuer_cert=None
) -> dict:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    end = now + datetime.timedelta(hours=int(inputs["validityPeriodHours"]))
    uses = inputs.get("allowedUses") or []
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(end)
    )
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    key_usages = {v: False for v in _KEY_USAGES.values()}
    for use in uses:
        if use in _KEY_USAGES:
            key_usages[_KEY_USAGES[use]] = True
    if any(key_usages.values()):
        builder = builder.add_extension(x509.KeyUsage(**key_usages), critical=True)
    ext = [_EXT_USAGES[u] for u in uses if u in _EXT_USAGES]
    if ext:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    # Go's x509.CreateCertificate (under pulumi-tls) gives a CA a Subject Key ID
    # and copies the issuer's into the child's Authority Key ID.
    if is_ca or inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if issuer_cert is not None:
        try:
            ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
        except x509.ExtensionNotFound:
            pass
    cert = builder.sign(signing_key, hashes.SHA256())
    return {
        **inputs,
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": now.isoformat().replace("+00:00", "Z"),
        "validityEndTime": end.isoformat().replace("+00:00", "Z"),
        "readyForRenewal": False,
    }


def _self_signed_cert(inputs: dict) -> dict:
    key = _load_key(inputs["privateKeyPem"])
    subject = _name(inputs.get("subject"))
    return _certificate(
        inputs, subject, key.public_key(), _sans(inputs.get("dnsNames"), inputs.get("ipAddresses")), subject, key
    )


def _cert_request(inputs: dict) -> dict:
    key = _load_key(inputs["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject")))
    sans = _sans(inputs.get("dnsNames"), inputs.get("ipAddresses"))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return {**inputs, "certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode()}


def _locally_signed_cert(inputs: dict) -> dict:
    csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    ca_key = _load_key(inputs["caPrivateKeyPem"])
    try:
        sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    return _certificate(inputs, csr.subject, csr.public_key(), sans, ca.subject, ca_key, issuer_cert=ca)


_DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def _random_password(inputs: dict) -> dict:
    length = int(inputs["length"])
    classes = []
    for flag, minimum, chars in (
        ("upper", "minUpper", string.ascii_uppercase),
        ("lower", "minLower", string.ascii_lowercase),
        ("numeric", "minNumeric", string.digits),
        ("special", "minSpecial", inputs.get("overrideSpecial") or _DEFAULT_SPECIAL),
    ):
        if inputs.get(flag, True):
            classes.append((chars, int(inputs.get(minimum, 0) or 0)))
    chars = [secrets.choice(c) for c, m in classes for _ in range(m)]
    alphabet = "".join(c for c, _ in classes)
    chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    result = "".join(chars)
    return {**inputs, "result": result, "bcryptHash": bcrypt.hashpw(result.encode(), bcrypt.gensalt(10)).decode()}


def _random_id(inputs: dict) -> dict:
    raw = secrets.token_bytes(int(inputs["byteLength"]))
    return {
        **inputs,
        "hex": raw.hex(),
        "b64Std": base64.b64encode(raw).decode(),
        "b64Url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "dec": str(int.from_bytes(raw, "big")),
    }


class EmulatingMocks(pulumi.runtime.Mocks):
    def __init__(self, state: ProviderState, allocated_ip: str):
        self.state = state
        self.allocated_ip = allocated_ip
        self.urn_by_name: dict[tuple[str, str], str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = unwrap_secrets(args.inputs)
        urn = self.urn_by_name.get((args.typ, args.name))
        known = self.state.by_urn.get(urn) if urn else None
        if known and known[0] == inputs:
            return known[1], known[2]
        outputs = self._outputs(args.typ, args.name, inputs)
        resource_id = outputs.pop("__id", f"{args.name}-id")
        if urn:
            self.state.by_urn[urn] = (inputs, resource_id, outputs)
        return resource_id, outputs

    def _outputs(self, typ: str, name: str, inputs: dict) -> dict:
        if typ == "tls:index/privateKey:PrivateKey":
            return _private_key(inputs)
        if typ == "tls:index/selfSignedCert:SelfSignedCert":
            return _self_signed_cert(inputs)
        if typ == "tls:index/certRequest:CertRequest":
            return _cert_request(inputs)
        if typ == "tls:index/locallySignedCert:LocallySignedCert":
            return _locally_signed_cert(inputs)
        if typ == "random:index/randomPassword:RandomPassword":
            return _random_password(inputs)
        if typ == "random:index/randomId:RandomId":
            return _random_id(inputs)
        if typ == "kubernetes:core/v1:Service":
            spec = dict(inputs.get("spec", {}))
            spec.setdefault("clusterIP", self.allocated_ip)
            return {**inputs, "spec": spec}
        if typ == "command:remote:Command":
            return {**inputs, "stdout": "", "stderr": ""}
        return dict(inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def unwrap_secrets(value: Any) -> Any:
    """Inputs as the provider sees them: secret wrappers replaced by their values."""
    if isinstance(value, dict):
        if value.get(sdk.SIG_KEY) == sdk.SECRET_SIG:
            return unwrap_secrets(value.get("value"))
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def _secret_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        if value.get(sdk.SIG_KEY) == sdk.SECRET_SIG:
            return [path or "."]
        found = []
        for key, item in value.items():
            found += _secret_paths(item, f"{path}.{key}" if path else key)
        return found
    if isinstance(value, list):
        found = []
        for i, item in enumerate(value):
            found += _secret_paths(item, f"{path}[{i}]")
        return found
    return []


class RecordingMonitor(sdk.MockMonitor):
    def __init__(self, mocks: EmulatingMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        self.mocks.urn_by_name[(request.type, request.name)] = urn
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = json_format.MessageToDict(request.object)
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=urn,
                custom=bool(request.custom),
                parent=request.parent,
                inputs=unwrap_secrets(sdk.deserialize_properties(request.object)),
                secret_paths=_secret_paths(raw),
                dependencies=list(request.dependencies),
                delete_before_replace=bool(request.deleteBeforeReplace),
                outputs=self.resources[urn].state,
                delete_timeout=request.customTimeouts.delete,
                replace_on_changes=list(request.replaceOnChanges),
                custom_timeouts={k: v for k, v in (("create", request.customTimeouts.create),
                                                   ("update", request.customTimeouts.update),
                                                   ("delete", request.customTimeouts.delete)) if v},
                ignore_changes=list(request.ignoreChanges),
            )
        )
        return response


def config_for(values: dict[str, Any]) -> dict[str, str]:
    """`{"nodes": [...], "port": 5000}` -> `{"registry:nodes": "[...]", "registry:port": "5000"}`; a key
    with its own namespace (`kubernetes:context`) stays as it is."""
    return {
        (key if ":" in key else f"registry:{key}"): value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
    }


# parse_settings only asks whether the secret is set; a real Output made
# outside a program run would tie itself to another event loop.
KEY = "stands-for-a-secret-output"


def settings_from(values: dict, key=KEY) -> Settings:
    """Settings from config values (keys without `registry:`), without a program run."""
    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    return parse_settings(raw.get, {"sshPrivateKey": key} if key is not None else {})


@dataclass
class FakeCluster:
    """The cluster registry/cluster/checks.py reads, under mocks. By default every
    namespace but `missing` exists, with a default ServiceAccount that lists
    no pull secret, and there is a default StorageClass."""

    missing: set[str] = field(default_factory=lambda: {"registry"})
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    account_secrets: dict[str, list[str]] = field(default_factory=dict)
    classes: dict[str, bool] = field(default_factory=lambda: {"standard": True, "fast-ssd": False})
    # (namespace, name) -> (type, decoded data)
    secrets: dict[tuple[str, str], tuple[str, dict[str, str]]] = field(default_factory=dict)
    # (kind, namespace, name) -> labels of the Secrets, ConfigMaps and claims that exist
    objects: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    service_list: list = field(default_factory=list)  # of registry.cluster.view.ServiceView
    # None: a cluster older than the ServiceCIDR API (Kubernetes 1.33)
    ranges: list[str] | None = None
    # node name -> its kubernetes.io/hostname; None: whichever node is asked for exists
    nodes: dict[str, str] | None = None
    unreadable: bool = False
    # Each node's first InternalIP, as the node reports it, by node name.
    addresses: dict[str, str] = field(default_factory=dict)
    # Nodes whose Ready condition is not True.
    not_ready: set[str] = field(default_factory=set)
    # (namespace, name) of DaemonSets that carry a deletionTimestamp.
    deleting: set[tuple[str, str]] = field(default_factory=set)
    # Classes without a provisioner, and the capacities of the Available volumes of each.
    unprovisioned: set[str] = field(default_factory=set)
    volumes: dict[str, list[str]] = field(default_factory=dict)

    def _read(self) -> None:
        if self.unreadable:
            raise CannotRead("dial tcp 127.0.0.1:6443: connect: connection refused")

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        self._read()
        return None if name in self.missing else self.labels.get(name, {"kubernetes.io/metadata.name": name})

    def account_pull_secrets(self, namespace: str) -> list[str] | None:
        self._read()
        return None if namespace in self.missing else self.account_secrets.get(namespace, [])

    def storage_classes(self) -> dict[str, bool]:
        self._read()
        return dict(self.classes)

    def services(self) -> list:
        self._read()
        return list(self.service_list)

    def service_ranges(self) -> list[str] | None:
        self._read()
        return self.ranges

    def node_addresses(self) -> dict[str, str]:
        self._read()
        return dict(self.addresses)

    def unprovisioned_classes(self) -> set[str]:
        self._read()
        return set(self.unprovisioned)

    def available_volumes(self, storage_class: str) -> list[str]:
        self._read()
        return list(self.volumes.get(storage_class, []))

    def not_ready_nodes(self) -> list[str]:
        self._read()
        return sorted(self.not_ready)

    def daemon_set_being_deleted(self, namespace: str, name: str) -> bool:
        self._read()
        return (namespace, name) in self.deleting

    def node_names(self, label_selector: str = "") -> list[str]:
        self._read()
        hostname = label_selector.split("=", 1)[1] if label_selector else None
        if self.nodes is None:
            return [hostname] if hostname else []
        return [name for name, label in self.nodes.items() if hostname in (None, label)]

    def object_labels(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        self._read()
        return self.objects.get((kind, namespace, name))

    def secret(self, namespace: str, name: str) -> tuple[str, dict[str, str]] | None:
        self._read()
        return self.secrets.get((namespace, name))


def run_stack(
    config: dict[str, Any],
    state: ProviderState | None = None,
    allocated_ip: str = DEFAULT_ALLOCATED_IP,
    cluster: FakeCluster | None = None,
    warnings: list[str] | None = None,
    preview: bool = False,
) -> StackRun:
    """Run __main__.py once with `config` (keys without the `registry:` prefix),
    against `cluster` as the cluster the program checks before it creates anything.
    What the program warns of (pulumi.log.warn) is appended to `warnings`."""
    state = state if state is not None else ProviderState()
    # By default a cluster that fits: the registry's namespace is yet to be made, the others exist.
    if cluster is None:
        namespace = config.get("namespace", "registry")
        cluster = FakeCluster(missing={namespace, f"{namespace}-node-trust"}, ranges=[config.get("serviceCidr", "10.96.0.0/12")])
    real_connect, cluster_api.connect = cluster_api.connect, lambda settings: cluster
    real_warn = pulumi.log.warn
    if warnings is not None:
        pulumi.log.warn = lambda message, *args, **kwargs: warnings.append(message)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        sdk.new_program()
        pulumi.runtime.set_all_config(config_for(config), secret_keys=["registry:sshPrivateKey", "registry:s3SecretAccessKey", "registry:imagePullSecret", "registry:sshKeyPassphrase", "registry:tlsKey"])
        mocks = EmulatingMocks(state, allocated_ip)
        monitor = RecordingMonitor(mocks)
        pulumi.runtime.set_mocks(
            mocks, project="registry", stack="test", preview=preview, monitor=monitor, organization="organization"
        )
        # As pulumi.runtime.test does: outputs made outside this run belong to
        # another event loop, and waiting for them would hang.
        sdk.forget_other_runs()
        stack = sdk.root_resource()
        try:
            sdk.run_program(lambda: runpy.run_path(str(PROGRAM), run_name="__main__"))
        except Exception as error:  # the program refused its config, say
            return StackRun(resources=monitor.registrations, outputs={}, secret_outputs=set(), error=error)

        outputs: dict[str, Any] = {}
        secret_outputs: set[str] = set()
        for key, value in stack.outputs.items():
            output = pulumi.Output.from_input(value)
            outputs[key] = sdk.wait(output.future())
            if sdk.wait(output.is_secret()):
                secret_outputs.add(key)
        return StackRun(resources=monitor.registrations, outputs=outputs, secret_outputs=secret_outputs)
    finally:
        asyncio.set_event_loop(None)
        cluster_api.connect = real_connect
        pulumi.log.warn = real_warn
        loop.close()
