"""The `rewards` command line, run as a newcomer would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from flask import Flask

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def rewards(*args: str, db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=db_url, LOG_LEVEL="WARNING",
               SECRET_KEY="cli-test-secret-key-that-is-32-bytes-or-more",
               IDENTIFIER_KEY="cli-test-identifier-key")
    return subprocess.run([str(BIN / "rewards"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_upgrade_create_staff_login_and_verify_on_a_fresh_database(
    tmp_path: Path, client, app: Flask
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgraded = rewards("db", "upgrade", db_url=url, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    made = rewards("create-staff", "--email", "Ops@Leeds.example", "--role", "admin",
                   "--password", "long enough please", db_url=url, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "admin ops@leeds.example" in made.stdout
    short = rewards("create-staff", "--email", "x@leeds.example", "--role", "admin",
                    "--password", "short", db_url=url, cwd=tmp_path)
    assert short.returncode != 0
    verified = rewards("ledger", "verify", db_url=url, cwd=tmp_path)
    assert verified.returncode == 0 and "ledger ok" in verified.stdout


def test_openapi_command_writes_the_served_spec(tmp_path: Path, client) -> None:
    url = f"sqlite:///{tmp_path / 'spec.db'}"
    written = rewards("openapi", "--output", str(tmp_path / "spec.yaml"), db_url=url,
                      cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert yaml.safe_load((tmp_path / "spec.yaml").read_text()) == client.get(
        "/openapi.json").json


def test_worker_without_redis_says_why(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    result = rewards("worker", "--burst", db_url=url, cwd=tmp_path)
    assert result.returncode != 0
    assert "REDIS_URL is not set" in result.stderr


def test_migrations_go_down_and_up_again_with_data_in_place(tmp_path: Path) -> None:
    """A council's database is never empty: every migration must run over real rows."""
    url = f"sqlite:///{tmp_path / 'full.db'}"
    assert rewards("db", "upgrade", db_url=url, cwd=tmp_path).returncode == 0
    loaded = rewards("demo", "--members", "12", "--weeks", "1", db_url=url, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    down = rewards("db", "downgrade", "0001", db_url=url, cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    up = rewards("db", "upgrade", db_url=url, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    verified = rewards("ledger", "verify", db_url=url, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
