"""The scheduled reward jobs (workers/cron.py), called as RQ would call them: vouchers
expire (points back if the offer says so, once), members are reminded three days
before a voucher expires (once per voucher), and rewards stuck pending are failed."""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

import rewards.jobs
import rewards.notify
import workers.rewards
from rewards.extensions import db
from rewards.models import Offer, OutboxMessage, Reward

from .helpers import iso
from .reward_support import (
    admin_headers,
    available,
    card_member,
    ledger_sound,
    make_offer,
    make_partner,
    postings,
    resident,
    reward_status,
    till,
)


def _issued(client: FlaskClient, headers: dict[str, str], offer_id: str) -> dict[str, Any]:
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer_id}, headers=headers)
    assert claimed.status_code == 202, claimed.json
    reward = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=headers).json
    assert reward["status"] == "issued"
    return reward


def _claimed(app: Flask, offer_id: str) -> int:
    with app.app_context():
        offer = db.session.get(Offer, uuid.UUID(offer_id))
        assert offer is not None
        return offer.claimed


def _run(app: Flask, job: Any, when: datetime | None = None) -> Any:
    with app.app_context():
        return job(iso(when) if when else None)


def test_the_schedules_are_registered() -> None:
    from rq import cron

    from workers.schedule import RUNS

    importlib.import_module("workers.cron")
    names = {entry["func"].__name__: entry for entry in cron._job_data_registry}
    # The scheduler writes their outbox rows every minute (workers/schedule.py)...
    assert names["write_due"]["interval"] == 60
    runs = {run.job.rpartition(".")[2]: run for run in RUNS}
    for name in ("expire_vouchers", "remind_expiring_vouchers", "fail_stuck_rewards"):
        # ... on the rewards queue, at their times; never queued by RQ's cron as well.
        assert runs[name].cron and runs[name].queue == "rewards", name
        assert name not in names


def test_unredeemed_vouchers_expire(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    kind = make_offer(client, admin, partner["id"], title="Swim", cost_points=30, stock=5,
                      points_back_on_expiry=True, voucher_valid_days=7)
    strict = make_offer(client, admin, partner["id"], title="Coffee", cost_points=20, stock=5,
                        voucher_valid_days=7)
    me = resident(client, app, points=100)
    swim = _issued(client, me.headers, kind["id"])
    coffee = _issued(client, me.headers, strict["id"])
    used = _issued(client, me.headers, strict["id"])
    assert client.post("/v1/partner/redemptions", json={"code": used["code"]},
                       headers=till(partner)).status_code == 201
    assert available(client, me.headers) == 30

    # Not yet: nothing happens.
    assert _run(app, workers.rewards.expire_vouchers) == {
        "expired": 0, "points_returned": 0, "failed": 0}
    later = datetime.now(UTC) + timedelta(days=8)
    assert _run(app, workers.rewards.expire_vouchers, later) == {
        "expired": 2, "points_returned": 30, "failed": 0}
    assert reward_status(app, swim["id"]) == "expired"
    assert reward_status(app, coffee["id"]) == "expired"
    assert reward_status(app, used["id"]) == "redeemed"
    assert available(client, me.headers) == 60  # the swim's 30 came back; the coffee's did not
    assert (_claimed(app, kind["id"]), _claimed(app, strict["id"])) == (0, 1)
    assert postings(app, "refund") == 1
    ledger = client.get("/v1/me/ledger", headers=me.headers).json
    assert ledger[0]["kind"] == "refund" and ledger[0]["points"] == 30
    assert "expired unused" in ledger[0]["reason"]
    shown = client.get(f"/v1/me/rewards/{swim['id']}", headers=me.headers).json
    assert shown["status"] == "expired"
    gone = client.post("/v1/partner/redemptions", json={"code": swim["code"]},
                       headers=till(partner))
    assert gone.status_code == 410 and gone.json["message"] == "This voucher has expired."

    # A second run (or two overlapping) changes nothing.
    assert _run(app, workers.rewards.expire_vouchers, later)["expired"] == 0
    assert available(client, me.headers) == 60 and postings(app, "refund") == 1
    ledger_sound(app)


def test_reminder_three_days_before_expiry_once(client: FlaskClient, app: Flask,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds")
    month = make_offer(client, admin, partner["id"], title="Free swim", cost_points=10,
                       voucher_valid_days=30, translations={"cy": {"title": "Nofio am ddim"}})
    short = make_offer(client, admin, partner["id"], title="Today only", cost_points=10,
                       voucher_valid_days=2)
    me = resident(client, app, points=100, locale="cy")
    swim = _issued(client, me.headers, month["id"])
    _issued(client, me.headers, short["id"])
    with app.app_context():
        reward = db.session.get(Reward, uuid.UUID(swim["id"]))
        expires_at = reward.expires_at
    card_only = card_member(app, "6335 1234 5678 9012", points=50)
    with app.app_context():
        from rewards.models import Member
        from rewards.vouchers import claim, issue

        member = db.session.get(Member, uuid.UUID(card_only))
        monkeypatch.setattr(rewards.jobs, "dispatch_pending", rewards.jobs.discard_pending)
        pending = claim(db.session, member, uuid.UUID(month["id"]))
        issue(db.session, pending.id)
        db.session.commit()
        card_reward = str(pending.id)

    def reminders() -> list[Any]:
        return [m for m in app.extensions.get("sent_mail", [])
                if m["Subject"].startswith(("Your voucher expires soon",
                                            "Mae eich taleb yn dod i ben"))]

    assert _run(app, workers.rewards.remind_expiring_vouchers,
                expires_at - timedelta(days=4)) == {"sent": 0, "failed": 0}
    # The mail server is down at the first try: the reminder is not lost.
    monkeypatch.setattr(rewards.notify, "send_mail", _broken_mail)
    when = expires_at - timedelta(days=2, hours=23)
    assert _run(app, workers.rewards.remind_expiring_vouchers, when) == {"sent": 0, "failed": 1}
    monkeypatch.undo()
    assert _run(app, workers.rewards.remind_expiring_vouchers, when) == {"sent": 1, "failed": 0}
    assert _run(app, workers.rewards.remind_expiring_vouchers, when) == {"sent": 0, "failed": 0}
    sent = reminders()
    assert len(sent) == 1
    # In the member's language (their saved locale is Welsh), all of it.
    assert sent[0]["To"] == me.email
    assert sent[0]["Subject"] == "Mae eich taleb yn dod i ben cyn bo hir: Nofio am ddim"
    assert "Cod: " + swim["code"] in sent[0].get_content()
    # When it ends, in the scheme's time zone and saying which.
    local = expires_at.replace(tzinfo=expires_at.tzinfo or UTC).astimezone(
        ZoneInfo(app.config["SCHEME_TIMEZONE"]))
    assert f"am {local:%H:%M %Z}." in sent[0].get_content()
    assert local.strftime("%Z") in ("GMT", "BST") and " UTC" not in sent[0].get_content()
    assert swim["code"] in sent[0].get_content()
    with app.app_context():
        reminded = dict(db.session.execute(select(Reward.id, Reward.expiry_reminded_at)).all())
    assert reminded[uuid.UUID(swim["id"])] is not None
    assert reminded[uuid.UUID(card_reward)] is not None  # looked at, nobody to mail
    assert sum(1 for value in reminded.values() if value is None) == 1  # the 2-day voucher


def _broken_mail(*args: Any, **kwargs: Any) -> None:
    raise OSError("mail server unreachable")


def test_rewards_stuck_pending_are_failed(client: FlaskClient, app: Flask,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewards.jobs, "dispatch_pending", rewards.jobs.discard_pending)
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10, stock=3)
    me = resident(client, app, points=10)
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me.headers)
    reward_id = claimed.json["id"]
    later = datetime.now(UTC) + timedelta(hours=7)

    assert _run(app, workers.rewards.fail_stuck_rewards, later) == {"failed": 0}  # in outbox
    with app.app_context():
        db.session.execute(update(OutboxMessage).values(due_at=None, done_at=datetime.now(UTC)))
        db.session.commit()
    assert _run(app, workers.rewards.fail_stuck_rewards) == {"failed": 0}  # not stuck yet
    assert _run(app, workers.rewards.fail_stuck_rewards, later) == {"failed": 1}
    assert _run(app, workers.rewards.fail_stuck_rewards, later) == {"failed": 0}
    assert reward_status(app, reward_id) == "failed"
    assert available(client, me.headers) == 10
    assert _claimed(app, offer["id"]) == 0
    # A late job run finds it failed and issues nothing.
    with app.app_context():
        assert workers.rewards.issue_reward(reward_id) == "failed"
    assert postings(app, "capture") == 0
    ledger_sound(app)
