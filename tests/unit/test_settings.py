"""Config is read once, with the documented defaults, and bad values are refused by name."""

import json
import re
import subprocess

import pytest
import yaml

from registry.config.load import SettingsError, parse_settings
from registry.config.model import DEFAULT_IMAGE
from tests.support.constants import BASE_CONFIG, HOST_KEY
from tests.support.stack import KEY, ROOT, run_stack, settings_from

NODE_LIST = [{"name": "cp", "host": "192.168.56.10"}]


def refusal(values: dict, key=KEY) -> str:
    with pytest.raises(SettingsError) as caught:
        settings_from(values, key)
    return str(caught.value)


def test_defaults_match_the_config_contract():
    s = settings_from({}, key=None)
    assert (s.hostname, s.namespace, s.port, s.service_cidr) == ("image-registry", "registry", 5000, "10.96.0.0/12")
    assert s.cluster_ip is None and s.node_port == 30500 and s.image == DEFAULT_IMAGE
    assert (s.storage_size, s.storage_class) == ("10Gi", None)
    assert s.users == ("admin",) and s.pull_secret_namespaces == ("default",)
    assert s.pullers == () and s.pull_secret_user == "cluster-puller" and s.proxy_image.startswith("nginx:")
    assert s.cert_validity_days == 365 and s.nodes == () and s.ssh_user == "root"
    assert s.endpoint == "image-registry:5000"


def test_pulumi_yaml_declares_the_same_defaults_the_code_applies():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "registry"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    assert project["options"] == {"refresh": "always"}, "what was deleted by hand is made again by the next up"
    declared = {k: v for k, v in project["config"].items() if ":" not in k}
    code = settings_from({}, key=None)
    expected = {
        "hostname": code.hostname, "namespace": code.namespace, "port": code.port,
        "serviceCidr": code.service_cidr, "nodePort": code.node_port, "image": code.image,
        "storageSize": code.storage_size, "users": list(code.users),
        "pullSecretNamespaces": list(code.pull_secret_namespaces),
        "certValidityDays": code.cert_validity_days, "sshUser": code.ssh_user,
        "storage": code.storage, "replicas": code.replicas,
        "caGeneration": code.ca_generation, "gcSchedule": code.gc_schedule, "metrics": code.metrics,
        "discovery": code.discovery, "nodeTrust": code.node_trust, "nodeTrustImage": code.node_trust_image,
        "clusterCheck": code.cluster_check, "serviceAccountPullSecret": code.service_account_pull_secret,
        "sshAgent": code.ssh_agent, "proxyImage": code.proxy_image, "pullSecretUser": code.pull_secret_user,
    }
    assert {k: v["default"] for k, v in declared.items()} == expected
    for key, spec in declared.items():
        assert spec["type"] in {"string", "integer", "boolean", "array"}, key
        assert spec.get("description"), key
        assert not spec.get("secret"), f"{key}: no secret key may carry a default"
    # pulumi-kubernetes' own keys, each explained where it is set.
    assert {k: v for k, v in project["config"].items() if ":" in k} == {
        "kubernetes:enableSecretMutable": True, "kubernetes:enableServerSideApply": False}


def test_example_stack_is_a_valid_three_node_ssh_config():
    stack = yaml.safe_load((ROOT / "Pulumi.example.yaml").read_text())["config"]
    values = {k.split(":", 1)[1]: v for k, v in stack.items()}
    s = settings_from(values)
    assert len(s.nodes) == 3 and s.cluster_ip is None and s.pull_secret_namespaces == ("default",)
    assert "sshPrivateKey" not in values, "the example must hold no secret"


def test_the_readmes_first_run_sets_one_key_needs_no_ssh_and_commits_no_stack_file():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## First run", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    sets = re.findall(r"pulumi config set (registry:\S+) (\S+)", block)
    assert sets == [("registry:nodeTrust", "cluster")]
    s = settings_from({"nodeTrust": "cluster"}, key=None)
    assert s.node_trust == "cluster" and s.nodes == () and s.ssh_private_key is None
    # pulumi stack init writes the stack's encryption salt into its file: no stack file is committed.
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/Pulumi.*.yaml" in ignored and "!/Pulumi.example.yaml" in ignored
    tracked = subprocess.run(["git", "ls-files", "Pulumi.*.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert tracked.stdout.split() == ["Pulumi.example.yaml"]


def test_node_defaults_come_from_ssh_user():
    s = settings_from({"sshUser": "ops", "nodes": [{"name": "a", "host": "10.0.0.1"}, {"name": "b", "host": "10.0.0.2", "user": "root", "port": 2200, "runtime": "k3s"}]})
    assert [(n.user, n.port, n.runtime) for n in s.nodes] == [("ops", 22, "auto"), ("root", 2200, "k3s")]


@pytest.mark.parametrize(
    "values, key, value, accepted",
    [
        ({"hostname": "Image-Registry"}, "hostname", "'Image-Registry'", "lower-case"),
        ({"hostname": "image_registry"}, "hostname", "'image_registry'", "lower-case"),
        ({"hostname": "image-registry."}, "hostname", "'image-registry.'", "ends with a dot"),
        ({"hostname": "a" * 64}, "hostname", "a" * 64, "longer than 63"),
        ({"port": "0"}, "port", "0", "between 1 and 65535"),
        ({"port": "65536"}, "port", "65536", "between 1 and 65535"),
        ({"port": "http"}, "port", "'http'", "whole number"),
        ({"nodePort": "80"}, "nodePort", "80", "between 30000 and 32767"),
        ({"nodePort": "32768"}, "nodePort", "32768", "between 30000 and 32767"),
        ({"clusterIp": "not-an-ip"}, "clusterIp", "'not-an-ip'", "is not an IP address"),
        ({"clusterIp": "172.16.0.5"}, "clusterIp", "172.16.0.5", "is outside registry:serviceCidr 10.96.0.0/12"),
        ({"serviceCidr": "10.96.0.1/12"}, "serviceCidr", "'10.96.0.1/12'", "CIDR"),
        ({"users": ["ad:min"]}, "users[0]", "'ad:min'", "':' or whitespace"),
        ({"users": ["ad min"]}, "users[0]", "'ad min'", "':' or whitespace"),
        ({"users": ["admin", "admin"]}, "users[1]", "'admin'", "listed twice"),
        ({"users": []}, "users", "[]", "at least one user"),
        ({"pullers": ["scan", "scan"]}, "pullers[1]", "'scan'", "listed twice"),
        ({"pullers": [""]}, "pullers[0]", '""', "non-empty string"),
        ({"pullers": ["ad:min"]}, "pullers[0]", "'ad:min'", "':' or whitespace"),
        ({"pullSecretUser": "a b"}, "pullSecretUser", "'a b'", "':' or whitespace"),
        ({"users": ["admin", "ci"], "pullers": ["ci"]}, "pullers", "'ci'", "either pushes (users) or only pulls (pullers)"),
        ({"pullSecretUser": "admin"}, "pullSecretUser", "'admin'", "which registry:users lists too"),
        ({"pullers": ["scan"], "pullSecretUser": "scan"}, "pullSecretUser", "'scan'", "which registry:pullers lists too"),
        ({"proxyImage": "Nginx:latest"}, "proxyImage", "'Nginx:latest'", "must be an image reference"),
        ({"certValidityDays": "0"}, "certValidityDays", "0", "between 1 and 825"),
        ({"certValidityDays": "826"}, "certValidityDays", "826", "between 1 and 825"),
        ({"storageSize": "lots"}, "storageSize", "'lots'", "Kubernetes quantity"),
        ({"namespace": "My_NS"}, "namespace", "'My_NS'", "namespace name"),
        ({"namespace": "default"}, "namespace", "'default'", "the cluster owns"),
        ({"storage": "nfs"}, "storage", "'nfs'", "must be one of pvc, s3"),
        ({"caGeneration": "0"}, "caGeneration", "0", "between 1 and 1000"),
        ({"gcSchedule": "weekly"}, "gcSchedule", "'weekly'", "is not a cron schedule"),
        ({"gcSchedule": "0 3 * *"}, "gcSchedule", "'0 3 * *'", "five fields"),
        ({"metrics": "yes"}, "metrics", "'yes'", "true or false"),
        ({"nodes": [{"name": "a", "host": "10.0.0.1", "hostKey": "ssh-ed25519 AAAA"}]}, "nodes[0].hostKey", '"ssh-ed25519 AAAA"', "ssh-keyscan"),
        ({"sshBastion": {"port": 22}}, "sshBastion.host", "null", "jump host's IP address or DNS name"),
        ({"sshBastion": {"host": "jump", "proxy": "x"}}, "sshBastion", '{"host": "jump", "proxy": "x"}', "unknown keys ['proxy']"),
        ({"sshBastion": {"host": "jump", "hostKey": "rsa"}}, "sshBastion.hostKey", '"rsa"', "ssh-keyscan"),
        ({"storage": "node", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storageNode", "(unset)", "must name the node entry"),
        ({"storage": "node", "storageNode": "w1", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storageNode", "'w1'", "entries: ['cp']"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "/etc", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'/etc'", "not a system folder"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "data", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'data'", "absolute folder"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "/usr/local/bin", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'/usr/local/bin'", "not a system folder"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "/etc/kubernetes/manifests", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'/etc/kubernetes/manifests'", "not a system folder"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "/var/spool/cron/crontabs", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'/var/spool/cron/crontabs'", "not a system folder"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "/root/.ssh", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'/root/.ssh'", "not a system folder"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "/boot/efi", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'/boot/efi'", "not a system folder"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "/var/lib", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'/var/lib'", "not a system folder"),
        ({"storage": "node", "storageNode": "cp", "storagePath": "/srv", "sshPrivateKey": "k", "nodes": NODE_LIST}, "storagePath", "'/srv'", "not a system folder"),
        ({"storage": "node", "storageNode": "cp", "replicas": "2", "sshPrivateKey": "k", "nodes": NODE_LIST}, "replicas", "2", "folder on one node"),
        ({"keepData": "true"}, "keepData", "true", "destroy deletes with the namespace"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu", '"lots"', "Kubernetes quantity"),
        ({"resources": {"limits": {"gpu": "1"}}}, "resources.limits", '{"gpu": "1"}', "cpu, memory, ephemeral-storage"),
        ({"resources": {"request": {}}}, "resources", '{"request": {}}', "requests and/or limits"),
        ({"nodeSelector": {"disk type": "ssd"}}, "nodeSelector", '"disk type"', "not a label key"),
        ({"nodeSelector": {"disktype": True}}, "nodeSelector.disktype", "true", "not a label value"),
        ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "tolerations[0].operator", '"Maybe"', "Equal or Exists"),
        ({"tolerations": [{"key": "a", "effect": "NoRun"}]}, "tolerations[0].effect", '"NoRun"', "NoSchedule, PreferNoSchedule or NoExecute"),
        ({"tolerations": [{"operator": "Exists", "value": "x"}]}, "tolerations[0].value", '"x"', "empty with operator Exists"),
        ({"tolerations": [{"key": "a", "tolerationSeconds": 5}]}, "tolerations[0].tolerationSeconds", "5", "with effect NoExecute"),
        ({"affinity": {"nodeAfinity": {}}}, "affinity", '{"nodeAfinity": {}}', "nodeAffinity, podAffinity, podAntiAffinity"),
        ({"imagePullSecret": "hunter2"}, "imagePullSecret", "(secret, not shown)", ".dockerconfigjson document"),
        ({"storage": "s3", "s3": {"bucket": "images"}, "gcSchedule": "@daily"}, "gcSchedule", "'@daily'", "needs registry:storage pvc"),
        ({"replicas": "2"}, "replicas", "2", "needs registry:storage s3"),
        ({"replicas": "0"}, "replicas", "0", "between 1 and 20"),
        ({"storage": "s3"}, "s3", "(unset)", "is required with registry:storage s3"),
        ({"storage": "s3", "s3": {"region": "eu-west-1"}}, "s3.bucket", "null", "is required"),
        ({"storage": "s3", "s3": {"bucket": "Reg_Istry"}}, "s3.bucket", '"Reg_Istry"', "lower-case"),
        ({"storage": "s3", "s3": {"bucket": "registry", "endpoint": "minio:9000"}}, "s3.endpoint", '"minio:9000"', "http:// or https://"),
        ({"storage": "s3", "s3": {"bucket": "registry", "endpoint": "ftp://minio"}}, "s3.endpoint", '"ftp://minio"', "http:// or https://"),
        ({"storage": "s3", "s3": {"bucket": "registry", "redirect": "no"}}, "s3.redirect", '"no"', "true or false"),
        ({"storage": "s3", "s3": {"bucket": "registry", "rootdir": "/x"}}, "s3", "rootdir", "unknown keys"),
        ({"storage": "s3", "s3": {"bucket": "registry"}, "s3AccessKeyId": "AK"}, "s3AccessKeyId", "without", "registry:s3SecretAccessKey"),
        ({"s3": {"bucket": "registry"}}, "s3", "is set", "registry:storage is pvc"),
        ({"namespace": "kube-system"}, "namespace", "'kube-system'", "the cluster owns"),
        ({"hostname": "localhost"}, "hostname", "'localhost'", "names the node itself"),
        ({"hostname": "registry.localhost"}, "hostname", "'registry.localhost'", "names the node itself"),
        ({"hostname": "r" * 53}, "hostname", "r" * 53, "at most 52 fit"),
        ({"clusterIp": "10.96.0.1"}, "clusterIp", "10.96.0.1", "the API server's own"),
        ({"nodes": [{"name": "a", "host": "Node-1.example"}, {"name": "b", "host": "node-1.example"}]},
         "nodes[1].host", "'node-1.example'", "same machine"),
        ({"nodes": [{"name": "a", "host": "fd00::1"}, {"name": "b", "host": "fd00:0:0::0001"}]},
         "nodes[1].host", "'fd00:0:0::0001'", "same machine"),
        ({"nodes": [{"name": "a", "host": "10.0.0.1"}, {"name": "b", "host": "::ffff:10.0.0.1"}]},
         "nodes[1].host", "'::ffff:10.0.0.1'", "same machine"),
        ({"pullSecretNamespaces": ["default", "default"]}, "pullSecretNamespaces[1]", "'default'", "listed twice"),
        ({"nodes": [{"name": "a", "host": "10.0.0.1"}, {"name": "a", "host": "10.0.0.2"}]}, "nodes[1].name", "'a'", "unique"),
        ({"nodes": [{"name": "a", "host": "10.0.0.1"}, {"name": "b", "host": "10.0.0.1"}]}, "nodes[1].host", "'10.0.0.1'", "unique"),
        ({"nodes": [{"name": "a"}]}, "nodes[0].host", "null", "is required"),
        ({"nodes": [{"name": "a", "host": "10.0.0.1", "runtime": "rkt"}]}, "nodes[0].runtime", '"rkt"', "docker"),
        ({"nodes": [{"name": "a", "host": "10.0.0.1", "port": 0}]}, "nodes[0].port", "0", "between 1 and 65535"),
        ({"nodes": [{"name": "a", "host": "10.0.0.1", "hots": "x"}]}, "nodes[0]", "hots", "unknown keys"),
        ({"nodes": "not json"}, "nodes", "'not json'", "is not a list"),
    ],
)
def test_bad_value_is_refused_with_key_value_and_what_is_accepted(values, key, value, accepted):
    message = refusal(values)
    line = next((text for text in message.splitlines() if f"registry:{key} " in text), None)
    assert line is not None, message
    assert value in line and accepted in line, line


def test_nodes_without_ssh_key_are_refused():
    message = refusal({"nodes": [{"name": "a", "host": "10.0.0.1"}]}, key=None)
    assert "registry:sshPrivateKey is not set" in message and "registry:nodes" in message


def test_every_problem_is_reported_at_once():
    message = refusal({"port": "0", "nodePort": "1", "users": ["a:b"]})
    assert all(k in message for k in ("registry:port ", "registry:nodePort ", "registry:users[0] "))


def test_a_user_in_two_roles_is_refused_before_any_resource():
    run = run_stack({**BASE_CONFIG, "pullers": ["ci"], "pullSecretUser": "admin"})
    assert isinstance(run.error, SettingsError) and run.resources == []
    assert "registry:pullers lists 'ci'" in str(run.error) and "registry:pullSecretUser is 'admin'" in str(run.error)


def test_refused_config_registers_no_resource():
    run = run_stack({**BASE_CONFIG, "clusterIp": "172.16.0.5"})
    assert isinstance(run.error, SettingsError)
    assert "registry:clusterIp 172.16.0.5 is outside registry:serviceCidr 10.96.0.0/12" in str(run.error)
    assert run.resources == []


def test_settings_repr_never_shows_the_ssh_key():
    assert "key" not in repr(settings_from({"nodes": [{"name": "a", "host": "10.0.0.1"}]})).lower().replace("keys", "")


def test_an_unknown_key_is_refused_and_the_likely_one_named():
    with pytest.raises(SettingsError) as caught:
        parse_settings({}.get, {"sshPrivateKey": KEY}, keys={"nodeport", "hostname"})
    message = str(caught.value)
    assert "registry:nodeport is not a setting of this program; did you mean registry:nodePort?" in message
    assert "hostname" not in message.split("settings:")[0]


def test_an_unknown_key_in_the_stack_stops_the_program_before_any_resource():
    run = run_stack({**BASE_CONFIG, "clusterIP": "10.96.0.50"})
    assert isinstance(run.error, SettingsError) and run.resources == []
    assert "registry:clusterIP is not a setting of this program; did you mean registry:clusterIp?" in str(run.error)


def test_a_hostname_of_52_characters_still_fits():
    assert settings_from({"hostname": "r" * 52}).hostname == "r" * 52


def test_s3_defaults_follow_the_endpoint():
    aws = settings_from({"storage": "s3", "s3": {"bucket": "registry"}}).s3
    assert (aws.region, aws.endpoint, aws.force_path_style, aws.redirect, aws.access_key_id) == ("us-east-1", None, False, False, None)
    minio = settings_from({"storage": "s3", "replicas": "3", "s3": {"bucket": "registry", "endpoint": "https://minio:9000"}})
    assert minio.s3.force_path_style is True and minio.replicas == 3


def test_s3_secret_key_without_access_key_is_refused():
    with pytest.raises(SettingsError) as caught:
        parse_settings({"storage": "s3", "s3": '{"bucket": "registry"}'}.get, {"s3SecretAccessKey": KEY})
    assert "registry:s3SecretAccessKey is set without registry:s3AccessKeyId" in str(caught.value)


def test_an_empty_gc_schedule_turns_collection_off():
    assert settings_from({"gcSchedule": ""}).gc_schedule is None
    assert settings_from({"gcSchedule": "@daily"}).gc_schedule == "@daily"
    assert settings_from({}).gc_schedule == "0 3 * * 0"


def test_the_default_gc_schedule_means_none_on_s3_where_collection_cannot_run():
    s3 = {"storage": "s3", "s3": {"bucket": "images"}}
    assert settings_from(s3).gc_schedule is None
    assert settings_from({**s3, "gcSchedule": "0 3 * * 0"}).gc_schedule is None, "as Pulumi.yaml's default arrives"
    assert settings_from({}).gc_schedule == "0 3 * * 0"


def test_scheduling_knobs_reach_the_settings_as_given():
    given = {
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "nodeSelector": {"node-role.kubernetes.io/registry": "", "disktype": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "registry", "effect": "NoSchedule"},
                        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
    }
    s = settings_from(given)
    assert (s.resources, s.node_selector, list(s.tolerations), s.affinity) == (
        given["resources"], given["nodeSelector"], given["tolerations"], given["affinity"])
    default = settings_from({})
    assert default.resources == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert (default.node_selector, default.tolerations, default.affinity, default.image_pull_secret) == ({}, (), None, None)


def test_a_bad_image_pull_secret_is_never_echoed():
    message = refusal({"imagePullSecret": '{"auths": {}, "password": "hunter2"}'})
    assert "hunter2" not in message and "registry:imagePullSecret" in message


def test_storage_node_defaults_keep_the_data_in_a_folder_of_its_own():
    s = settings_from({"storage": "node", "storageNode": "cp", "sshPrivateKey": "k", "nodes": NODE_LIST})
    assert (s.storage_node.name, s.storage_path, s.keep_data) == ("cp", "/var/lib/registry-data", True)
    assert "registry:storageNode is set, but registry:storage is pvc" in refusal({"storageNode": "cp"})




def test_ssh_as_operators_have_it_agent_bastion_passphrase_host_keys():
    nodes = [{"name": "a", "host": "10.0.0.1", "hostKey": HOST_KEY}]
    raw = {"nodes": json.dumps(nodes), "sshAgent": "true", "sshBastion": json.dumps({"host": "jump.example.com", "user": "ops"})}
    s = parse_settings(raw.get, environ={"SSH_AUTH_SOCK": "/run/user/1000/agent.sock"})
    assert s.ssh_agent and s.nodes[0].host_key == HOST_KEY
    assert (s.ssh_bastion.host, s.ssh_bastion.port, s.ssh_bastion.user) == ("jump.example.com", 22, "ops")
    with pytest.raises(SettingsError) as caught:
        parse_settings(raw.get, environ={})
    assert "registry:sshAgent is true, but SSH_AUTH_SOCK is not set" in str(caught.value)
    assert "or set registry:sshAgent true" in refusal({"nodes": nodes}, key=None)
    assert "registry:sshKeyPassphrase is set without registry:sshPrivateKey" in refusal({"sshKeyPassphrase": "x"}, key=None)


@pytest.mark.parametrize("path", ["/var/lib/registry-node-trust", "/var/lib/registry-node-trust/x", "/var/lib/kubelet/pods",
                                  "/var/lib/containerd", "/var/lib/dpkg"])
def test_a_storage_path_in_a_folder_root_acts_on_is_refused(path):
    # The node program's own state, given to uid 1000, would let it plant what root runs next.
    message = refusal({"storage": "node", "storageNode": "cp", "storagePath": path, "sshPrivateKey": "k", "nodes": NODE_LIST})
    assert f"registry:storagePath {path!r} is inside /var/lib/" in message and "uid 1000" in message, message


@pytest.mark.parametrize("path", ["/var/lib/registry-data", "/srv/registry", "/data/registry", "/mnt/disk1/registry",
                                  "/var/lib/kubelet-registry"])
def test_storage_path_below_a_data_prefix_is_accepted(path):
    settings = settings_from({"storage": "node", "storageNode": "cp", "storagePath": path, "sshPrivateKey": "k", "nodes": NODE_LIST})
    assert settings.storage_path == path


@pytest.mark.parametrize("image", ["registry:2.8.3", "registry:2", "mirror.internal:5000/library/registry:v2.7.1"])
def test_collection_with_a_distribution_2_image_is_refused_with_the_reason(image):
    with pytest.raises(SettingsError) as error:
        settings_from({"image": image})
    message = str(error.value)
    assert f"registry:image {image} is distribution 2" in message and "distribution#3178" in message
    assert 'registry:gcSchedule ""' in message


@pytest.mark.parametrize("image", ["registry:2.8.3", "registry@sha256:" + "0" * 64, "registry:latest", "registry:3.1.1"])
def test_an_image_without_collection_or_of_distribution_3_is_accepted(image):
    gc = "" if image.endswith("2.8.3") else "0 3 * * 0"
    assert settings_from({"image": image, "gcSchedule": gc}).image == image


# Every key whose text the program uses as given, with a value it accepts: a
# trailing newline on it (a YAML block scalar, `pulumi config set --raw` from a
# file) is refused, by name, before anything is created.
TEXT_KEYS = {
    "hostname": {"hostname": "image-registry"},
    "namespace": {"namespace": "registry"},
    "serviceCidr": {"serviceCidr": "10.96.0.0/12"},
    "clusterIp": {"clusterIp": "10.96.0.50"},
    "image": {"image": "registry:3.1.1"},
    "nodeTrustImage": {"nodeTrust": "cluster", "nodeTrustImage": "curlimages/curl:8.12.1"},
    "storageSize": {"storageSize": "10Gi"},
    "storageClass": {"storageClass": "fast"},
    "sshUser": {"sshUser": "root"},
    "nodeTrust": {"nodeTrust": "cluster"},
    "storage": {"storage": "pvc"},
    "storageNode": {"nodeTrust": "cluster", "storage": "node", "storageNode": "worker-1"},
    "storagePath": {"storage": "node", "storageNode": "cp", "nodes": NODE_LIST, "storagePath": "/srv/registry"},
    "tlsSecret": {"tlsSecret": "cert-manager/registry-tls"},
    "pullSecretNamespaces[0]": {"pullSecretNamespaces": ["apps"]},
    "users[0]": {"users": ["ci"]},
    "nodes[0].name": {"nodes": [{"name": "cp", "host": "192.168.56.10"}]},
    "nodes[0].host": {"nodes": [{"name": "cp", "host": "node-1.example"}]},
    "s3.endpoint": {"storage": "s3", "s3": {"bucket": "images", "endpoint": "https://minio:9000"}},
    "s3.rootDirectory": {"storage": "s3", "s3": {"bucket": "images", "rootDirectory": "/registry"}},
    "sshBastion.host": {"nodes": NODE_LIST, "sshBastion": {"host": "jump.example.com"}},
}


def with_newline(values: dict, key: str) -> dict:
    """`values` with a newline after the value that `key` (a key, `object.field`, `list[0]`
    or `list[0].field`) names."""
    values = json.loads(json.dumps(values))
    name, _, rest = key.partition("[")
    if not rest and "." in name:
        name, field = name.split(".")
        values[name][field] += "\n"
    elif not rest:
        values[name] += "\n"
    elif "." in rest:
        values[name][0][rest.split(".", 1)[1]] += "\n"
    else:
        values[name][0] += "\n"
    return values


@pytest.mark.parametrize("key", TEXT_KEYS)
def test_a_value_with_a_trailing_newline_is_refused_by_name(key):
    values = TEXT_KEYS[key]
    settings_from(values)  # the value alone is accepted
    message = refusal(with_newline(values, key))
    assert f"registry:{key} " in message, message


@pytest.mark.parametrize("name", ["#admin", "ad\x07min", "ad\x7fmin", "admin\u200b", "\u00a0admin"])
def test_a_user_name_htpasswd_would_not_read_as_a_user_is_refused(name):
    # htpasswd skips a line that starts with '#': the pull secret's user would get 401.
    message = refusal({"users": ["admin", name]})
    assert "registry:users[1] " in message and "'#'" in message, message


@pytest.mark.parametrize("image", ["curlimages/curl:8.12.1", "mirror.internal:5000/tools/curl:8@sha256:" + "a" * 64,
                                   "localhost:5000/curl", "curlimages/curl@sha256:" + "0" * 64])
def test_an_image_reference_with_or_without_a_digest_is_accepted(image):
    s = settings_from({"nodeTrust": "cluster", "nodeTrustImage": image, "image": image.replace("curl", "registry")}, key=None)
    assert (s.node_trust_image, s.image) == (image, image.replace("curl", "registry"))


@pytest.mark.parametrize("image", ["curlimages/curl@sha256:abc", "curlimages/curl:8.12.1@sha256:" + "A" * 64,
                                   "curlimages/Curl:8", "curl:8 ", "curl:-8", "curl@md5:" + "0" * 32])
def test_an_image_reference_that_no_runtime_would_pull_is_refused(image):
    message = refusal({"nodeTrust": "cluster", "nodeTrustImage": image}, key=None)
    assert f"registry:nodeTrustImage {image!r} must be an image reference" in message, message
    assert "@sha256:" in message


def test_the_node_trust_image_runs_as_root_on_every_node_so_it_is_pinned_by_digest_or_warned_of():
    from registry.config.model import DEFAULT_NODE_TRUST_IMAGE
    from registry.config.rules import warnings

    assert re.fullmatch(r"curlimages/curl:8\.12\.1@sha256:[0-9a-f]{64}", DEFAULT_NODE_TRUST_IMAGE)
    assert warnings(settings_from({"nodeTrust": "cluster"}, key=None)) == []
    (warning,) = warnings(settings_from({"nodeTrust": "cluster", "nodeTrustImage": "curlimages/curl:8.12.1"}, key=None))
    assert warning.startswith("registry:nodeTrustImage curlimages/curl:8.12.1 is a tag, not a digest") and "@sha256:" in warning


def test_ssh_with_no_node_to_trust_the_registry_is_warned_of_at_every_run():
    from registry.config.rules import warnings

    (warning,) = warnings(settings_from({}, key=None))
    assert warning.startswith("registry:nodeTrust is ssh and registry:nodes lists no node") and "nodeTrust cluster" in warning
    assert warnings(settings_from({"nodes": NODE_LIST})) == []
    assert warnings(settings_from({"nodeTrust": "cluster"}, key=None)) == []
