"""Closing an account (DELETE /v1/me) while the member's own requests are in flight: a
donation or claim that holds or waits for the member's spend lock, and a profile edit
committed after the erasure's caller read the member. No deadlock (no 5xx), no voucher
left live and no personal data left behind. PostgreSQL: SQLite lets one writer in at a
time, so none of these can interleave there."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.pool import NullPool

from rewards import donations
from rewards.erasure import erase_member
from rewards.extensions import db
from rewards.ledger import verify
from rewards.models import Member, Reward, utcnow

from .helpers import postgres_only
from .reward_support import admin_headers, make_offer, make_partner, resident

WAIT = 60  # seconds at most for another transaction to reach a lock wait; not a timing


def _lock_watch(app: Flask) -> Callable[[], None]:
    """A function that returns once another session of the test database waits for a
    row lock. Made before the caller's transaction begins, and watching on a connection
    of its own: pushing and leaving an app context meanwhile would end the caller's
    session, and its transaction with it."""
    with app.app_context():
        url = db.engine.url
    return lambda: _waiting_on_a_lock(url)


def _waiting_on_a_lock(url: Any, count: int = 1) -> None:
    engine = create_engine(url, poolclass=NullPool)
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                waiting = connection.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"))
            if waiting >= count:
                return
            time.sleep(0.02)
    finally:
        engine.dispose()
    raise AssertionError("no transaction came to wait for the lock")


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = target()
        except BaseException as error:  # reported by the test
            out["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_donation_holding_the_spend_lock_and_an_erasure_do_not_deadlock(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The donation has locked the member's account and is about to write its posting
    (which references the member's row) when the erasure starts. The erasure used to
    lock the member's row first and then wait for the account (to refund an issued
    voucher): each waited for the other and PostgreSQL failed one of them (a 503 or
    500). Now the erasure waits for the account first, and both finish."""
    postgres_only(app, "row locks; SQLite serialises writers")
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    charity = make_partner(client, admin, kind="charity")
    offer = make_offer(client, admin, partner["id"], cost_points=10)
    me = resident(client, app, points=50)
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me.headers)
    assert claimed.status_code == 202, claimed.json
    assert client.get(f"/v1/me/rewards/{claimed.json['id']}",
                      headers=me.headers).json["status"] == "issued"

    waiting = _lock_watch(app)
    locked, go = threading.Event(), threading.Event()
    real_expire = donations.expire_member

    def held_here(session: Any, member_id: Any, now: Any) -> Any:
        locked.set()  # the account's lock is held: let the erasure start, then go on
        assert go.wait(WAIT)
        return real_expire(session, member_id, now)

    monkeypatch.setattr(donations, "expire_member", held_here)
    donating, donated = _in_thread(lambda: app.test_client().post(
        "/v1/me/donations", json={"charity_id": charity["id"], "points": 5},
        headers=me.headers))
    assert locked.wait(WAIT)
    erasing, erased = _in_thread(lambda: app.test_client().delete("/v1/me",
                                                                  headers=me.headers))
    waiting()
    go.set()
    donating.join(WAIT)
    erasing.join(WAIT)
    assert "error" not in donated and "error" not in erased, (donated, erased)
    assert donated["value"].status_code == 201, donated["value"].json
    assert erased["value"].status_code == 204, erased["value"].json
    with app.app_context():
        member = db.session.get(Member, uuid.UUID(me.id))
        assert member is not None and member.erased_at is not None
        assert db.session.scalar(select(Reward.status)) == "cancelled"
        assert verify(db.session) == []


def test_a_claim_that_waited_for_the_erasure_is_refused(
        client: FlaskClient, app: Flask) -> None:
    """The claim's token was checked before the erasure committed, and the claim waited
    for the erasure's locks. It used to go on once they were released: a live voucher
    and spent points on an account that no longer exists. It is now refused (401)."""
    postgres_only(app, "row locks; SQLite serialises writers")
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer = make_offer(client, admin, partner["id"], cost_points=10)
    me = resident(client, app, points=50)
    waiting = _lock_watch(app)
    with app.app_context():
        session = db.session
        erase_member(session, session.get(Member, uuid.UUID(me.id)), utcnow())
        claiming, claimed = _in_thread(lambda: app.test_client().post(
            "/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me.headers))
        waiting()
        session.commit()
    claiming.join(WAIT)
    assert "error" not in claimed, claimed
    assert claimed["value"].status_code == 401, claimed["value"].json
    assert claimed["value"].json["reason"] == "session_ended"
    with app.app_context():
        assert db.session.scalar(select(func.count(Reward.id))) == 0
        assert verify(db.session) == []


def test_a_donation_that_waited_for_the_erasure_is_refused(
        client: FlaskClient, app: Flask) -> None:
    postgres_only(app, "row locks; SQLite serialises writers")
    admin = admin_headers(client, app)
    charity = make_partner(client, admin, kind="charity")
    me = resident(client, app, points=50)
    waiting = _lock_watch(app)
    with app.app_context():
        session = db.session
        erase_member(session, session.get(Member, uuid.UUID(me.id)), utcnow())
        donating, donated = _in_thread(lambda: app.test_client().post(
            "/v1/me/donations", json={"charity_id": charity["id"], "points": 5},
            headers=me.headers))
        waiting()
        session.commit()
    donating.join(WAIT)
    assert "error" not in donated, donated
    assert donated["value"].status_code == 401, donated["value"].json
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(donations.Donation)) == 0


def test_erasure_overwrites_a_profile_change_made_after_the_member_was_read(
        client: FlaskClient, app: Flask) -> None:
    """The caller read the member (display name unset), then a profile edit committed,
    then the erasure ran. Setting the name to None on the stale entity changed nothing
    in its eyes, so the name written meanwhile stayed on the erased account."""
    postgres_only(app, "a second connection's commit while the first one's read is open")
    me = resident(client, app)
    with app.app_context():
        session = db.session
        member = session.get(Member, uuid.UUID(me.id))
        assert member is not None and member.display_name is None
        with db.engine.begin() as other:
            other.execute(update(Member).where(Member.id == member.id)
                          .values(display_name="Amira Khan", birth_year=1990))
        erase_member(session, member, utcnow())
        session.commit()
    with app.app_context():
        member = db.session.get(Member, uuid.UUID(me.id))
        assert member is not None
        assert (member.display_name, member.birth_year, member.email) == (None, None, None)
