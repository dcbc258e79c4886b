"""A TCP server on 127.0.0.1 that answers every connection with `respond(socket)`."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def raw_server(respond: Callable[[socket.socket, bytes], None]
               ) -> Iterator[tuple[str, list[bytes], threading.Event]]:
    """Yields (base URL, requests received, stop event); `respond` gets the socket and the
    request's first bytes, and should stop early once the stop event is set."""
    seen: list[bytes] = []
    stop = threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(5)
            try:
                first = self.request.recv(65536)
                seen.append(first)
                respond(self.request, first)
            except OSError:
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen, stop
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
