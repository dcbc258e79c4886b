"""The image's `api` role as docker-entrypoint.sh starts it: gunicorn with the project's
settings serving the app (no Docker engine needed to run the same command)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from .test_cli import BIN, ROOT, rewards


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_api_role_serves_with_start_up_objects_frozen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    assert rewards("db", "upgrade", db_url=url, cwd=tmp_path).returncode == 0
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=url, PORT=str(port), WEB_CONCURRENCY="1", LOG_LEVEL="WARNING",
               SECRET_KEY="entrypoint-test-secret-key-32-bytes-or-more",
               IDENTIFIER_KEY="entrypoint-test-identifier-key",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    server = subprocess.Popen(["sh", str(ROOT / "docker-entrypoint.sh"), "api",
                               "--log-level", "info"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        status, body = None, ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    status, body = r.status, r.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert status == 200 and json.loads(body) == {"status": "ok"}, (status, body)
        # Ready: the app reaches the database it was given.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as ready:
            assert ready.status == 200, ready.read()
    finally:
        server.terminate()
        _, errors = server.communicate(timeout=30)
    assert "start-up objects frozen out of garbage collection" in errors, errors[-2000:]


def _raw(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], {k.lower(): v for k, v in headers.items()}, body


def test_requests_gunicorn_refuses_get_the_json_error_shape(tmp_path: Path) -> None:
    """Past gunicorn's own limits the app never sees the request: gunicorn answers, and
    what it answers is the API's JSON error, not an HTML page quoting the request."""
    from rewards import gunicorn_conf

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}", LOG_LEVEL="WARNING",
               SECRET_KEY="entrypoint-test-secret-key-32-bytes-or-more",
               IDENTIFIER_KEY="entrypoint-test-identifier-key")
    server = subprocess.Popen([str(BIN / "gunicorn"), "--config", "python:rewards.gunicorn_conf",
                               "--bind", f"127.0.0.1:{port}", "--workers", "1",
                               "rewards:create_app()"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        long_line = b"GET /v1/offers?q=" + b"<script>" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        long_header = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
                       + b"a" * (gunicorn_conf.limit_request_line + 10) + b"\r\n\r\n")
        bad_line = b"NOT A REQUEST\r\n\r\n"
        for request, code, reason in ((long_line, 414, "uri_too_long"),
                                      (long_header, 431, "headers_too_large"),
                                      (bad_line, 400, "bad_request")):
            status, headers, body = _raw(port, request)
            assert status.startswith(f"HTTP/1.1 {code} "), status
            assert headers["content-type"] == "application/json"
            assert headers["cache-control"] == "no-store"
            error = json.loads(body)
            assert error["code"] == code and error["reason"] == reason, error
            assert set(error) == {"code", "status", "reason", "message"}
            assert b"<" not in body  # neither an HTML page nor the request quoted back
    finally:
        server.terminate()
        server.communicate(timeout=30)
