"""`points_earned` notices: one per member per awarded batch (not one per action), on the
channels the member chose, in their language; duplicates and rejected items tell no one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

import workers.notices
from rewards.notice_text import TEXTS, long_date, mail_language, text

from .helpers import bearer, build_scheme, iso, link, signed_post, staff_token, tap
from .reward_support import card_member, resident
from .test_flow import _daytime
from .ways_in import add_type_and_rule

ANNA_CARD, BRYN_CARD = "6335 0012 3456 7001", "6335 0012 3456 7002"


def _sent(app: Flask) -> tuple[list, list]:
    return app.extensions.setdefault("sent_mail", []), app.extensions.setdefault("sent_push", [])


def test_one_points_notice_per_member_per_batch(client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app)
    anna = resident(client, app)
    bryn = resident(client, app, locale="cy")
    assert link(client, app, anna.headers, ANNA_CARD).status_code == 201
    assert link(client, app, bryn.headers, BRYN_CARD).status_code == 201
    assert client.post("/v1/me/devices", json={"platform": "fcm", "token": "anna-phone-0001"},
                       headers=anna.headers).status_code == 201
    # Points notices are pushed by default and mailed only on request: Anna and Bryn ask.
    assert client.get("/v1/me/notification-preferences", headers=anna.headers
                      ).json["points_earned"] == {"push": True, "email": False}
    for who in (anna, bryn):
        assert client.patch("/v1/me/notification-preferences", headers=who.headers,
                            json={"points_earned": {"email": True}}).status_code == 200
    mails, pushes = _sent(app)
    mails.clear()
    pushes.clear()

    batch = {"items": [tap("a1", ANNA_CARD, _daytime(1, 9)),
                       tap("a2", ANNA_CARD, _daytime(1, 11)),
                       tap("a3", ANNA_CARD, _daytime(1, 13)),
                       tap("b1", BRYN_CARD, _daytime(1, 10)),
                       tap("x1", "6335 0099 9999 9999", _daytime(1, 10)),
                       tap("a4", ANNA_CARD, _daytime(1, 15), distance_km=0.2)]}
    response = signed_post(client, scheme.source, batch)
    assert response.status_code == 200, response.json
    assert [r["points"] for r in response.json["results"] if r["status"] == "accepted"] == [
        10, 10, 10, 10, 0]

    by_address = {message["To"]: message for message in mails}
    assert sorted(by_address) == sorted([anna.email, bryn.email])
    assert by_address[anna.email]["Subject"] == "You earned 30 points"
    assert "for 3 action(s)" in by_address[anna.email].get_content()
    assert by_address[bryn.email]["Subject"] == "Rydych wedi ennill 10 pwynt"
    assert len(pushes) == 1  # only Anna has a phone
    platform, token, message = pushes[0]
    assert (platform, token) == ("fcm", "anna-phone-0001")
    assert message.title == "You earned 30 points"
    assert message.data == {"kind": "points_earned", "points": "30"}

    # The same batch again: every item a duplicate, nobody earned anything new.
    again = signed_post(client, scheme.source, batch)
    assert {r["status"] for r in again.json["results"]} == {"duplicate", "rejected"}
    assert (len(mails), len(pushes)) == (2, 1)

    # Choices are honoured per kind and channel.
    chose = client.patch("/v1/me/notification-preferences", headers=anna.headers,
                         json={"points_earned": {"email": False}})
    assert chose.status_code == 200, chose.json
    client.patch("/v1/me/notification-preferences", headers=bryn.headers,
                 json={"points_earned": {"email": False, "push": False}})
    later = {"items": [tap("a5", ANNA_CARD, _daytime(2, 10)),
                       tap("b2", BRYN_CARD, _daytime(2, 10))]}
    answer = signed_post(client, scheme.source, later)
    assert [r["points"] for r in answer.json["results"]] == [10, 10], answer.json
    assert len(mails) == 2 and len(pushes) == 2
    assert pushes[-1][2].title == "You earned 10 points"


def test_notice_texts_are_in_the_members_language() -> None:
    assert mail_language("cy") == "cy"
    assert mail_language(None, "cy-GB,en;q=0.5") == "cy"
    assert mail_language("en", "cy") == "en"  # the saved choice wins
    assert mail_language("fr") == "en"
    moment = datetime(2026, 3, 5, tzinfo=UTC)
    assert long_date(moment, "cy") == "05 Mawrth 2026"
    assert long_date(moment, "en") == "05 March 2026"
    subject, body = text("voucher_ready", "cy", title="Te", partner="Caffi", code="ABC",
                         reference="", expires=long_date(moment, "cy"), scheme="Gwobrau")
    assert subject == "Mae eich taleb yn barod: Te" and "cyn 05 Mawrth 2026" in body
    for name, versions in TEXTS.items():
        assert set(versions) == {"en", "cy"}, name


def test_mail_is_in_the_members_language(client: FlaskClient, app: Flask) -> None:
    mails, _ = _sent(app)
    # Before there is an account: the language the app asked for.
    asked = client.post("/v1/auth/otp", json={"email": "newcomer@example.org"},
                        headers={"Accept-Language": "cy-GB, en;q=0.5"})
    assert asked.status_code == 202, asked.json
    assert mails[-1]["Subject"].startswith("Eich cod ")
    assert "Eich cod mewngofnodi yw" in mails[-1].get_content()
    # A member's saved language wins over the request's.
    welsh = resident(client, app, locale="cy")
    client.post("/v1/auth/otp", json={"email": welsh.email}, headers={"Accept-Language": "en"})
    assert mails[-1]["Subject"].startswith("Eich cod ")
    changed = client.post("/v1/me/email", json={"email": "newer@example.org"},
                          headers=welsh.headers)
    assert changed.status_code == 202, changed.json
    assert mails[-1]["Subject"].startswith("Cadarnhewch eich cyfeiriad newydd")
    english = resident(client, app)
    client.post("/v1/auth/otp", json={"email": english.email})
    assert mails[-1]["Subject"].startswith("Your ")


def test_an_event_claim_is_a_batch_of_one(client: FlaskClient, app: Flask) -> None:
    admin = bearer(staff_token(client, app, "admin"))
    add_type_and_rule(client, admin, "volunteer_session", "volunteering",
                      "action.attributes.hours * 10")
    now = datetime.now(UTC)
    event = client.post("/v1/admin/events", headers=admin, json={
        "name": "Beach clean", "action_type": "volunteer_session",
        "starts_at": iso(now - timedelta(hours=1)), "ends_at": iso(now + timedelta(hours=2)),
        "attributes": {"hours": 2}}).json
    member = resident(client, app)
    assert client.patch("/v1/me/notification-preferences", headers=member.headers,
                        json={"points_earned": {"email": True}}).status_code == 200
    mails, _ = _sent(app)
    before = len(mails)
    claimed = client.post("/v1/me/claims", json={"code": event["code"]}, headers=member.headers)
    assert claimed.status_code == 201, claimed.json
    assert [m["Subject"] for m in mails[before:]] == ["You earned 20 points"]
    # The same claim again (a retry with its key, or a second try) tells no one twice.
    again = client.post("/v1/me/claims", json={"code": event["code"]}, headers=member.headers)
    assert again.status_code == 409
    assert len(mails) == before + 1


def test_the_job_skips_members_with_nowhere_to_be_told(client: FlaskClient, app: Flask) -> None:
    told = resident(client, app)
    assert client.patch("/v1/me/notification-preferences", headers=told.headers,
                        json={"points_earned": {"email": True}}).status_code == 200
    silent = resident(client, app)  # no device, and points are not mailed unless asked
    card_only = card_member(app, "6335 0012 3456 7009")
    mails, _ = _sent(app)
    before = len(mails)
    with app.app_context():
        summary = workers.notices.points_earned({told.id: [12, 2], card_only: [5, 1],
                                                 silent.id: [4, 1], str(uuid.uuid4()): [3, 1]})
    assert summary == {"sent": 1, "skipped": 3, "failed": 0}
    assert [m["To"] for m in mails[before:]] == [told.email]
    assert "12" in mails[-1]["Subject"]


def test_an_attempt_stopped_part_way_tells_nobody_twice(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job takes members off its own outbox row before telling them: an attempt
    stopped at its time limit (raised in it by the worker's timer, past any `except
    Exception`) is followed by one that tells only those not reached yet."""
    from sqlalchemy import select

    from rewards import jobs
    from rewards.extensions import db
    from rewards.models import OutboxMessage

    people = [resident(client, app) for _ in range(12)]
    for who in people:
        assert client.patch("/v1/me/notification-preferences", headers=who.headers,
                            json={"points_earned": {"email": True}}).status_code == 200
    told: list[str] = []
    real = workers.notices.deliver

    def slow_relay(session: object, notice: object) -> None:
        if len(told) == 7:
            told.append("stopped")  # the 8th send is under way when the timer fires
            raise jobs.AttemptOverran("the attempt ran longer than its limit")
        real(session, notice)
        told.append(notice.email)  # type: ignore[attr-defined]

    monkeypatch.setattr(workers.notices, "deliver", slow_relay)
    with app.app_context():
        message = jobs.enqueue("workers.notices.points_earned",
                               earned={who.id: [10, 1] for who in people})
        db.session.commit()
        message_id = message.id

    def attempt() -> object:
        with app.app_context():
            kwargs = dict(db.session.get(OutboxMessage, message_id).kwargs)  # as the relay
            return jobs.run_attempt(message_id, workers.notices.points_earned.__wrapped__,
                                    (), kwargs)

    with pytest.raises(jobs.AttemptOverran):
        attempt()
    with app.app_context():
        row = db.session.get(OutboxMessage, message_id)
        assert (row.attempts, row.done_at) == (1, None) and row.due_at is not None
        assert "AttemptOverran" in row.last_error
    summary = attempt()
    addresses = [address for address in told if address != "stopped"]
    assert len(addresses) == len(set(addresses)) == 11  # the one under way is not retried
    assert summary == {"sent": 11 - 7, "skipped": 0, "failed": 0}
    with app.app_context():
        assert db.session.scalar(select(OutboxMessage.done_at).where(
            OutboxMessage.id == message_id)) is not None


def test_the_workers_time_limit_is_not_caught_by_a_jobs_own_handlers() -> None:
    """RQ's timer raised an Exception, which a job's `except Exception` around a call
    that may fail caught: the attempt ran on past its lease."""
    import time

    from rq.timeouts import JobTimeoutException

    from rewards import jobs
    from workers.runner import ForkingOutboxWorker, OutboxWorker, _HardTimeLimit

    assert OutboxWorker.death_penalty_class is ForkingOutboxWorker.death_penalty_class \
        is _HardTimeLimit
    caught = []
    started = time.monotonic()
    with pytest.raises(jobs.AttemptOverran), _HardTimeLimit(1, JobTimeoutException):
        for _ in range(4):
            try:
                time.sleep(0.6)  # a slow relay, one send of many
            except Exception as error:  # noqa: BLE001 (what the jobs do)
                caught.append(error)
    assert caught == [] and time.monotonic() - started < 1.5
