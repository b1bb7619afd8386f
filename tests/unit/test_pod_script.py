"""registry/node/pod.sh, the DaemonSet's side, in dash and busybox ash, with chroot and curl stubbed.

What it decides: create runs the node program (and, on the storage node only,
the folder's script); told to stop, it gives the node back only when its
DaemonSet is being deleted (or gone), asks again when it cannot tell, and
retries a failed undo; the token never goes on a command line. The real
thing, chroot into a node's root and curl to the API server, runs in
tests/engine/test_cluster_trust.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from registry.node_script import POD_SCRIPT

TOKEN = "token-that-must-stay-off-every-command-line"
SHELLS = [pytest.param(["dash"], id="dash"), pytest.param(["busybox", "sh"], id="busybox")]

CHROOT = """#!/bin/sh
# stub: records what would run in the host's root
printf '%s|%s\\n' "$1" "$(printf '%s' "$4" | grep -o 'REG_ACTION=[a-z]*\\|registry storage' | head -1)" >> "$LOG/chroot"
if [ -f "$LOG/fail-once" ]; then rm "$LOG/fail-once"; exit 1; fi
exit 0
"""
CURL = """#!/bin/sh
# stub: the API server's answers, one per call, from $LOG/answers (code, then the body's file)
printf '%s\\n' "$*" >> "$LOG/curl-argv"
cat >> "$LOG/curl-config"
out=""
while [ $# -gt 0 ]; do case $1 in -o) out=$2; shift ;; esac; shift; done
n=$(wc -l < "$LOG/curl-argv")
line=$(sed -n "${n}p" "$LOG/answers"); [ -n "$line" ] || line=$(tail -1 "$LOG/answers")
code=${line%% *}; body=${line#* }
printf '%s' "$body" > "$out"
printf '%s' "$code"
"""


@pytest.fixture
def pod(tmp_path):
    files, bin_dir, account, log = (tmp_path / d for d in ("files", "bin", "account", "log"))
    for folder in (files, bin_dir, account, log):
        folder.mkdir()
    for name in ("program", "create", "delete", "run", "storage-create", "storage-delete"):
        (files / name).write_text(f"REG_ACTION={name}\n" if name in ("create", "delete") else "registry storage\n")
    (files / "pod.sh").write_text(POD_SCRIPT)
    (account / "token").write_text(TOKEN)
    (account / "ca.crt").write_text("ca")
    for name, text in (("chroot", CHROOT), ("curl", CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "FILES": str(files), "HOST_ROOT": "/host-root", "ACCOUNT": str(account),
        "LOG": str(log), "NODE_NAME": "node-1", "POD_NAMESPACE": "registry-node-trust", "DAEMONSET": "registry-node-trust",
        "STORAGE_NODE": "", "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "TMPDIR": str(tmp_path),
    }
    return files, log, env


def answers(log: Path, *lines: str) -> None:
    (log / "answers").write_text("".join(line + "\n" for line in lines))


def chroot_runs(log: Path) -> list[str]:
    path = log / "chroot"
    return path.read_text().splitlines() if path.exists() else []


def stopped(shell: list[str], files: Path, env: dict) -> subprocess.CompletedProcess:
    """Start `pod.sh wait`, let it sleep, then send TERM, as kubelet does; returns how it ended."""
    process = subprocess.Popen([*shell, str(files / "pod.sh"), "wait"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(autouse=True)
def shells_present():
    if not shutil.which("busybox") or not shutil.which("dash"):
        pytest.fail("dash and busybox are needed; .ci/run installs them", pytrace=False)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_pod_stopped_while_its_daemon_set_stays_leaves_the_node_as_it_is(pod, shell):
    files, log, env = pod
    answers(log, '200 {"metadata":{"name":"registry-node-trust","uid":"u"}}')
    result = stopped(shell, files, env)
    assert result.returncode == 0, result.stderr
    assert chroot_runs(log) == []
    assert "keeps the registry's trust" in result.stderr


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("answer", ['200 {"metadata":{"deletionTimestamp":"2026-12-02T10:00:00Z"}}', "404 {}"])
def test_a_pod_stopped_while_its_daemon_set_is_deleted_or_gone_gives_the_node_back(pod, shell, answer):
    files, log, env = pod
    answers(log, answer)
    result = stopped(shell, files, env)
    assert result.returncode == 0, result.stderr
    assert chroot_runs(log) == ["/host-root|REG_ACTION=delete"]


@pytest.mark.parametrize("shell", SHELLS)
def test_when_the_api_server_cannot_say_it_asks_again_and_a_failed_undo_is_retried(pod, shell):
    files, log, env = pod
    answers(log, "503 unavailable", '200 {"metadata":{"deletionTimestamp":"x"}}')
    (log / "fail-once").write_text("")
    result = stopped(shell, files, env)
    assert result.returncode == 0, result.stderr
    assert chroot_runs(log) == ["/host-root|REG_ACTION=delete"] * 2
    reads = [line for line in (log / "curl-argv").read_text().splitlines() if "/daemonsets/" in line]
    assert len(reads) == 3


@pytest.mark.parametrize("shell", SHELLS)
def test_the_token_goes_to_curl_on_stdin_and_never_on_its_command_line(pod, shell):
    files, log, env = pod
    answers(log, "404 {}")
    stopped(shell, files, env)
    assert TOKEN not in (log / "curl-argv").read_text()
    assert f'header = "Authorization: Bearer {TOKEN}"' in (log / "curl-config").read_text()
    assert "--cacert" in (log / "curl-argv").read_text()
    # The API server indents JSON for curl's own user agent, which the parsing does not expect.
    assert "-A registry-node-trust" in (log / "curl-argv").read_text()


def pod_item(name: str, node: str, ready: str, generation: bool = False) -> str:
    """A pod as the API server lists it (compact JSON, its fields in the API's order)."""
    observed = '"observedGeneration":1,' if generation else ""
    return (
        f'{{"metadata":{{"name":"{name}","namespace":"registry-node-trust","ownerReferences":[{{"apiVersion":"apps/v1",'
        f'"kind":"DaemonSet","name":"registry-node-trust"}}]}},"spec":{{"nodeName":"{node}","containers":[{{"name":"c"}}]}},'
        f'"status":{{"phase":"Running","conditions":[{{"type":"Initialized","status":"True"}},'
        f'{{"type":"Ready",{observed}"status":"{ready}"}}]}}}}'
    )


PODS = (
    '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":['
    + ",".join((
        pod_item("registry-node-trust-a", "node-1", "True"),
        pod_item("registry-node-trust-b", "node-2", "True", generation=True),
        pod_item("registry-node-trust-c", "node-3", "False", generation=True),
        pod_item("registry-node-trust-d", "node-4", "Unknown"),
    ))
    + "]}"
)


@pytest.mark.parametrize("shell", SHELLS)
def test_after_giving_its_node_back_a_pod_names_the_nodes_not_ready_in_an_event_on_the_daemon_set(pod, shell):
    files, log, env = pod
    answers(log, '200 {"metadata":{"name":"registry-node-trust","uid":"ds-uid-1","deletionTimestamp":"x"}}',
            f"200 {PODS}", "201 {}")
    result = stopped(shell, files, env)
    assert result.returncode == 0, result.stderr
    calls = (log / "curl-argv").read_text().splitlines()
    assert "labelSelector=app.kubernetes.io%2Fname%3Dregistry-node-trust" in calls[1]
    events = [c for c in calls if "-X POST" in c]
    assert len(events) == 2, calls
    for event, node in zip(events, ("node-3", "node-4"), strict=True):
        assert f'"name":"registry-node-trust.{node}"' in event and '"uid":"ds-uid-1"' in event
        assert '"type":"Warning"' in event and f"node {node} is not ready" in event
        assert f"node {node} is not ready" in result.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_with_storage_node_the_data_folder_is_made_and_removed_on_that_node_only(pod, shell):
    files, log, env = pod
    for node, expected in (("node-1", ["/host-root|REG_ACTION=create", "/host-root|registry storage"]),
                           ("node-2", ["/host-root|REG_ACTION=create"])):
        (log / "chroot").unlink(missing_ok=True)
        run = subprocess.run([*shell, str(files / "pod.sh"), "create"], env={**env, "STORAGE_NODE": "node-1",
                             "NODE_NAME": node}, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        assert chroot_runs(log) == expected


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failed_create_fails_the_init_container_so_kubelet_runs_it_again(pod, shell):
    files, log, env = pod
    (log / "fail-once").write_text("")
    run = subprocess.run([*shell, str(files / "pod.sh"), "create"], env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
