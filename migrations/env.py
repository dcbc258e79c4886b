"""Alembic environment: the database URL comes from the app's settings (DATABASE_URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from rewards.config import Config
from rewards.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("url") or Config().SQLALCHEMY_DATABASE_URI


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=_url().startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = engine_from_config(
        {"sqlalchemy.url": _url()}, prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    if engine.dialect.name == "sqlite":
        _sqlite_without_foreign_keys(engine)
    with engine.connect() as connection:
        _run(connection)
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows without their parent: {broken[:5]}")
    engine.dispose()


def _sqlite_without_foreign_keys(engine) -> None:
    """SQLite alters a table by copying it; with foreign keys enforced, dropping the old
    copy of a table other rows point at fails. Alembic's advice: switch them off for
    the migration (only possible outside a transaction) and check afterwards."""
    from pathlib import Path

    from sqlalchemy import event

    database = engine.url.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA foreign_keys=OFF")


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
