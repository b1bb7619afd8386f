"""A TCP forwarder on loopback: connections to one address reach another, bytes as they are.

It lets pods be told an IPv6 address for the API server ([::1]) while the API
server listens on 127.0.0.1: TLS passes through untouched, so what the pod's
curl checks is the API server's own certificate (which names ::1 as well).
With `listen_netns`, it listens in another network namespace (a real node's,
tests/support/real_node.py) and connects in this one: the node reaches the API
server on this machine's loopback with no link between the two namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Callable

CLONE_NEWNET = 0x40000000


def in_netns(path: str, make: Callable[[], socket.socket]) -> socket.socket:
    """make() with this thread in the network namespace at `path`, then back: the socket
    it makes stays in that namespace, whichever thread uses it later."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
        try:
            return make()
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


class Forwarder:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int], listen_netns: str | None = None):
        def server() -> socket.socket:
            family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(listen)
            sock.listen(64)
            return sock

        self.server = in_netns(listen_netns, server) if listen_netns else server()
        self.port = self.server.getsockname()[1]
        self.target = target
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="forwarder", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stop(self) -> None:
        self.stopping.set()
        self.server.close()
        self.thread.join(5)
