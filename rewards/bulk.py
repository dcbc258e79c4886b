"""Reading and writing many rows at once, the same way on every backend: conditions
that say `column IN values` (one array on PostgreSQL, chunked IN lists elsewhere) and
bulk inserts (binary COPY on PostgreSQL, executemany elsewhere). Ingest, awarding and
the ledger all write through insert_rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Table, any_, insert, literal
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

# Outside PostgreSQL, IN lists of at most this many values: inside every driver's limit
# on bound parameters (SQLite's is 32,766).
_CHUNK = 1000


def chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def is_postgres(session: Session) -> bool:
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def pg_array(values: Iterable[uuid.UUID | datetime]) -> str:
    """A PostgreSQL array literal of ids or times (whose text has no commas, quotes or
    braces), for CAST(:p AS uuid[]) or timestamptz[] where it is read once (never in a
    filter: there the cast would run for every row). The driver adapts a long Python
    list of either element by element, several times slower than the server parses this."""
    return "{" + ",".join(map(str, values)) + "}"


def one_of(postgres: bool, column: Any, values: Iterable[Any]) -> Iterator[Any]:
    """Conditions that together say `column IN values`, in sorted order. On PostgreSQL
    one `= ANY(array)`: the statement's text is the same for any count, so the driver
    prepares it once; elsewhere IN lists of at most _CHUNK values."""
    ordered = sorted(values)
    if not ordered:
        return
    if postgres:
        yield column == any_(literal(ordered, ARRAY(column.type)))
    else:
        for chunk in chunks(ordered):
            yield column.in_(chunk)


# (database, table) -> column -> type name: what binary COPY must be told to send.
_column_types: dict[tuple[str, str], dict[str, str]] = {}
_COLUMN_TYPES_SQL = (
    "SELECT a.attname, t.typname FROM pg_attribute AS a JOIN pg_type AS t "
    "ON t.oid = a.atttypid WHERE a.attrelid = CAST(%s AS regclass) AND a.attnum > 0 "
    "AND NOT a.attisdropped"
)


def _types_of(driver: Any, table: str, columns: Sequence[str]) -> list[str]:
    key = (driver.info.dbname, table)
    known = _column_types.get(key)
    if known is None or any(column not in known for column in columns):
        known = _column_types[key] = dict(driver.execute(_COLUMN_TYPES_SQL, (table,)))
    return [known[column] for column in columns]


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]],
                postgres: bool | None = None) -> None:
    """Insert many rows given as dicts (see insert_tuples)."""
    if rows:
        insert_tuples(session, table, list(rows[0]), [tuple(row.values()) for row in rows],
                      postgres)


def insert_tuples(session: Session, table: Table, columns: Sequence[str],
                  rows: Sequence[Sequence[Any]], postgres: bool | None = None) -> None:
    """Insert many rows (tuples of the `columns`, in that order) in the session's
    transaction. On PostgreSQL through binary COPY, its bulk-loading path: every
    constraint, index and trigger applies as for INSERT, and errors come back as
    SQLAlchemy's (IntegrityError on a unique key), so callers handle them alike; the
    server reads binary ids and times several microseconds a row faster than text.
    Elsewhere one executemany INSERT."""
    if postgres is None:
        postgres = is_postgres(session)
    connection = session.connection()
    if not postgres:
        connection.execute(insert(table), [dict(zip(columns, row, strict=True))
                                           for row in rows])
        return
    import psycopg

    quote = connection.dialect.identifier_preparer.quote
    statement = (f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
                 "FROM STDIN (FORMAT BINARY)")
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        types = _types_of(driver, table.name, columns)
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(types)  # JSON columns take the Python values, as SQLAlchemy's do
            write = copy.write_row
            for row in rows:
                write(row)
    except psycopg.Error as error:
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from error
