"""What a resident's request costs the database, counted: the statements each hot
endpoint sends, the same for a member with two journeys as for one with twelve (no
statement per action, award or line). A regression here is a round trip added to
every request (bench/api.py measures what each one costs)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from rewards import jobs
from rewards.extensions import db

from .helpers import build_scheme
from .reward_support import till
from .test_resident_reads import _resident

# endpoint -> statements a request sends (SQLite's BEGIN IMMEDIATE not counted). On
# PostgreSQL the token's member and session ride on the view's one statement.
READS: dict[str, Any] = {
    # the token's member and session; every figure in one
    "/v1/me/balance": {"postgresql": 1, "sqlite": 2},
    # member; the page with its total
    "/v1/me/ledger?page_size=5": {"postgresql": 1, "sqlite": 2},
    # member; the page with its total (and on PostgreSQL each action's awards); elsewhere
    # the page's awards in one more
    "/v1/me/actions?page_size=5": {"postgresql": 1, "sqlite": 3},
    # member; the live offers with partners and the available points
    "/v1/offers": {"postgresql": 1, "sqlite": 2},
}
# the lock with the offer's terms (and the held points' account), on PostgreSQL carrying
# the token's member and session; then on PostgreSQL one statement testing the member's
# points and writing (stock, reward, posting, its lines, the voucher's job); elsewhere
# the member on its own, the member's points (expiry and balance), then five writes
CLAIM = {"postgresql": 2, "sqlite": 8}
# the till's key; on PostgreSQL one statement redeems (update, record, the offer's
# terms), elsewhere three
REDEMPTION = {"postgresql": 2, "sqlite": 4}


class Statements:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def __len__(self) -> int:
        return len(self.sent)


@contextmanager
def counted() -> Iterator[Statements]:
    seen = Statements()

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.split(None, 1)[0].upper() not in ("BEGIN", "PRAGMA"):
            seen.sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", note)


@pytest.mark.parametrize("path", sorted(READS))
def test_a_read_costs_the_same_statements_whatever_the_history(
        client: FlaskClient, app: Flask, path: str) -> None:
    scheme = build_scheme(client, app, cost_points=10)
    short = _resident(client, app, scheme, "costs1@example.org", "633500000011", 2)
    long = _resident(client, app, scheme, "costs2@example.org", "633500000012", 12)
    for headers in (short, long):
        assert client.get(path, headers=headers).status_code == 200  # warm: pool, caches
        with counted() as sent:
            answer = client.get(path, headers=headers)
        assert answer.status_code == 200, answer.json
        expected = READS[path]
        if isinstance(expected, dict):
            expected = expected[db.dialect]
        assert len(sent) == expected, sent.sent


def _ended_logins(client: FlaskClient, app: Flask, scheme: Any, prefix: str, cards: str
                  ) -> dict[str, dict[str, str]]:
    """A resident's headers for each way a login ends: logout, past its time, the
    member erased."""
    from sqlalchemy import update

    from rewards.models import Member
    from rewards.models.base import utcnow
    from rewards.models.login import LoginSession

    ended = {}
    for n, how in enumerate(("logout", "expired", "erased")):
        email = f"{prefix}{n}@example.org"
        headers = _resident(client, app, scheme, email, f"{cards}{n}", 3)
        if how == "logout":
            assert client.post("/v1/auth/logout", headers=headers).status_code == 204
        with app.app_context():
            member = db.session.scalar(select(Member.id).where(Member.email == email))
            if how == "expired":
                db.session.execute(update(LoginSession).where(
                    LoginSession.member_id == member).values(expires_at=utcnow()))
            if how == "erased":
                db.session.execute(update(Member).where(Member.id == member).values(
                    erased_at=utcnow()))
            db.session.commit()
        ended[how] = headers
    return ended


def _refused(answer: Any, how: str) -> None:
    assert answer.status_code == 401, (how, answer.json)
    assert set(answer.json) == {"code", "status", "message", "reason"}, answer.json
    assert "log in again" in answer.json["message"]


@pytest.mark.parametrize("path", sorted(READS) + ["/v1/offers?category=leisure"])
def test_a_read_answers_nothing_once_the_tokens_login_has_ended(
        client: FlaskClient, app: Flask, path: str) -> None:
    """The caller's check rides on the read's statement: a token whose login ended
    (logout, or past its time) or whose member was erased gets 401 and no data."""
    scheme = build_scheme(client, app, cost_points=10)
    for how, headers in _ended_logins(client, app, scheme, "ended", "63350000002").items():
        _refused(client.get(path, headers=headers), how)


def test_a_claim_by_a_login_that_has_ended_holds_nothing(
        client: FlaskClient, app: Flask) -> None:
    """A claim's check rides on its first statement, the member's lock: a token whose
    login ended gets 401 and nothing is written (no reward, no hold, no stock taken,
    no idempotency record), with or without an Idempotency-Key, and a bad body is
    still 401 first."""
    from rewards.models import IdempotencyRecord, Offer, Posting, Reward

    scheme = build_scheme(client, app, cost_points=10, stock=5)
    ended = _ended_logins(client, app, scheme, "claims", "63350000003")

    def written() -> tuple[int, int, int, int]:
        with app.app_context():
            return (db.session.scalar(select(func.count()).select_from(Reward)),
                    db.session.scalar(select(func.count()).select_from(Posting).where(
                        Posting.kind == "hold")),
                    db.session.scalar(select(Offer.claimed).where(
                        Offer.id == uuid.UUID(scheme.offer["id"]))),
                    db.session.scalar(select(func.count()).select_from(IdempotencyRecord)))

    before = written()
    offer = {"offer_id": scheme.offer["id"]}
    for how, headers in ended.items():
        _refused(client.post("/v1/me/rewards", json=offer, headers=headers), how)
        _refused(client.post("/v1/me/rewards", json=offer,
                             headers={**headers, "Idempotency-Key": f"k-{how}"}), how)
        _refused(client.post("/v1/me/rewards", json={"offer_id": "nope"},
                             headers=headers), how)
    assert written() == before
    # A live login claims as before.
    live = _resident(client, app, scheme, "claims-live@example.org", "633500000099", 3)
    assert client.post("/v1/me/rewards", json=offer, headers=live).status_code == 202
    assert written()[:3] == (before[0] + 1, before[1] + 1, before[2] + 1)


def test_a_claim_and_a_redemption_cost_a_fixed_number_of_statements(
        client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    scheme = build_scheme(client, app, cost_points=10)
    me = _resident(client, app, scheme, "costs3@example.org", "633500000013", 4)
    offer = {"offer_id": scheme.offer["id"]}
    assert client.post("/v1/me/rewards", json=offer, headers=me).status_code == 202
    # The voucher's job runs in-process after the request here (no Redis); count the
    # request's own statements only.
    monkeypatch.setattr(jobs, "dispatch_pending", lambda *args, **kwargs: None)
    with counted() as sent:
        claimed = client.post("/v1/me/rewards", json=offer, headers=me)
    assert claimed.status_code == 202, claimed.json
    assert len(sent) == CLAIM[db.dialect], sent.sent
    monkeypatch.undo()
    jobs.dispatch_pending()  # nothing left behind by the uncounted run
    rewards = client.get("/v1/me/rewards", headers=me).json
    code = next(reward["code"] for reward in rewards if reward["code"])
    with counted() as sent:
        redeemed = client.post("/v1/partner/redemptions", json={"code": code},
                               headers=till(scheme.partner))
    assert redeemed.status_code == 201, redeemed.json
    assert len(sent) == REDEMPTION[db.dialect], sent.sent


# after the response: nothing. The claim wrote its job's row marked handed over (the
# thread only puts its id on the queue's list); other jobs' rows are marked by one
# UPDATE ... RETURNING.
HANDOVER = 0


def test_a_claims_job_is_handed_over_to_redis_without_a_statement(
        client: FlaskClient, app: Flask, rq_mode: str) -> None:
    from redis import Redis
    from rq.job import Job

    from rewards.handover import handover
    from rewards.models import OutboxMessage

    scheme = build_scheme(client, app, cost_points=10)
    me = _resident(client, app, scheme, "costs4@example.org", "633500000014", 4)
    offer = {"offer_id": scheme.offer["id"]}
    assert client.post("/v1/me/rewards", json=offer, headers=me).status_code == 202
    assert handover.wait()
    with counted() as sent:
        claimed = client.post("/v1/me/rewards", json=offer, headers=me)
        assert handover.wait()
    assert claimed.status_code == 202, claimed.json
    assert len(sent) == CLAIM[db.dialect] + HANDOVER, sent.sent
    with app.app_context():
        [row] = [message for message in db.session.query(OutboxMessage)
                 if message.kwargs.get("reward_id") == claimed.json["id"]]
        assert row.dispatched_at is not None and row.attempts == 0
    # Only the id went to Redis, onto the queue's list: the worker builds the job.
    connection = Redis.from_url(rq_mode)
    with app.app_context():
        assert str(row.id).encode() in connection.lrange(jobs.queue_key("rewards"), 0, -1)
    assert not Job.exists(str(row.id), connection=connection)
