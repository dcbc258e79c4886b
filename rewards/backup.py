"""Backups of a PostgreSQL scheme: the database and the keys its data depends on, kept
together, and a check that a backup really restores.

A backup is a directory (mode 0700):
  database.dump   `pg_dump --format=custom` of the whole database
  keys.env        SECRET_KEY and IDENTIFIER_KEY as they were (mode 0600): card numbers are
                  stored as keyed hashes under IDENTIFIER_KEY, so a database restored
                  without it cannot recognise a single card again
  manifest.json   when, which migration, the dump's SHA-256, the key's fingerprint, and
                  the row counts of the main tables

Needs PostgreSQL's client programs (pg_dump, pg_restore) on PATH, of the server's major
version or newer."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

COUNTED = ("members", "actions", "postings", "rewards", "staff_users", "partners")
KEYS = ("SECRET_KEY", "IDENTIFIER_KEY")


class BackupError(Exception):
    """The backup, restore or check could not be done; the message says why."""


def libpq_url(url: str) -> str:
    """postgresql+psycopg://... (SQLAlchemy) as pg_dump understands it."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise BackupError("backups are for PostgreSQL (DATABASE_URL=postgresql+psycopg://...); "
                          "the embedded SQLite file can simply be copied while stopped")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def key_fingerprint(identifier_key: str) -> str:
    """Tells whether two copies of IDENTIFIER_KEY are the same without showing it."""
    return hmac.new(identifier_key.encode(), b"backup-fingerprint", hashlib.sha256).hexdigest()[:16]


def _run(args: list[str]) -> None:
    if shutil.which(args[0]) is None:
        raise BackupError(f"{args[0]} is not on PATH (install PostgreSQL's client programs)")
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{args[0]} failed: {done.stderr.strip()[-2000:]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _facts(url: str) -> dict[str, Any]:
    libpq_url(url)  # PostgreSQL only
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            counts = {table: int(connection.execute(
                text(f"SELECT count(*) FROM {table}")).scalar() or 0) for table in COUNTED}
    except SQLAlchemyError as error:
        raise BackupError(f"could not read the database: {error.__class__.__name__}: "
                          f"{str(error).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return {"revision": revision, "counts": counts}


def create(url: str, keys: dict[str, str], parent: Path) -> Path:
    """Write a backup of the database at `url` with `keys` under `parent`; returns its
    directory."""
    missing = [name for name in KEYS if not keys.get(name)]
    if missing:
        raise BackupError(f"{', '.join(missing)} not set: a backup without the keys is not one")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = parent / f"rewards-backup-{stamp}"
    target.mkdir(parents=True, mode=0o700)
    facts = _facts(url)  # before the dump: rows only grow, so the dump holds at least these
    dump = target / "database.dump"
    _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", str(dump),
          "--dbname", libpq_url(url)])
    keys_file = target / "keys.env"
    keys_file.touch(mode=0o600)
    keys_file.write_text("".join(f"{name}={keys[name]}\n" for name in KEYS))
    manifest = {
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "database": make_url(url).database,
        "revision": facts["revision"],
        "counts_at_start": facts["counts"],
        "dump_sha256": _sha256(dump),
        "identifier_key_fingerprint": key_fingerprint(keys["IDENTIFIER_KEY"]),
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return target


@dataclass(frozen=True)
class Backup:
    path: Path
    manifest: dict[str, Any]
    keys: dict[str, str]


def read(path: Path) -> Backup:
    """Open a backup, refusing one whose dump or keys do not match its manifest."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        lines = (path / "keys.env").read_text().splitlines()
    except (OSError, ValueError) as error:
        raise BackupError(f"{path} is not a readable backup: {error}") from None
    keys = dict(line.split("=", 1) for line in lines if "=" in line)
    if _sha256(path / "database.dump") != manifest.get("dump_sha256"):
        raise BackupError("database.dump does not match the manifest's checksum")
    if key_fingerprint(keys.get("IDENTIFIER_KEY", "")) != \
            manifest.get("identifier_key_fingerprint"):
        raise BackupError("keys.env's IDENTIFIER_KEY is not the one the backup was made with")
    return Backup(path, manifest, keys)


def create_database(server_url: str, name: str) -> str:
    """Make an empty database `name` on the server of `server_url`; returns its URL."""
    base = make_url(server_url)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as error:
        raise BackupError(f"could not create database {name}: "
                          f"{str(error).splitlines()[0]}") from None
    finally:
        admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    admin = create_engine(make_url(server_url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def restore(backup: Backup, url: str) -> dict[str, int]:
    """Restore into the (empty) database at `url`; returns its row counts. Refuses a
    database that already has the scheme's tables."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            taken = connection.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    finally:
        engine.dispose()
    if taken:
        raise BackupError("the target database is not empty: restore into a fresh one")
    _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
          "--dbname", libpq_url(url), str(backup.path / "database.dump")])
    facts = _facts(url)
    if facts["revision"] != backup.manifest["revision"]:
        raise BackupError(f"restored at migration {facts['revision']}, "
                          f"backed up at {backup.manifest['revision']}")
    short = [table for table, count in backup.manifest["counts_at_start"].items()
             if facts["counts"].get(table, 0) < count]
    if short:
        raise BackupError(f"restored tables have fewer rows than when the backup began: {short}")
    return facts["counts"]


def verify_restored(url: str, keys: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`rewards ledger verify` against the restored database, with the backup's keys."""
    env = {**os.environ, "DATABASE_URL": url, **keys}
    env.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "rewards.cli", "ledger", "verify"],
                          env=env, capture_output=True, text=True)


def scratch_name() -> str:
    return f"rewards_restore_check_{uuid.uuid4().hex[:10]}"
