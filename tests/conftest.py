"""Test fixtures. With DATABASE_URL set to PostgreSQL the suite makes its own
database from it and drops it at the end; otherwise a SQLite file. Queue tests
use REDIS_URL, or the local Redis if one answers."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rewards import create_app
from rewards.extensions import db
from rewards.migrate import upgrade
from rewards.models import Base

RUN_ID = uuid.uuid4().hex[:8]


def _url_text(url: Any) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("DATABASE_URL", "")
    if not configured.startswith("postgresql"):
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'rewards-test.db'}"
        return
    base = make_url(configured)
    name = f"rewards_test_{RUN_ID}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield _url_text(base.set(database=name))
    finally:
        db.session.remove()
        if db.engine is not None:
            db.engine.dispose()
        with admin.connect() as connection:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = :name AND pid <> pg_backend_pid()"),
                {"name": name},
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def app(database_url: str) -> Flask:
    upgrade(database_url)
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": None,
            "SMTP_URL": None,
            "TESTING": True,
            "SECRET_KEY": "test-secret-key-at-least-32-bytes-long",
            "IDENTIFIER_KEY": "test-identifier-key",
            "RQ_QUEUE_PREFIX": f"test-{RUN_ID}-",
            "LOG_LEVEL": "WARNING",
            # Suite-wide: admins need not enrol TOTP (tests/security/ turn it on).
            "STAFF_TOTP_REQUIRED": False,
        }
    )


@pytest.fixture(autouse=True)
def reset_rate_limits(app: Flask) -> Iterator[None]:
    """Each test starts with no requests counted against the per-client limits."""
    from rewards.limits import limiter

    with app.app_context():
        limiter.reset()
    yield


@pytest.fixture(autouse=True)
def clean_database(app: Flask) -> Iterator[None]:
    yield
    db.session.remove()
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))
    app.extensions.get("sent_mail", []).clear()


@pytest.fixture
def allow_private_webhooks(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Partner endpoints on 127.0.0.1 over http (the tests' fake partner systems); off
    everywhere else, as in production."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", True)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


def _redis_url() -> str | None:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        from redis import Redis

        Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return None
    return url


@pytest.fixture
def redis_url() -> str:
    url = _redis_url()
    if url is None:
        pytest.skip("no Redis server answers (set REDIS_URL)")
    return url


@pytest.fixture
def rq_mode(app: Flask, redis_url: str) -> Iterator[str]:
    """Jobs go through Redis and RQ instead of running in-process."""
    from redis import Redis

    app.config["REDIS_URL"] = redis_url
    try:
        yield redis_url
    finally:
        app.config["REDIS_URL"] = None
        connection = Redis.from_url(redis_url)
        for key in connection.scan_iter(f"rq:*test-{RUN_ID}-*"):
            connection.delete(key)


def otp_from_mail(app: Flask, email: str) -> str:
    for message in reversed(app.extensions.get("sent_mail", [])):
        if message["To"] == email:
            match = re.search(r"\b(\d{6})\b", message["Subject"])
            assert match, message["Subject"]
            return match.group(1)
    raise AssertionError(f"no code was mailed to {email}")
