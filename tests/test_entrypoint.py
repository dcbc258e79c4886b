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
