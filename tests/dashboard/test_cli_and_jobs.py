"""`rewards dashboard refresh|rebuild`, the cron job that keeps the rollups, and the
embedded default's refresh on a request."""

from __future__ import annotations

import importlib
import random
from datetime import timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from rewards.dashboard.filters import today
from rewards.dashboard.refresh import last_refresh, refresh_if_stale
from rewards.extensions import db
from rewards.models.dashboard import MemberDay

from ..test_cli import rewards
from .scheme import make_world, now_utc, random_round


def test_rebuild_and_refresh_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    assert rewards("db", "upgrade", db_url=url, cwd=tmp_path).returncode == 0
    done = rewards("dashboard", "refresh", db_url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "refreshed" in done.stdout
    end = today()
    built = rewards("dashboard", "rebuild", "--from", str(end - timedelta(days=9)),
                    "--to", str(end), db_url=url, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "rebuilt 10 day(s)" in built.stdout
    backwards = rewards("dashboard", "rebuild", "--from", str(end), "--to",
                        str(end - timedelta(days=1)), db_url=url, cwd=tmp_path)
    assert backwards.returncode == 2
    assert "--from must not be after --to" in backwards.stderr


def test_the_cron_job_refreshes_and_is_scheduled_every_minute(app: Flask) -> None:
    from rq import cron

    from workers.dashboard import refresh_rollups

    with app.app_context():
        world = make_world(db.session)
        random_round(db.session, world, random.Random(3), now_utc(), actions=40)
        result = refresh_rollups()  # as a worker runs it, inside the app
        assert result["days"] > 0 and not result["skipped"]
        assert db.session.scalar(select(func.count()).select_from(MemberDay)) > 0
    importlib.import_module("workers.cron")
    scheduled = {entry["func"].__name__: entry for entry in cron._job_data_registry}
    assert scheduled["refresh_rollups"]["interval"] == 60
    assert scheduled["rebuild_recent"]["cron"]


def test_a_request_refreshes_at_most_once_a_minute(app: Flask) -> None:
    with app.app_context():
        assert last_refresh(db.session) is None
        assert refresh_if_stale(db.session, 60) is not None
        first = last_refresh(db.session)
        assert refresh_if_stale(db.session, 60) is None
        assert last_refresh(db.session) == first
        assert refresh_if_stale(db.session, 0) is None
