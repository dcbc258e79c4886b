"""The demo loads months of history with facts for every ward, so the dashboard shows
figures above the suppression threshold and some small cells suppressed."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from sqlalchemy import func, select

from rewards.dashboard import Filters, Raw, compute
from rewards.dashboard.filters import today
from rewards.dashboard.settings import wards
from rewards.demo import LEEDS_WARDS, load_demo
from rewards.extensions import db
from rewards.ledger import verify_snapshot
from rewards.models import Member, RuleVersion


def test_demo_history_feeds_the_dashboard(app: Flask) -> None:
    with app.app_context():
        summary = load_demo(members=20, weeks=1, history_members=400, history_months=4)
        assert "illustrative" in summary
        session = db.session
        assert session.scalar(select(func.count()).select_from(Member)) == 420
        facts = wards(session)
        assert set(facts) == set(LEEDS_WARDS)
        assert all(f.illustrative and 1 <= f.imd_decile <= 10 for f in facts.values())
        assert session.scalar(select(func.count()).where(RuleVersion.ends_at.is_not(None))) == 1
        # Bulk history keeps the ledger's invariants.
        assert verify_snapshot(session) == []
        filters = Filters(today() - timedelta(days=120), today())
        by_ward = compute("actions_by_ward", filters)
        shown = [row for row in by_ward.rows if row["members"] is not None]
        hidden = [row for row in by_ward.rows if row.get("_suppressed")]
        assert shown and hidden
        campaign = compute("campaign", filters)
        assert {row["phase"] for row in campaign.rows} == {"before", "during", "after"}
        assert sum(row["actions"] or 0 for row in campaign.rows) > 0  # weeks with actions
        # The demo's ward facts are illustrative, and the figures using them say so.
        for name in ("reach_wards", "fairness_deprivation"):
            assert any(note.startswith("Illustrative figures:") and "all the wards" in note
                       for note in compute(name, filters).notes), name
        # The demo refreshed the rollups as it finished: they agree with the raw tables.
        for name in ("actions", "fairness_deprivation", "retention", "money", "campaign",
                     "baseline"):
            assert compute(name, filters).to_json() == compute(
                name, filters, source=Raw()).to_json(), name
