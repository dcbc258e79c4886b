"""Backups with their keys: made, restored into a fresh PostgreSQL database and verified
by scripts/backup-restore-check, as docs/operations.md tells operators to do."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rewards import backup as backups

from .helpers import bearer, build_scheme, link, member_token, postgres_only, signed_post, tap
from .test_cli import BIN, ROOT
from .test_flow import _daytime


def _env(app: Flask, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
               SECRET_KEY=app.config["SECRET_KEY"], IDENTIFIER_KEY=app.config["IDENTIFIER_KEY"],
               LOG_LEVEL="WARNING", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               REWARDS=str(BIN / "rewards"), **extra)
    return env


def _scheme_with_points(client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app, cost_points=10)
    me = bearer(member_token(client, app, "ada@example.org"))
    assert link(client, app, me, "4444333322221111").status_code == 201
    sent = signed_post(client, scheme.source, {"items": [
        tap(f"b{i}", "4444333322221111", _daytime(i)) for i in range(1, 4)]})
    assert [r["status"] for r in sent.json["results"]] == ["accepted"] * 3
    claim = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]}, headers=me)
    assert claim.status_code == 202


def _databases(app: Flask) -> set[str]:
    engine = create_engine(make_url(app.config["SQLALCHEMY_DATABASE_URI"]))
    try:
        with engine.connect() as connection:
            return set(connection.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_the_backup_restore_check_restores_into_a_fresh_database_and_verifies(
    client: FlaskClient, app: Flask
) -> None:
    postgres_only(app, "backups are of PostgreSQL databases")
    _scheme_with_points(client, app)
    done = subprocess.run([str(ROOT / "scripts" / "backup-restore-check")], env=_env(app),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restored into rewards_restore_check_" in done.stdout
    assert "members 1" in done.stdout and "rewards 1" in done.stdout
    assert "ledger ok" in done.stdout and "backup check ok" in done.stdout
    scratch = re.search(r"restored into (rewards_restore_check_[0-9a-f]+)", done.stdout)
    assert scratch is not None
    assert scratch.group(1) not in _databases(app)  # the scratch database is gone


def test_a_backup_restores_with_its_keys_and_refuses_tampering(
    client: FlaskClient, app: Flask, tmp_path: Path
) -> None:
    postgres_only(app, "backups are of PostgreSQL databases")
    _scheme_with_points(client, app)
    made = subprocess.run([str(BIN / "rewards"), "backup", "create", "--output", str(tmp_path)],
                          env=_env(app), cwd=tmp_path, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    (folder,) = tmp_path.glob("rewards-backup-*")
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct((folder / "keys.env").stat().st_mode & 0o777) == "0o600"
    keys = (folder / "keys.env").read_text()
    assert f"IDENTIFIER_KEY={app.config['IDENTIFIER_KEY']}\n" in keys
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts_at_start"]["members"] == 1
    assert app.config["IDENTIFIER_KEY"] not in json.dumps(manifest)

    name = f"rewards_restore_test_{uuid.uuid4().hex[:8]}"
    target = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(database=name)
    target_url = target.render_as_string(hide_password=False)
    try:
        restored = subprocess.run(
            [str(BIN / "rewards"), "backup", "restore", str(folder), "--target-url",
             target_url, "--create"], env=_env(app), capture_output=True, text=True)
        assert restored.returncode == 0, restored.stderr
        assert "members 1" in restored.stdout
        verified = backups.verify_restored(target_url, backups.read(folder).keys)
        assert verified.returncode == 0 and "ledger ok" in verified.stdout
        again = subprocess.run(
            [str(BIN / "rewards"), "backup", "restore", str(folder), "--target-url",
             target_url], env=_env(app), capture_output=True, text=True)
        assert again.returncode == 1 and "not empty" in again.stderr
    finally:
        backups.drop_database(app.config["SQLALCHEMY_DATABASE_URI"], name)

    (folder / "keys.env").write_text(keys.replace("IDENTIFIER_KEY=", "IDENTIFIER_KEY=x"))
    with pytest.raises(backups.BackupError, match="not the one"):
        backups.read(folder)
    (folder / "keys.env").write_text(keys)
    with (folder / "database.dump").open("ab") as dump:
        dump.write(b"\0")
    with pytest.raises(backups.BackupError, match="checksum"):
        backups.read(folder)


def test_backups_say_why_they_cannot_run_on_sqlite(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", SECRET_KEY="s" * 32,
               IDENTIFIER_KEY="i" * 32)
    done = subprocess.run([str(BIN / "rewards"), "backup", "check"], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "backups are for PostgreSQL" in done.stderr and "Traceback" not in done.stderr
