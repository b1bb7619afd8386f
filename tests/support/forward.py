"""A TCP forwarder on loopback: connections to one address reach another, bytes as they are.

It lets pods be told an IPv6 address for the API server ([::1]) while the API
server listens on 127.0.0.1: TLS passes through untouched, so what the pod's
curl checks is the API server's own certificate (which names ::1 as well).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Forwarder:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]):
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.server = socket.socket(family, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(listen)
        self.server.listen(64)
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
