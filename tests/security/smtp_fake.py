"""A plain SMTP relay on localhost that offers no STARTTLS and records what it is told."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def plain_relay() -> Iterator[tuple[int, list[str]]]:
    lines: list[str] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 fake relay\r\n")
            in_data = False
            for raw in self.rfile:
                line = raw.decode(errors="replace").rstrip("\r\n")
                lines.append(line)
                if in_data:
                    if line == ".":
                        in_data = False
                        self.wfile.write(b"250 queued\r\n")
                    continue
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.wfile.write(b"250-fake\r\n250 AUTH PLAIN LOGIN\r\n")
                elif verb == "DATA":
                    in_data = True
                    self.wfile.write(b"354 go on\r\n")
                elif verb == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                elif verb == "AUTH":
                    self.wfile.write(b"235 ok\r\n")
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], lines
    finally:
        server.shutdown()
        server.server_close()
