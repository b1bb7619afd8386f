"""registry/node/pod.sh, the DaemonSets' side, in dash and busybox ash, with chroot and curl stubbed.

What it decides: `run` runs the node program's create until it succeeds, then
the pod is ready; told to stop, it gives the node back only when its
DaemonSet (or, for node trust, its namespace) is being deleted or gone, asks
again when it cannot tell, and retries a failed undo; a stop while create
still fails gives back what create did. The token never goes on a command
line. The real thing, chroot into a node's root and curl to the API server,
runs in tests/engine/test_cluster_trust.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from registry.node_script import POD_SCRIPT
from tests.support.polling import eventually

TOKEN = "token-that-must-stay-off-every-command-line"
SHELLS = [pytest.param(["dash"], id="dash"), pytest.param(["busybox", "sh"], id="busybox")]

CHROOT = """#!/bin/sh
# stub: records what would run in the host's root
printf '%s|%s\\n' "$1" "$(printf '%s' "$4" | grep -o '[A-Z]*_ACTION=[a-z]*' | head -1)" >> "$LOG/chroot"
case $4 in *ACTION=create*) if [ -f "$LOG/fail-always" ]; then echo "error: cannot write /etc/hosts (read-only?)" >&2; exit 1; fi ;; esac
if [ -f "$LOG/fail-once" ]; then rm "$LOG/fail-once"; echo "error: injected" >&2; exit 1; fi
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
SLEEP = """#!/bin/sh
# stub: records each pause; the idle wait (an hour) is real, a back-off or a retry pause lasts 20 ms
printf '%s\\n' "$1" >> "$LOG/sleeps"
if [ "$1" = 3600 ]; then exec /bin/sleep 3600; fi
exec /bin/sleep 0.02
"""


@pytest.fixture
def pod(tmp_path):
    files, bin_dir, account, log = (tmp_path / d for d in ("files", "bin", "account", "log"))
    for folder in (files, bin_dir, account, log):
        folder.mkdir()
    for name in ("program", "create", "delete", "run"):
        (files / name).write_text(f"REG_ACTION={name}\n" if name in ("create", "delete") else "# run\n")
    (files / "pod.sh").write_text(POD_SCRIPT)
    (account / "token").write_text(TOKEN)
    (account / "ca.crt").write_text("ca")
    for name, text in (("chroot", CHROOT), ("curl", CURL), ("sleep", SLEEP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "FILES": str(files), "HOST_ROOT": "/host-root", "ACCOUNT": str(account),
        "LOG": str(log), "NODE_NAME": "node-1", "POD_NAMESPACE": "registry-node-trust", "DAEMONSET": "registry-node-trust",
        "GIVE_BACK": "torn-down", "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
        "TMPDIR": str(tmp_path), "POD_NAME": "registry-node-trust-x7k2p",
    }
    return files, log, env


def answers(log: Path, *lines: str) -> None:
    (log / "answers").write_text("".join(line + "\n" for line in lines))


def chroot_runs(log: Path) -> list[str]:
    path = log / "chroot"
    return path.read_text().splitlines() if path.exists() else []


def sleeps(log: Path) -> list[str]:
    """The pauses pod.sh took, in order ("3600" is the idle wait after create succeeded)."""
    path = log / "sleeps"
    return path.read_text().splitlines() if path.exists() else []


def curl_calls(log: Path) -> list[str]:
    path = log / "curl-argv"
    return path.read_text().splitlines() if path.exists() else []


def started(shell: list[str], files: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([*shell, str(files / "pod.sh"), "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def ready(shell: list[str], files: Path, env: dict) -> bool:
    """The readiness probe, as kubelet runs it in the container."""
    return subprocess.run([*shell, str(files / "pod.sh"), "ready"], env=env, timeout=10).returncode == 0


def stopped(shell: list[str], files: Path, env: dict, log: Path, runs: int = 1) -> subprocess.CompletedProcess:
    """Start `pod.sh run`, let its create run `runs` times, then send TERM, as kubelet does; returns how it ended.

    TERM goes once the script waits (idle after success, or in its back-off after a failure)."""
    process = started(shell, files, env)
    eventually(lambda: len(chroot_runs(log)) >= runs and len(sleeps(log)) >= runs, "create to run and the script to wait", 10, every=0.02)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(autouse=True)
def shells_present():
    if not shutil.which("busybox") or not shutil.which("dash"):
        pytest.fail("dash and busybox are needed; .ci/run installs them", pytrace=False)


NS_STAYS = '200 {"metadata":{"name":"registry-node-trust","uid":"ns-uid"}}'
NS_GOING = '200 {"metadata":{"name":"registry-node-trust","uid":"ns-uid","deletionTimestamp":"2026-12-02T10:00:00Z"}}'
DS_STAYS = '200 {"metadata":{"name":"registry-node-trust","uid":"ds-uid-1"}}'
DS_GOING = '200 {"metadata":{"name":"registry-node-trust","uid":"ds-uid-1","deletionTimestamp":"2026-12-02T10:00:00Z"}}'


@pytest.mark.parametrize("shell", SHELLS)
def test_the_pod_is_ready_once_create_has_succeeded_and_a_stop_while_the_daemon_set_stays_keeps_the_node(pod, shell):
    files, log, env = pod
    answers(log, NS_STAYS, DS_STAYS)
    process = started(shell, files, env)
    eventually(lambda: ready(shell, files, env), "the pod to be ready", 10, every=0.05)
    assert chroot_runs(log) == ["/host-root|REG_ACTION=create"]
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert chroot_runs(log) == ["/host-root|REG_ACTION=create"], "no delete"
    assert "the DaemonSet stays, so the node keeps what it was given" in err
    assert not ready(shell, files, env)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("state", [(NS_STAYS, DS_GOING), (NS_STAYS, "404 {}")], ids=["deleted", "gone"])
def test_a_pod_stopped_while_its_daemon_set_is_deleted_or_gone_gives_the_node_back(pod, shell, state):
    files, log, env = pod
    answers(log, *state)
    result = stopped(shell, files, env, log)
    assert result.returncode == 0, result.stderr
    assert chroot_runs(log) == ["/host-root|REG_ACTION=create", "/host-root|REG_ACTION=delete"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("state", [(NS_GOING, DS_STAYS), ("404 {}", DS_STAYS), ("401 {}", "401 {}"), (NS_STAYS, "403 {}")],
                         ids=["namespace-deleted", "namespace-gone", "token-revoked", "role-gone"])
def test_a_namespace_deleted_by_hand_gives_every_node_back_even_before_its_daemon_set_goes(pod, shell, state):
    # The namespace controller deletes pods, accounts and roles in no particular order.
    files, log, env = pod
    answers(log, *state)
    result = stopped(shell, files, env, log)
    assert result.returncode == 0, result.stderr
    assert chroot_runs(log)[-1] == "/host-root|REG_ACTION=delete"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("state, gives_back", [
    ((NS_STAYS, DS_GOING), True), ((NS_STAYS, "404 {}"), True), ((NS_STAYS, DS_STAYS), False),
    ((NS_GOING, DS_GOING), False), (("404 {}", "404 {}"), False), (("401 {}", "401 {}"), False), ((NS_STAYS, "403 {}"), False),
], ids=["deleted", "gone", "stays", "namespace-deleted", "namespace-gone", "token-revoked", "role-gone"])
def test_the_data_folder_is_given_back_only_when_its_own_daemon_set_is_deleted(pod, shell, state, gives_back):
    # Giving the folder back may remove the images (keepData false): only a destroy does.
    files, log, env = pod
    (files / "create").write_text("STORAGE_ACTION=create\n")
    (files / "delete").write_text("STORAGE_ACTION=delete\n")
    answers(log, *state)
    result = stopped(shell, files, {**env, "GIVE_BACK": "deleted", "DAEMONSET": "registry-storage"}, log)
    assert result.returncode == 0, result.stderr
    expected = ["/host-root|STORAGE_ACTION=create", *(["/host-root|STORAGE_ACTION=delete"] if gives_back else [])]
    assert chroot_runs(log) == expected


@pytest.mark.parametrize("shell", SHELLS)
def test_when_the_api_server_cannot_say_it_asks_again_and_a_failed_undo_is_retried(pod, shell):
    files, log, env = pod
    answers(log, NS_STAYS, "503 unavailable", NS_STAYS, DS_GOING, NS_STAYS, DS_GOING)
    process = started(shell, files, env)
    eventually(lambda: ready(shell, files, env), "the pod to be ready", 10, every=0.05)
    (log / "fail-once").write_text("")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert chroot_runs(log) == ["/host-root|REG_ACTION=create"] + ["/host-root|REG_ACTION=delete"] * 2
    reads = [line for line in curl_calls(log) if "/daemonsets/" in line]
    assert len(reads) == 3
    assert sleeps(log)[-2:] == ["1", "1"], "asked again, then the undo retried, a second apart"


@pytest.mark.parametrize("shell", SHELLS)
def test_a_create_that_fails_is_tried_again_and_named_in_one_event_on_the_daemon_set(pod, shell):
    files, log, env = pod
    (log / "fail-always").write_text("")
    answers(log, DS_STAYS, "201 {}", NS_STAYS, DS_STAYS)
    process = started(shell, files, env)
    eventually(lambda: len(chroot_runs(log)) >= 2, "create to be tried again", 15, every=0.05)
    assert not ready(shell, files, env)
    (log / "fail-always").unlink()
    eventually(lambda: ready(shell, files, env), "the pod to be ready", 15, every=0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    events = [c for c in curl_calls(log) if "-X POST" in c]
    assert len(events) == 1, "one event per distinct failure"
    backoff = sleeps(log)[:2]
    assert backoff == ["1", "2"], f"the pause doubles from one second: {backoff}"
    (event,) = events
    assert '"reason":"NodeNotTrusted"' in event and '"uid":"ds-uid-1"' in event and '"type":"Warning"' in event
    assert "node node-1: the node program failed (status 1): error: cannot write /etc/hosts (read-only?)" in event
    assert "kubectl -n registry-node-trust logs registry-node-trust-x7k2p" in event


@pytest.mark.parametrize("shell", SHELLS)
def test_a_node_whose_create_still_fails_is_given_back_what_create_did_when_the_daemon_set_goes(pod, shell):
    files, log, env = pod
    (log / "fail-always").write_text("")
    answers(log, DS_STAYS, "201 {}", NS_STAYS, DS_GOING)
    result = stopped(shell, files, env, log)
    assert result.returncode == 0, result.stderr
    runs = chroot_runs(log)
    assert runs[0] == "/host-root|REG_ACTION=create" and runs[-1] == "/host-root|REG_ACTION=delete", runs


@pytest.mark.parametrize("shell", SHELLS)
def test_the_token_goes_to_curl_on_stdin_and_never_on_its_command_line(pod, shell):
    files, log, env = pod
    answers(log, NS_STAYS, "404 {}")
    stopped(shell, files, env, log)
    argv = "\n".join(curl_calls(log))
    assert TOKEN not in argv
    assert f'header = "Authorization: Bearer {TOKEN}"' in (log / "curl-config").read_text()
    assert "--cacert" in argv
    # The API server indents JSON for curl's own user agent, which the parsing does not expect.
    assert "-A registry-node-trust" in argv
    assert "https://10.96.0.1:443/api/v1/namespaces/registry-node-trust" in argv


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("host", ["::1", "fd00:10:96::1"])
def test_an_ipv6_api_server_is_dialled_in_brackets_as_client_go_does(pod, shell, host):
    files, log, env = pod
    answers(log, NS_STAYS, "404 {}")
    result = stopped(shell, files, {**env, "KUBERNETES_SERVICE_HOST": host}, log)
    assert result.returncode == 0, result.stderr
    assert f"https://[{host}]:443/apis/apps/v1/namespaces/registry-node-trust/daemonsets/registry-node-trust" in (
        "\n".join(curl_calls(log)))
    assert chroot_runs(log)[-1] == "/host-root|REG_ACTION=delete"


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
    answers(log, NS_STAYS, DS_GOING, f"200 {PODS}", "201 {}")
    result = stopped(shell, files, env, log)
    assert result.returncode == 0, result.stderr
    calls = curl_calls(log)
    assert "labelSelector=app.kubernetes.io%2Fname%3Dregistry-node-trust" in calls[2]
    events = [c for c in calls if "-X POST" in c]
    assert len(events) == 2, calls
    for event, node in zip(events, ("node-3", "node-4"), strict=True):
        assert f'"name":"registry-node-trust.{node}"' in event and '"uid":"ds-uid-1"' in event
        assert '"type":"Warning"' in event and f"node {node} is not ready" in event
        assert f"node {node} is not ready" in result.stderr
