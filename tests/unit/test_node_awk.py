"""The node script's two awk programs, golden cases: file bytes in, expected bytes out.

No root and no node: awk is run exactly as the node program runs it (same
variables, the same way of telling CRLF and a missing final newline).
Create then delete must give back the input byte for byte.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOSTS_AWK = ROOT / "registry" / "node" / "hosts.awk"
BLOCK_AWK = ROOT / "registry" / "node" / "block.awk"
TAG = "registry-node-trust image-registry:5000"
BEGIN, END = f"# BEGIN {TAG}", f"# END {TAG}"
DISABLED = f"# disabled by {TAG}: "
KEPT = f" # kept by {TAG}"
IP = "10.96.0.50"


def awk(program: Path, data: bytes, tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    if not shutil.which("awk"):
        pytest.fail("awk is needed", pytrace=False)
    source = tmp_path / "input"
    source.write_bytes(data)
    args = ["awk"]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    return subprocess.run([*args, "-f", str(program), str(source)], capture_output=True)


def hosts(mode: str, data: bytes, tmp_path: Path, ip: str = IP) -> bytes:
    first = data.split(b"\n", 1)[0]
    result = awk(
        HOSTS_AWK, data, tmp_path, mode=mode, name="image-registry", ip=ip if mode == "create" else "",
        eol="\r" if first.endswith(b"\r") else "", file_noeol="1" if data and not data.endswith(b"\n") else "0",
        begin_mark=BEGIN, end_mark=END, disabled_prefix=DISABLED, kept_suffix=KEPT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def block(mode: str, data: bytes, tmp_path: Path, inner: str = 'configs:\n  "image-registry:5000": {}\n') -> bytes:
    entry = tmp_path / "entry"
    entry.write_text(inner)
    result = awk(
        BLOCK_AWK, data, tmp_path, mode=mode, begin_mark=BEGIN, end_mark=END, entry=str(entry),
        file_noeol="1" if data and not data.endswith(b"\n") else "0",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


OURS = f"{BEGIN}\n{IP} image-registry\n{END}\n".encode()

HOSTS_GOLDEN = {
    "plain": (b"127.0.0.1 localhost\n", b"127.0.0.1 localhost\n" + OURS),
    "empty": (b"", OURS),
    "no final newline": (b"127.0.0.1 localhost", f"127.0.0.1 localhost\n{BEGIN} noeol\n{IP} image-registry\n{END}\n".encode()),
    "crlf": (b"127.0.0.1 localhost\r\n", f"127.0.0.1 localhost\r\n{BEGIN}\r\n{IP} image-registry\r\n{END}\r\n".encode()),
    "crlf without final newline": (
        b"127.0.0.1 localhost\r\n10.0.0.9 db",
        f"127.0.0.1 localhost\r\n10.0.0.9 db\r\n{BEGIN} noeol-crlf\r\n{IP} image-registry\r\n{END}\r\n".encode(),
    ),
    "another address for the name": (
        b"10.96.0.99 image-registry\n", f"{DISABLED}10.96.0.99 image-registry\n".encode() + OURS,
    ),
    "the name among others": (
        b"10.96.0.99\talias image-registry other # by hand\n",
        f"{DISABLED}10.96.0.99\talias image-registry other # by hand\n10.96.0.99 alias other{KEPT}\n".encode() + OURS,
    ),
    "names that contain the name": (
        b"10.1.1.1 my-image-registry image-registry-old\n", b"10.1.1.1 my-image-registry image-registry-old\n" + OURS,
    ),
    "a comment that mentions the name": (b"# image-registry is ours\n", b"# image-registry is ours\n" + OURS),
}


@pytest.mark.parametrize("case", list(HOSTS_GOLDEN))
def test_hosts_golden_create_then_delete_gives_the_input_back(case, tmp_path):
    original, expected = HOSTS_GOLDEN[case]
    created = hosts("create", original, tmp_path)
    assert created == expected
    assert hosts("create", created, tmp_path) == created, "a second create changes nothing"
    assert hosts("delete", created, tmp_path) == original


def test_hosts_an_old_block_is_updated_where_it_is(tmp_path):
    before = f"127.0.0.1 localhost\n{BEGIN}\n10.0.0.1 image-registry\n{END}\n10.0.0.9 db\n".encode()
    after = f"127.0.0.1 localhost\n{BEGIN}\n{IP} image-registry\n{END}\n10.0.0.9 db\n".encode()
    assert hosts("create", before, tmp_path) == after


def test_hosts_two_blocks_become_one(tmp_path):
    old = f"{BEGIN}\n10.0.0.1 image-registry\n{END}\n"
    data = f"127.0.0.1 localhost\n{old}10.0.0.9 db\n{old}".encode()
    assert hosts("create", data, tmp_path) == f"127.0.0.1 localhost\n{BEGIN}\n{IP} image-registry\n{END}\n10.0.0.9 db\n".encode()
    assert hosts("delete", data, tmp_path) == b"127.0.0.1 localhost\n10.0.0.9 db\n"


def test_hosts_a_begin_without_end_is_exit_3(tmp_path):
    data = f"127.0.0.1 localhost\n{BEGIN}\n10.0.0.1 image-registry\n".encode()
    for mode in ("create", "delete"):
        result = awk(HOSTS_AWK, data, tmp_path, mode=mode, name="image-registry", ip=IP, eol="", file_noeol="0",
                     begin_mark=BEGIN, end_mark=END, disabled_prefix=DISABLED, kept_suffix=KEPT)
        assert result.returncode == 3


MIRRORS = b'mirrors:\n  docker.io:\n    endpoint: ["https://m"]\n'
BLOCK = f'{BEGIN}\nconfigs:\n  "image-registry:5000": {{}}\n{END}\n'.encode()

BLOCK_GOLDEN = {
    "no file yet": (b"", BLOCK),
    "the user's file": (MIRRORS, MIRRORS + BLOCK),
    "the user's file without final newline": (
        MIRRORS.rstrip(b"\n"), MIRRORS + BLOCK.replace(BEGIN.encode(), BEGIN.encode() + b" noeol", 1),
    ),
}


@pytest.mark.parametrize("case", list(BLOCK_GOLDEN))
def test_block_golden_create_then_delete_gives_the_input_back(case, tmp_path):
    original, expected = BLOCK_GOLDEN[case]
    created = block("create", original, tmp_path)
    assert created == expected
    assert block("create", created, tmp_path) == created, "a second create changes nothing"
    assert block("delete", created, tmp_path) == original


def test_block_is_updated_where_it_is_and_what_follows_it_is_kept(tmp_path):
    after_block = b"# added later by hand\nother: 1"
    data = MIRRORS + BLOCK + after_block
    updated = block("create", data, tmp_path, inner="configs: {}\n")
    assert updated == MIRRORS + f"{BEGIN}\nconfigs: {{}}\n{END}\n".encode() + after_block
    assert block("delete", updated, tmp_path) == MIRRORS + after_block


def test_block_two_begins_are_exit_3(tmp_path):
    entry = tmp_path / "entry"
    entry.write_text("x: 1\n")
    result = awk(BLOCK_AWK, BLOCK + BLOCK, tmp_path, mode="create", begin_mark=BEGIN, end_mark=END,
                 entry=str(entry), file_noeol="0")
    assert result.returncode == 3
