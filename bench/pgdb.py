"""What the PostgreSQL benchmarks share: a database of their own, made and dropped."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rewards.extensions import db


def create_database(base_url: str) -> tuple[str, Any]:
    base = make_url(base_url)
    name = f"rewards_bench_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return base.set(database=name).render_as_string(hide_password=False), admin


def drop_database(admin: Any, url: str) -> None:
    name = make_url(url).database
    db.session.remove()
    if db.engine is not None:
        db.engine.dispose()
    with admin.connect() as connection:
        connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()
