"""Safe garbage collection: a CronJob that collects while the registry is read-only.

`registry garbage-collect` run against a registry that accepts pushes can
delete the layers of an upload in flight (the distribution docs warn of it).
So the collection runs only while no process can write, and pulls go on:

- The registry container runs `registry_serve.sh`, which serves read-write,
  or read-only while a flag on the data volume is up. Its readiness follows
  a mode file on that volume, not the HTTP port, so that the pod leaves the
  Service before it switches and comes back only once it serves again.
- The CronJob's pod runs on the same node (the volume is ReadWriteOnce) with
  the same image, env, mounts and config, the same proxy in front
  (registry/proxy.py: pullers still cannot write), and the Service's labels. It serves
  read-only itself (pulls go on there), raises the flag, waits until the
  registry reports read-only, collects, drops the flag, and stops serving
  only once the registry is read-write again (`registry_gc.sh`).

No API access, no Role: the volume is the only channel, which is also why it
needs `storage: pvc` (replicas on a bucket share no volume).
"""

from __future__ import annotations

from pathlib import Path

from .proxy import PROXY_PORT

HERE = Path(__file__).resolve().parent
COMMON = (HERE / "maintenance_common.sh").read_text()
SERVE_SCRIPT = COMMON + (HERE / "registry_serve.sh").read_text()
GC_SCRIPT = COMMON + (HERE / "registry_gc.sh").read_text()
# The registry image's own config file, which REGISTRY_* env overrides: the
# registry:3 image's (its Dockerfile's CMD); maintenance_common.sh falls back
# to the registry:2 image's /etc/docker/registry/config.yml.
IMAGE_CONFIG = "/etc/distribution/config.yml"
# How long a switch waits for readiness probes and the Service's endpoints to
# follow: a probe every 2 s, then kube-proxy; 10 s leaves room for both.
GRACE_SECONDS = "10"
# Pods serving the registry: the Deployment's, and a collection's for its duration.
ROLE_LABEL = "registry.pulumi.com/role"
GC_ROLE = "garbage-collection"


def serve_command() -> list[str]:
    return ["/bin/sh", "-c", SERVE_SCRIPT, "registry-serve", IMAGE_CONFIG]


def gc_command() -> list[str]:
    return ["/bin/sh", "-c", GC_SCRIPT, "registry-gc", IMAGE_CONFIG]


def readiness_command(data_dir: str, port: int) -> str:
    """Ready while the registry serves read-write: the mode file says so
    (registry_serve.sh writes it; a pod that starts writes "starting" first),
    and the server itself listens on its port, as the kernel's socket table
    tells (/proc/net/tcp, tcp6: local port in hex, state 0A = LISTEN), which
    needs no tool the image may lack."""
    return (
        f'read -r mode _ <{data_dir}/.maintenance/mode && [ "$mode" = rw ] && '
        f"grep -qsE ':{port:04X} [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6"
    )


def mode_readiness_probe(data_dir: str, port: int) -> dict:
    return {
        "exec": {"command": ["/bin/sh", "-c", readiness_command(data_dir, port)]},
        "periodSeconds": 2,
        "failureThreshold": 1,
    }


def grace_env() -> dict:
    return {"name": "REGISTRY_GC_GRACE_SECONDS", "value": GRACE_SECONDS}


def drain_env() -> dict:
    # A switch stops the server: requests in flight finish first. Under the
    # pod's 30 s termination grace period, so that a pod being deleted drains too.
    return {"name": "REGISTRY_HTTP_DRAINTIMEOUT", "value": "25s"}


def cron_job_spec(schedule: str | None, pod: dict, app_labels: dict[str, str]) -> dict:
    """The CronJob's spec: `pod` is the registry's pod spec, whose container it reuses."""
    (registry,) = pod["containers"]
    container = {
        **registry,
        "name": "garbage-collect",
        "command": gc_command(),
        # Ready once it serves: through its own pod's proxy, as the registry is probed.
        "readinessProbe": {"httpGet": {"path": "/", "port": PROXY_PORT, "scheme": "HTTPS"}, "periodSeconds": 2},
    }
    container.pop("livenessProbe", None)
    return {
        "schedule": schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": 3 * 3600,
                "template": {
                    "metadata": {"labels": {**app_labels, ROLE_LABEL: GC_ROLE}},
                    "spec": {
                        **{k: v for k, v in pod.items() if k != "containers"},
                        "containers": [container],
                        "restartPolicy": "Never",
                        # Room for it to hand back to the registry's pod (registry_gc.sh's finish).
                        "terminationGracePeriodSeconds": 180,
                        "automountServiceAccountToken": False,
                        "affinity": {
                            "podAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": [
                                    {
                                        # The node that holds the ReadWriteOnce volume: the registry pod's.
                                        "labelSelector": {
                                            "matchLabels": app_labels,
                                            "matchExpressions": [{"key": ROLE_LABEL, "operator": "DoesNotExist"}],
                                        },
                                        "topologyKey": "kubernetes.io/hostname",
                                    }
                                ]
                            }
                        },
                    },
                },
            },
        },
    }
