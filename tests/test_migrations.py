"""The schema comes only from Alembic, and the models say the same as the migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask

from rewards.extensions import db
from rewards.migrate import alembic_config
from rewards.models import Base


def test_there_is_exactly_one_head(app: Flask) -> None:
    script = ScriptDirectory.from_config(alembic_config(app.config["SQLALCHEMY_DATABASE_URI"]))
    assert len(script.get_heads()) == 1


def test_models_match_the_migrated_database(app: Flask) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_database_is_at_head(app: Flask) -> None:
    script = ScriptDirectory.from_config(alembic_config(app.config["SQLALCHEMY_DATABASE_URI"]))
    with db.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    assert set(current) == set(script.get_heads())
