"""Migration 0025 over a scheme with history: members' running totals are summed from
the lines already there, the trigger keeps them from then on, and downgrading removes
both; totals lost later are reported by verify and summed again by recount-totals."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from rewards.migrate import downgrade, upgrade

from .test_cli import rewards
from .test_migration_0005 import scratch_url  # noqa: F401  (a fixture)

SUMS = """
    SELECT a.member_id, a.kind, SUM(l.points) FROM posting_lines AS l
    JOIN accounts AS a ON a.id = l.account_id WHERE a.member_id IS NOT NULL
    GROUP BY a.member_id, a.kind
"""


def _expected(connection) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    sums: dict[str, list[int]] = {}
    for member_id, kind, points in connection.execute(text(SUMS)):
        sums.setdefault(str(member_id), [0, 0])[0 if kind == "available" else 1] += int(points)
    return sums


def _kept(connection) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    return {str(member_id): [int(available), int(pending)]
            for member_id, available, pending in connection.execute(
                text("SELECT member_id, available, pending FROM member_totals"))}


def test_upgrade_sums_existing_lines_and_downgrade_removes_the_totals(
    scratch_url: str, tmp_path: Path  # noqa: F811
) -> None:
    upgrade(scratch_url)
    loaded = rewards("demo", "--members", "12", "--weeks", "2", db_url=scratch_url, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    engine = create_engine(scratch_url)
    with engine.connect() as connection:
        before = _expected(connection)
    assert len(before) >= 12 and any(available for available, _ in before.values())

    downgrade(scratch_url, "0024")
    assert "member_totals" not in inspect(engine).get_table_names()
    engine.dispose()

    upgrade(scratch_url)
    with engine.connect() as connection:
        assert _kept(connection) == before
    verified = rewards("ledger", "verify", db_url=scratch_url, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Totals lost (as after lines written with triggers off): verify says so, and
    # `rewards ledger recount-totals` sums them again.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM member_totals"))
    engine.dispose()
    verified = rewards("ledger", "verify", db_url=scratch_url, cwd=tmp_path)
    assert verified.returncode == 1 and "running totals" in verified.stderr
    recounted = rewards("ledger", "recount-totals", db_url=scratch_url, cwd=tmp_path)
    assert recounted.returncode == 0, recounted.stderr
    assert f"recounted the totals of {len(before)} member(s)" in recounted.stdout
    with engine.connect() as connection:
        assert _kept(connection) == before
    verified = rewards("ledger", "verify", db_url=scratch_url, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    engine.dispose()
