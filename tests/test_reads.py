"""The hot reads' statements run on the driver (rewards/reads.py): the same rows as
SQLAlchemy gives, datetimes in UTC whatever the database's zone, and a lost connection
handled as SQLAlchemy handles it (the API answers 503, the next request recovers)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import exc, select, text

from rewards import reads
from rewards.api.common import _numbered
from rewards.api.me import _action_rows, _statement_lines
from rewards.catalogue import catalogue_rows
from rewards.extensions import db, reading_only
from rewards.ledger.totals import _balance_stmt, _newest_credits_stmt
from rewards.models import Member
from rewards.models.login import LoginSession
from rewards.sessions import _MEMBER_ROW_BY_SESSION

from .helpers import bearer, build_scheme, link, member_token, postgres_only, signed_post, tap


def _resident(client: FlaskClient, app: Flask) -> tuple[dict[str, str], Any]:
    scheme = build_scheme(client, app, cost_points=10)
    headers = bearer(member_token(client, app, "driver-reads@example.org"))
    assert link(client, app, headers, "633500000077").status_code == 201
    day = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    items = [tap(f"dr-{n}", "633500000077", day - timedelta(days=1 + n)) for n in range(4)]
    assert signed_post(client, scheme.source, {"items": items}).status_code == 200
    return headers, scheme


def _statements(app: Flask) -> list[tuple[Any, dict[str, Any]]]:
    with app.app_context():
        member = db.session.scalar(select(Member).where(
            Member.email == "driver-reads@example.org"))
        login = db.session.scalar(select(LoginSession.id).where(
            LoginSession.member_id == member.id))
        code = f"member:{member.id}:available"
        return [(_MEMBER_ROW_BY_SESSION, {"caller_member": member.id, "caller_sid": login}),
                (_balance_stmt(), {"member": member.id,
                                   "by": datetime.now(UTC) + timedelta(days=3650)}),
                (_newest_credits_stmt(), {"member": member.id, "first": 48}),
                (_numbered(_action_rows(db.dialect)), {"member": member.id, "_offset": 0,
                                                       "_limit": 10}),
                (_numbered(_statement_lines(db.dialect)), {"code": code, "_offset": 0,
                                                           "_limit": 10}),
                (catalogue_rows()[0], {"now": datetime.now(UTC), "member": member.id})]


def test_rows_are_sqlalchemys_rows(client: FlaskClient, app: Flask) -> None:
    _resident(client, app)
    for statement, params in _statements(app):
        with app.app_context():
            expected = db.session.connection().execute(statement, params).all()
            got = reads.rows(statement, params)
            assert expected, statement
            assert [tuple(row) for row in got] == [tuple(row) for row in expected]
            for row, want in zip(got, expected, strict=True):
                for name in want._mapping:
                    if not name.startswith("_"):
                        assert getattr(row, name) == want._mapping[name]
            db.session.remove()


def test_datetimes_come_back_in_utc_whatever_the_databases_zone(
        client: FlaskClient, app: Flask) -> None:
    postgres_only(app, "the database's own time zone is PostgreSQL's")
    _resident(client, app)
    statement, params = _statements(app)[4]  # the statement's lines, with created_at
    with app.app_context():
        expected = reads.rows(statement, params)
        db.session.connection().exec_driver_sql("SET TIME ZONE 'America/New_York'")
        try:
            got = reads.rows(statement, params)
        finally:
            db.session.connection().exec_driver_sql("SET TIME ZONE 'UTC'")
            db.session.remove()
    assert [row.created_at for row in got] == [row.created_at for row in expected]
    assert all(row.created_at.utcoffset() == timedelta(0) for row in got)
    assert all(row.created_at.isoformat().endswith("+00:00") for row in got)


def test_a_lost_connection_is_sqlalchemys_error_and_the_next_read_recovers(
        client: FlaskClient, app: Flask) -> None:
    postgres_only(app, "terminating a backend is PostgreSQL's")
    headers, _ = _resident(client, app)
    assert client.get("/v1/me/balance", headers=headers).status_code == 200
    statement, params = _statements(app)[1]
    with app.app_context():
        pid = db.session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(exc.DBAPIError) as raised:
            reads.rows(statement, params)
        assert raised.value.connection_invalidated
        db.session.remove()
        # The pool gave up the dead connection: the next read connects afresh.
        assert reads.rows(statement, params)
        db.session.remove()
    assert client.get("/v1/me/balance", headers=headers).status_code == 200


def test_a_statement_whose_parameters_need_converting_is_refused(app: Flask) -> None:
    postgres_only(app, "SQLite runs every statement through SQLAlchemy")
    from sqlalchemy import PickleType, bindparam

    from rewards.models import Action

    needs_pickling = select(Action.id).where(
        Action.external_ref == bindparam("kept", type_=PickleType()))
    with app.app_context(), pytest.raises(ValueError, match="kept"):
        reads.rows(needs_pickling, {"kept": {"route": "1"}})


def test_json_parameters_are_written_as_sqlalchemy_writes_them(app: Flask) -> None:
    postgres_only(app, "SQLite runs every statement through SQLAlchemy")
    from sqlalchemy import JSON, bindparam, cast, literal_column
    from sqlalchemy.dialects.postgresql import JSONB

    # As text (what was sent) and as a document (what it means), for a document orjson
    # writes and one it refuses (an integer beyond 64 bits).
    doc = bindparam("doc", type_=JSON())
    statement = select(cast(doc, JSONB).label("meaning"),
                       literal_column("'x'").label("tag"))
    with app.app_context():
        for value in ({"reward_id": "r-1", "n": [1, 2.5, None, True], "é": "ü"},
                      {"big": 2**70}, None):
            got = reads.first(statement, {"doc": value})
            expected = db.session.connection().execute(statement, {"doc": value}).first()
            assert got.meaning == expected.meaning == (None if value is None else value)
        db.session.rollback()


def _direct_rows(statement: Any, params: dict[str, Any]) -> list[Any]:
    """`statement` as a read-only view runs it: on the process's own read connection."""
    token = reading_only.set(True)
    try:
        return reads.rows(statement, params)
    finally:
        reading_only.reset(token)


def test_a_read_only_views_statements_run_on_the_processs_read_connection(
        client: FlaskClient, app: Flask) -> None:
    postgres_only(app, "the direct read connection is PostgreSQL's")
    _resident(client, app)
    for statement, params in _statements(app):
        with app.app_context():
            expected = db.session.connection().execute(statement, params).all()
            db.session.remove()
            got = _direct_rows(statement, params)
            assert not db.session.registry.has()  # no session, no checkout
            assert [tuple(row) for row in got] == [tuple(row) for row in expected]
    with app.app_context():
        direct = reads._direct.connection
        assert direct is not None and direct.autocommit
        # One connection, kept from one read to the next.
        _direct_rows(*_statements(app)[1])
        assert reads._direct.connection is direct


def test_a_dropped_read_connection_is_replaced_and_the_read_answers(
        client: FlaskClient, app: Flask) -> None:
    postgres_only(app, "terminating a backend is PostgreSQL's")
    headers, _ = _resident(client, app)
    assert client.get("/v1/me/balance", headers=headers).json["available"] == 40
    with app.app_context():
        dropped = reads._direct.connection
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"),
                          {"pid": dropped.info.backend_pid})
    # The read finds it gone, runs again on a new connection: the resident sees nothing.
    answer = client.get("/v1/me/balance", headers=headers)
    assert answer.status_code == 200 and answer.json["available"] == 40
    assert reads._direct.connection is not dropped and dropped.closed


def test_a_read_connection_is_closed_with_its_engine_and_never_shared_across_fork(
        client: FlaskClient, app: Flask) -> None:
    postgres_only(app, "the direct read connection is PostgreSQL's")
    headers, _ = _resident(client, app)
    assert client.get("/v1/me/balance", headers=headers).status_code == 200
    kept = reads._direct.connection
    db.engine.dispose()
    assert kept.closed and reads._direct.connection is None
    # A forked child (a gunicorn or RQ worker) leaves its parent's open and makes its own.
    assert client.get("/v1/me/balance", headers=headers).status_code == 200
    parent = reads._direct.connection
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        ok = False
        try:
            db.after_fork()
            with app.app_context():
                rows = _direct_rows(*_statements(app)[1])
            ok = bool(rows) and reads._direct.connection is not parent and not parent.closed
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(child, 0)
    assert answer == b"1"
    assert not parent.closed
    assert client.get("/v1/me/balance", headers=headers).status_code == 200
    assert reads._direct.connection is parent
