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

In a view that only reads (`rewards.api.common.reads_only`) the statements run on a
connection of their own instead, kept open by each process (and thread) in autocommit:
no session, no pool checkout and return, no transaction (`_Direct`).

Only for statements built once: each compiled form is kept (the last 64); parameters
are passed as given, so they must be plain values psycopg adapts itself (ids, numbers,
text, aware datetimes) or JSON documents (sent through psycopg's JSON adapter), which
`rows` checks when it compiles. Datetimes come back in
UTC, as SQLAlchemy's columns give them, whatever the database's own time zone. The
compiled text is turned once into PostgreSQL's own `$n` placeholders and run on
psycopg's raw cursor (`_native`), which sends it as it is."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
import psycopg
from psycopg.rows import _make_nt, namedtuple_row, tuple_row
from psycopg.types.json import Json
from sqlalchemy import JSON, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from .extensions import POOL_RECYCLE_SECONDS, db, reading_only
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


_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")


@lru_cache(maxsize=256)
def _native(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """`sql` as SQLAlchemy writes it for psycopg (`%(name)s` placeholders, `%%` for a
    percent sign) with PostgreSQL's own `$n` placeholders instead, one for each name,
    and the names in that order. psycopg's raw cursor sends it as it is; its usual
    cursor parses the text for placeholders again on every execution of a statement
    over 4 kB (a claim's write, a read carrying the caller's check), a tenth of a
    claim's Python."""
    numbers: dict[str, int] = {}

    def native(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        number = numbers.setdefault(name, len(numbers) + 1)
        return f"${number}"

    return _PLACEHOLDER.sub(native, sql).encode(), tuple(numbers)


def _execute(cursor: Any, sql: str, values: dict[str, Any]) -> None:
    native, names = _native(sql)
    cursor.execute(native, [values[name] for name in names])


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


class _Direct(threading.local):
    """This thread's own autocommit connection for read-only views, taken from the
    engine's pool once and detached from it (so it was set up as the pool's are), then
    kept: a request that only reads runs its statements here without a session, a
    checkout or a transaction. Replaced when the engine changes, when the process was
    forked (the parent's is left alone, never closed), after the pool's recycle time,
    and when it breaks (a read that finds it broken runs again, once, on a new one)."""

    engine: Engine | None = None
    pooled: Any = None  # SQLAlchemy's wrapper, detached from the pool
    connection: Any = None  # psycopg's connection inside it
    cursor: Any = None  # named-tuple rows
    plain: Any = None  # plain tuples
    utc = True  # the connection's zone is UTC's
    pid = 0
    born = 0.0

    def get(self) -> Any:
        engine = db.engine
        if self.connection is not None and (
                self.engine is not engine or self.pid != os.getpid()
                or self.connection.closed or time.monotonic() - self.born > POOL_RECYCLE_SECONDS):
            self.drop()
        if self.connection is None:
            assert engine is not None
            pooled = engine.raw_connection()
            driver = pooled.driver_connection
            pooled.detach()  # closing it now closes the connection, not return it
            driver.autocommit = True
            # One cursor for every read (a cursor runs one statement at a time); the
            # connection's zone is the database's, as it was when it connected.
            zone = driver.info.timezone
            self.utc = utc = zone is UTC or getattr(zone, "key", None) in _UTC_NAMES
            self.cursor = psycopg.RawCursor(driver, row_factory=namedtuple_row if utc
                                            else _in_utc)
            self.plain = psycopg.RawCursor(driver, row_factory=tuple_row)
            self.engine, self.pooled, self.connection = engine, pooled, driver
            self.pid = os.getpid()
            self.born = time.monotonic()
            _opened[id(self)] = self
            _watch(engine)
        return self.connection

    def drop(self) -> None:
        pooled, self.pooled, self.connection, self.engine = self.pooled, None, None, None
        self.cursor = self.plain = None
        _opened.pop(id(self), None)
        if pooled is not None and self.pid == os.getpid():
            try:
                pooled.close()
            except Exception:  # already gone with its server: nothing to release
                pass


_direct = _Direct()
# Every thread's direct connection in this process, to close them with their engine.
_opened: dict[int, _Direct] = {}
_watched: set[int] = set()


def _watch(engine: Engine) -> None:
    if id(engine) in _watched:
        return
    _watched.add(id(engine))

    @event.listens_for(engine, "engine_disposed")
    def _close_direct(disposed: Engine) -> None:
        for own in list(_opened.values()):
            if own.engine is disposed:
                own.drop()


def _lost(error: psycopg.Error) -> bool:
    """The connection is gone: the server ended it (shutting down, restarted, an
    administrator), or the client found it lost (no SQLSTATE)."""
    if not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _run_direct(sql: str, values: dict[str, Any], split: tuple[Executable, int] | None = None
                ) -> Any:
    """`sql` on this thread's direct connection, once more on a new connection when the
    kept one turns out broken (the database restarted since): reads are safe to run
    twice. An error otherwise is SQLAlchemy's (the API answers 503 for a lost
    database, as for the session's statements)."""
    for attempt in (1, 2):
        try:
            driver = _direct.get()
        except psycopg.Error as error:  # cannot connect: the database is down
            raise DBAPIError.instance(None, None, error, psycopg.Error,
                                      connection_invalidated=True) from error
        engine, cursor = _direct.engine, _direct.cursor
        try:
            if engine is not None and engine._has_events:
                engine.dispatch.before_cursor_execute(None, cursor, sql, values, None, False)
            if split is None:
                _execute(cursor, sql, values)
                return cursor.fetchall()
            cursor = _direct.plain
            _execute(cursor, sql, values)
            return _split(cursor, *split, _direct.utc)
        except psycopg.Error as error:
            broken = driver.closed or driver.broken or _lost(error)
            if broken:
                _direct.drop()
                if engine is not None:
                    # The server ended it, so likely the pool's too (a restart): the
                    # pool starts afresh, as SQLAlchemy's own handling does.
                    engine.dispose()
            if broken and attempt == 1 and isinstance(error, psycopg.OperationalError):
                continue
            raise DBAPIError.instance(sql, values, error, psycopg.Error,
                                      connection_invalidated=broken) from error
    raise AssertionError("unreachable")


# A check the next statement of a view carries (a resident's token: the
# member and login it names, rewards.api.auth): its statement, parameters, and what to
# call with its row once read (None when it found none).
Carried = tuple[Executable, dict[str, Any], Callable[[Any], None]]
_carried: ContextVar[Carried | None] = ContextVar("reads_carried", default=None)


def carry(check: Executable, params: dict[str, Any], settle: Callable[[Any], None]) -> Any:
    """Have the next statement `rows` runs in this read-only view (or, outside one, on
    the request's session: a claim's first statement) also run `check` (a statement of
    one row at most, built once), in the same round trip, and call `settle` with its
    row before answering that statement's rows. Returns the token to `uncarry` with
    once the view is done."""
    return _carried.set((check, params, settle))


def uncarry(token: Any) -> None:
    _carried.reset(token)


def settle_carried() -> None:
    """Run the carried check now, on its own, if no statement has carried it yet."""
    carried = _carried.get()
    if carried is not None:
        _carried.set(None)
        check, params, settle = carried
        settle(first(check, params))


@lru_cache(maxsize=64)
def _joined(check_sql: str, names: tuple[str, ...], sql: str) -> str:
    """One statement answering `check_sql`'s row (columns `names`), if any, with each of
    `sql`'s rows: the check's columns (on the first row only: NULL on the others, which
    psycopg reads for nothing), then the row's number (NULL: `sql` found nothing), then
    the row's own columns."""
    check = ", ".join(f'CASE WHEN _rows._n > 1 THEN NULL ELSE _check."{name}" END'
                      for name in names)
    return (f"WITH _check AS ({check_sql}) SELECT {check}, _rows.* FROM _check "
            f"LEFT JOIN LATERAL (SELECT row_number() OVER () AS _n, _inner.* "
            f"FROM ({sql}) AS _inner) AS _rows ON true ORDER BY _rows._n")


def _split(cursor: Any, check: Executable, width: int, utc: bool) -> tuple[Any, list[Any]]:
    """A `_joined` statement's rows as the check's row (None: it found none) and the
    statement's rows, named tuples as `rows` answers them (`cursor` answers tuples)."""
    found = cursor.fetchall()
    if not found:
        return None, []
    result, encoding = cursor.pgresult, cursor._encoding
    own = _make_nt(encoding, *(result.fname(i) for i in range(width + 1, result.nfields)))
    if not utc:
        found = [[value.astimezone(UTC) if type(value) is datetime else value
                  for value in values] for values in found]
    first = found[0]
    caller = _make_nt(encoding, *(name.encode() for name in _names(check)))._make(first[:width])
    if first[width] is None:  # the check's row alone: the statement found nothing
        return caller, []
    return caller, [own._make(values[width + 1:]) for values in found]


@lru_cache(maxsize=64)
def _names(statement: Executable) -> tuple[str, ...]:
    return tuple(column.key for column in statement.selected_columns)  # type: ignore[attr-defined]


def _with_carried(carried: Carried, sql: str, values: dict[str, Any]
                  ) -> tuple[str, dict[str, Any], tuple[Executable, int]]:
    """`sql` joined with the carried check: its text, its values, how to split its rows."""
    check, check_params, _ = carried
    check_sql, compiled, _ = _compiled(check)
    names = _names(check)
    both = {**compiled.construct_params(check_params), **values}
    return _joined(check_sql, names, sql), both, (check, len(names))


def _run_carrying(carried: Carried, sql: str, values: dict[str, Any]) -> list[Any]:
    caller, found = _run_direct(*_with_carried(carried, sql, values))
    carried[2](caller)
    return found


def rows(statement: Executable, params: dict[str, Any], session: Any = None) -> list[Any]:
    """Every row of `statement` (built once) with `params`, on the connection of
    `session` (the request's session when not given), or in a read-only view on this
    thread's direct connection."""
    if db.dialect != "postgresql":
        session = session if session is not None else db.session
        return list(session.connection().execute(statement, params).all())
    sql, compiled, as_json = _compiled(statement)
    values = compiled.construct_params(params)
    for name in as_json:
        if values.get(name) is not None:
            values[name] = Json(values[name], dumps=_json_text)
    if reading_only.get() and (session is None or session is db.session):
        carried = _carried.get()
        if carried is not None:
            _carried.set(None)
            return _run_carrying(carried, sql, values)
        return _run_direct(sql, values)
    # A write carrying the caller's check (a claim: `carry` from outside a read-only
    # view) runs it on the request's session, in its transaction.
    carried = _carried.get() if session is None or session is db.session else None
    split = None
    if carried is not None:
        _carried.set(None)
        sql, values, split = _with_carried(carried, sql, values)
    connection = _connection(session if session is not None else db.session)
    driver = connection.connection.driver_connection
    zone = driver.info.timezone  # type: ignore[union-attr]
    utc = zone is UTC or getattr(zone, "key", None) in _UTC_NAMES
    try:
        with psycopg.RawCursor(driver,  # type: ignore[arg-type]
                row_factory=tuple_row if split is not None
                else namedtuple_row if utc else _in_utc) as cursor:
            if connection._has_events or connection.engine._has_events:
                # Whoever listens to SQLAlchemy's statements (tracing, the tests'
                # statement counts) still hears of these.
                connection.dispatch.before_cursor_execute(connection, cursor, sql, values,
                                                          None, False)
            _execute(cursor, sql, values)
            if split is None:
                return cursor.fetchall()
            caller, found = _split(cursor, *split, utc)
    except psycopg.Error as error:
        # SQLAlchemy's own handling: wraps the error, and on a lost connection
        # invalidates it and the pool's older ones. Always raises.
        connection._handle_dbapi_exception(error, sql, values, None, None)
        raise
    assert carried is not None
    carried[2](caller)
    return found


def first(statement: Executable, params: dict[str, Any], session: Any = None) -> Any | None:
    found = rows(statement, params, session)
    return found[0] if found else None
