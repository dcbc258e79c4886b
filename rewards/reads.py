"""The hottest reads' statements, run straight on the driver.

A resident's balance, statement page, action page and catalogue each run one or two
statements built once at import (SQLAlchemy Core, no entities). On PostgreSQL,
SQLAlchemy's execution around each of them (its statement cache lookup, execution
context and result wrapper) costs about as much Python as psycopg itself: here the
statement is compiled once and psycopg runs it on the session's own connection (so the
request's transaction, autocommit and pool are SQLAlchemy's as before), answering
named tuples (`row.name`, `row[0]`, `row._asdict()`, like SQLAlchemy's rows). A
database error goes through SQLAlchemy's handling (a lost connection is invalidated
and the pool refreshed; the API answers 503). Other databases (SQLite) run the
statement through SQLAlchemy.

Only for statements built once: each compiled form is kept (the last 64); parameters
are passed as given, so they must be plain values psycopg adapts itself (ids, numbers,
text, aware datetimes) or JSON documents (sent through psycopg's JSON adapter), which
`rows` checks when it compiles. Datetimes come back in
UTC, as SQLAlchemy's columns give them, whatever the database's own time zone."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Json
from sqlalchemy import JSON
from sqlalchemy.sql import Executable

from .extensions import db
from .models.base import UTCDateTime


@lru_cache(maxsize=64)
def _compiled(statement: Executable) -> tuple[str, Any, frozenset[str]]:
    """The statement's SQL, its compiled form, and the parameters that are JSON (sent
    wrapped for psycopg's own JSON adapter)."""
    compiled = statement.compile(dialect=db.engine.dialect)  # type: ignore[attr-defined]
    processors = {name for name, process in compiled._bind_processors.items()
                  if process is not None}
    binds = {bind.key: bind.type for bind in compiled.binds.values()}
    # UTCDateTime converts to UTC (psycopg sends aware datetimes as they are); JSON
    # values go through psycopg's adapter.
    as_json = frozenset(name for name in processors if isinstance(binds.get(name), JSON))
    converting = processors - as_json - {name for name, kind in binds.items()
                                         if isinstance(kind, UTCDateTime)}
    if converting:
        raise ValueError(f"parameters {sorted(converting)} need SQLAlchemy's conversion; "
                         "run this statement through the session")
    return compiled.string, compiled, as_json


def _json_text(value: Any) -> str:
    """As SQLAlchemy's JSON type writes it (the standard library), orjson's speed where
    it can write the value."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what orjson refuses (integers beyond 64 bits): as SQLAlchemy does
        return json.dumps(value)


# Zones psycopg may name for a database that keeps UTC: its datetimes need no change.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal",
                        "Etc/Zulu", "Zulu", "GMT", "Etc/GMT", "Etc/GMT0", "GMT0"})


def _in_utc(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    """Named-tuple rows with every datetime moved to UTC (a database in another zone)."""
    make = namedtuple_row(cursor)

    def row(values: Sequence[Any]) -> Any:
        return make([value.astimezone(UTC) if type(value) is datetime else value
                     for value in values])

    return row


def _connection(session: Any) -> Any:
    """The session's connection: the one its open transaction holds when it has one
    (looked up directly: `session.connection()` goes through the session's state
    machinery, a tenth of a balance's Python), else `session.connection()`, which
    begins the transaction and checks a connection out."""
    own = session.registry() if hasattr(session, "registry") else session
    transaction = own._transaction
    if transaction is not None and transaction.is_active and len(transaction._connections) == 1:
        return next(iter(transaction._connections.values()))[0]
    return session.connection()


def rows(statement: Executable, params: dict[str, Any], session: Any = None) -> list[Any]:
    """Every row of `statement` (built once) with `params`, on the connection of
    `session` (the request's session when not given)."""
    session = session if session is not None else db.session
    if db.dialect != "postgresql":
        return list(session.connection().execute(statement, params).all())
    sql, compiled, as_json = _compiled(statement)
    values = compiled.construct_params(params)
    for name in as_json:
        if values.get(name) is not None:
            values[name] = Json(values[name], dumps=_json_text)
    connection = _connection(session)
    driver = connection.connection.driver_connection
    zone = driver.info.timezone  # type: ignore[union-attr]
    utc = zone is UTC or getattr(zone, "key", None) in _UTC_NAMES
    try:
        with driver.cursor(  # type: ignore[union-attr]
                row_factory=namedtuple_row if utc else _in_utc) as cursor:
            if connection._has_events or connection.engine._has_events:
                # Whoever listens to SQLAlchemy's statements (tracing, the tests'
                # statement counts) still hears of these.
                connection.dispatch.before_cursor_execute(connection, cursor, sql, values,
                                                          None, False)
            cursor.execute(sql, values)
            return cursor.fetchall()
    except psycopg.Error as error:
        # SQLAlchemy's own handling: wraps the error, and on a lost connection
        # invalidates it and the pool's older ones. Always raises.
        connection._handle_dbapi_exception(error, sql, values, None, None)
        raise


def first(statement: Executable, params: dict[str, Any], session: Any = None) -> Any | None:
    found = rows(statement, params, session)
    return found[0] if found else None
