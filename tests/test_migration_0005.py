"""Migration 0005 over a scheme with history: the rules' running totals, revoked awards
and the available_at of old earn postings are filled in from what is stored, and the
ledger verifies afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, String, Uuid, column, create_engine, select, table, text
from sqlalchemy.engine import make_url

from rewards.migrate import downgrade, upgrade
from rewards.models.base import UTCDateTime

from .test_cli import rewards


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """A database of its own: PostgreSQL when the suite runs on it, else SQLite."""
    configured = os.environ.get("DATABASE_URL", "")
    if not configured.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'history.db'}"
        return
    name = f"rewards_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(configured).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(configured).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrade_fills_running_totals_revoked_awards_and_old_holds(
    scratch_url: str, tmp_path: Path
) -> None:
    upgrade(scratch_url)
    loaded = rewards("demo", "--members", "12", "--weeks", "1", db_url=scratch_url, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    downgrade(scratch_url, "0004")

    engine = create_engine(scratch_url)
    with engine.begin() as connection:
        # As a scheme from before 0002 would have them: earn postings without available_at,
        # under a rule that holds points for two days; and one action revoked.
        rule_id, version_id = connection.execute(text(
            "SELECT v.rule_id, v.id FROM awards AS a JOIN rule_versions AS v "
            "ON v.id = a.rule_version_id WHERE a.points > 0 LIMIT 1")).one()
        connection.execute(text("UPDATE rule_versions SET hold_days = 2 WHERE id = :v"),
                           {"v": version_id})
        connection.execute(text("UPDATE postings SET available_at = NULL WHERE kind = 'earn'"))
        revoked_action = connection.execute(text(
            "SELECT action_id FROM awards WHERE rule_id = :r AND points > 0 LIMIT 1"),
            {"r": rule_id}).scalar_one()
        connection.execute(text("UPDATE actions SET status = 'revoked' WHERE id = :a"),
                           {"a": revoked_action})
        # Its reversal wrote 3 points off (the member had spent them): they stay counted.
        _reversal_writing_off(connection, revoked_action, 3)
        expected_totals = dict(connection.execute(text(
            "SELECT r.id, coalesce(sum(a.points), 0) FROM rules AS r LEFT JOIN awards AS a "
            "ON a.rule_id = r.id AND a.action_id <> :a GROUP BY r.id"),
            {"a": revoked_action}).all())
        # Set against the action's awards in rule id order, as a reversal does.
        left = 3
        for award_rule, points in sorted(
            connection.execute(text("SELECT rule_id, points FROM awards WHERE action_id = :a "
                                    "AND points > 0"), {"a": revoked_action}).all(),
            key=lambda row: uuid.UUID(str(row[0]))):
            kept = min(int(points), left)
            left -= kept
            expected_totals[award_rule] += kept
        held_postings = {row[0] for row in connection.execute(text(
            "SELECT posting_id FROM awards WHERE rule_version_id = :v AND posting_id IS NOT NULL"),
            {"v": version_id})}
    assert held_postings and any(expected_totals.values())

    upgrade(scratch_url)

    with engine.connect() as connection:
        totals = dict(connection.execute(text("SELECT id, points_awarded FROM rules")).all())
        revoked = connection.execute(text(
            "SELECT action_id, revoked_at IS NOT NULL FROM awards "
            "WHERE revoked_at IS NOT NULL OR action_id = :a"), {"a": revoked_action}).all()
        postings = connection.execute(text(
            "SELECT id, created_at, available_at FROM postings WHERE kind = 'earn'")).all()
    engine.dispose()

    assert {str(k): int(v) for k, v in totals.items()} == {
        str(k): int(v) for k, v in expected_totals.items()}
    assert revoked and all(flag for _, flag in revoked)
    with engine.connect() as connection:
        assert connection.execute(text(
            "SELECT sum(points_written_off) FROM awards WHERE action_id = :a"),
            {"a": revoked_action}).scalar_one() == 3
    assert {str(action) for action, _ in revoked} == {str(revoked_action)}
    assert all(available is not None for _, _, available in postings)
    for posting_id, created_at, available_at in postings:
        hold = 2 if str(posting_id) in {str(p) for p in held_postings} else 0
        assert _as_naive(available_at) - _as_naive(created_at) == timedelta(days=hold)

    verified = rewards("ledger", "verify", db_url=scratch_url, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _reversal_writing_off(connection: Any, action_id: Any, points: int) -> None:
    """A reversal posting as 0004's code made it: `points` from scheme:written_off back
    to scheme:issuance."""
    accounts = table("accounts", column("id", Uuid()), column("code", String()),
                     column("kind", String()), column("created_at", UTCDateTime()))
    postings = table("postings", column("id", Uuid()), column("kind", String()),
                     column("reason", String()), column("key", String()),
                     column("action_id", Uuid()), column("created_at", UTCDateTime()))
    lines = table("posting_lines", column("id", Uuid()), column("posting_id", Uuid()),
                  column("account_id", Uuid()), column("points", Integer()),
                  column("created_at", UTCDateTime()))
    now = datetime.now(UTC)
    action_id = uuid.UUID(str(action_id))  # SQLite hands back hex text through text()
    ids = {}
    for code in ("scheme:written_off", "scheme:issuance"):
        found = connection.execute(select(accounts.c.id).where(accounts.c.code == code)).first()
        ids[code] = found[0] if found else uuid.uuid4()
        if not found:
            connection.execute(accounts.insert().values(id=ids[code], code=code, kind="scheme",
                                                        created_at=now))
    posting = uuid.uuid4()
    connection.execute(postings.insert().values(
        id=posting, kind="reversal", reason="Revoked", key=f"action:{action_id}:reversal",
        action_id=action_id, created_at=now))
    connection.execute(lines.insert(), [
        {"id": uuid.uuid4(), "posting_id": posting, "account_id": ids["scheme:written_off"],
         "points": -points, "created_at": now},
        {"id": uuid.uuid4(), "posting_id": posting, "account_id": ids["scheme:issuance"],
         "points": points, "created_at": now}])


def _as_naive(moment: datetime | str) -> datetime:
    """A stored time as naive UTC (SQLite through text() gives ISO text)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
