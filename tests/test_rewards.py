"""Claiming rewards and redeeming vouchers through HTTP: idempotent claims, refusals,
partner checks and redemptions, the issuing job, and the ledger under concurrency."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

import rewards.jobs
import workers.rewards
from rewards import vouchers
from rewards.extensions import db
from rewards.ledger import member_balances, verify
from rewards.models import (
    IdempotencyRecord,
    Offer,
    OutboxMessage,
    Posting,
    Redemption,
    Reward,
    StaffUser,
)

from .helpers import Scheme, at_once, bearer, build_scheme, link, member_token, signed_post, tap

COST = 10  # build_scheme's rule gives 10 points for a daytime bus journey


def _daytime(days_ago: int, hour: int) -> datetime:
    local = datetime.now(ZoneInfo("Europe/London")) - timedelta(days=days_ago)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).astimezone(UTC)


# -- helpers ----------------------------------------------------------------------

@contextmanager
def database(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield db.session


_residents = iter(range(1, 10_000))


def resident(client: FlaskClient, app: Flask, scheme: Scheme, journeys: int) -> dict[str, str]:
    """A resident who logged in, linked a travel card and made `journeys` daytime bus
    journeys (10 points each, at most 4 a day under the rule's cap)."""
    n = next(_residents)
    headers = bearer(member_token(client, app, f"resident{n}@example.org"))
    card = f"6335{n:012d}"
    linked = link(client, app, headers, card)
    assert linked.status_code == 201, linked.json
    if journeys:
        items = [tap(f"{card}-{i}", card, _daytime(1 + i // 4, 9 + i % 4))
                 for i in range(journeys)]
        sent = signed_post(client, scheme.source, {"items": items})
        assert sent.status_code == 200, sent.json
        assert [r["status"] for r in sent.json["results"]] == ["accepted"] * journeys
    assert available(client, headers) == COST * journeys
    return headers


def available(client: FlaskClient, headers: dict[str, str]) -> int:
    response = client.get("/v1/me/balance", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["available"]


def member_id(client: FlaskClient, headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(client.get("/v1/me", headers=headers).json["id"])


def counts(app: Flask) -> dict[str, int]:
    with database(app) as session:
        def count(column: Any, *where: Any) -> int:
            return int(session.scalar(select(func.count(column)).where(*where)) or 0)

        return {
            "rewards": count(Reward.id),
            "holds": count(Posting.id, Posting.kind == "hold"),
            "captures": count(Posting.id, Posting.kind == "capture"),
            "releases": count(Posting.id, Posting.kind == "release"),
            "postings": count(Posting.id),
            "redemptions": count(Redemption.id),
            "idempotency_keys": count(IdempotencyRecord.id),
            "claimed": int(session.scalar(select(func.sum(Offer.claimed))) or 0),
        }


def offer_claimed(app: Flask, offer_id: str) -> int:
    """How many of the offer are claimed, as staff see it (an offer with a stock counts
    on its row, an unlimited one from its rewards: tests/test_unlimited_offers.py)."""
    from rewards.catalogue import claims_of

    with app.app_context():
        offer = db.session.get(Offer, uuid.UUID(offer_id))
        assert offer is not None
        return claims_of(offer)


def reward_row(app: Flask, reward_id: str) -> dict[str, Any]:
    with database(app) as session:
        reward = session.get(Reward, uuid.UUID(reward_id))
        assert reward is not None
        return {"status": reward.status, "code": reward.code, "member_id": reward.member_id,
                "failure_reason": reward.failure_reason}


def assert_ledger_sound(app: Flask) -> None:
    with database(app) as session:
        assert verify(session) == []


def claim(client: FlaskClient, headers: dict[str, str], offer_id: Any,
          key: str | None = None) -> Any:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return client.post("/v1/me/rewards", json={"offer_id": str(offer_id)},
                       headers={**headers, **extra})


def issued_code(client: FlaskClient, headers: dict[str, str], offer_id: str) -> tuple[str, str]:
    """Claim an offer (the voucher is issued in-process at once): (reward id, code)."""
    claimed = claim(client, headers, offer_id)
    assert claimed.status_code == 202, claimed.json
    reward = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=headers).json
    assert reward["status"] == "issued", reward
    return reward["id"], reward["code"]


def together(app: Flask, count: int,
             send: Callable[[FlaskClient, int], Any]) -> list[tuple[int, Any]]:
    """Run `send` in `count` threads released at the same moment, each with its own
    test client; returns (status code, JSON body) per thread, in thread order."""
    return [(response.status_code, response.get_json()) for response in at_once(app, count, send)]


def no_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave claimed rewards `pending`: the outbox is written but not run after commit."""
    monkeypatch.setattr(rewards.jobs, "dispatch_pending", rewards.jobs.discard_pending)


# -- idempotency --------------------------------------------------------------------

def test_claim_retried_with_the_same_key_is_answered_once(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=COST)
    me = resident(client, app, scheme, journeys=3)
    offer_id = scheme.offer["id"]

    first = claim(client, me, offer_id, key="claim-abc")
    assert first.status_code == 202, first.json
    assert first.json["status"] == "pending"
    again = claim(client, me, offer_id, key="claim-abc")
    assert again.status_code == 202
    assert again.json["id"] == first.json["id"]
    assert again.json == first.json
    assert again.headers.get("Idempotent-Replayed") == "true"
    # The same JSON written differently is the same request.
    reordered = client.post("/v1/me/rewards", data=f'{{ "offer_id" : "{offer_id}" }}',
                            content_type="application/json",
                            headers={**me, "Idempotency-Key": "claim-abc"})
    assert reordered.status_code == 202, reordered.json
    assert reordered.json["id"] == first.json["id"]

    assert available(client, me) == 2 * COST
    after_first = counts(app)
    assert after_first["rewards"] == 1
    assert after_first["holds"] == 1
    assert after_first["idempotency_keys"] == 1
    assert offer_claimed(app, offer_id) == 1

    # Same key, another body: 422, and nothing moves.
    other_offer = client.post(
        "/v1/admin/offers",
        json={"partner_id": scheme.partner["id"], "title": "Cake", "cost_points": COST},
        headers=bearer(scheme.admin),
    )
    assert other_offer.status_code == 201, other_offer.json
    mismatch = claim(client, me, other_offer.json["id"], key="claim-abc")
    assert mismatch.status_code == 422, mismatch.json
    assert "Idempotency-Key" in mismatch.json["message"]
    assert available(client, me) == 2 * COST
    assert counts(app) == after_first

    # A new key is a new claim.
    second = claim(client, me, offer_id, key="claim-def")
    assert second.status_code == 202, second.json
    assert second.json["id"] != first.json["id"]
    assert available(client, me) == COST
    after_second = counts(app)
    assert (after_second["rewards"], after_second["holds"]) == (2, 2)
    assert after_second["idempotency_keys"] == 2

    # Another member's key of the same name does not collide with this member's.
    neighbour = resident(client, app, scheme, journeys=1)
    theirs = claim(client, neighbour, offer_id, key="claim-abc")
    assert theirs.status_code == 202, theirs.json
    assert theirs.json["id"] not in (first.json["id"], second.json["id"])
    assert reward_row(app, theirs.json["id"])["member_id"] == member_id(client, neighbour)
    assert available(client, neighbour) == 0
    assert available(client, me) == COST
    assert counts(app)["rewards"] == 3

    # A bad key is refused before anything happens.
    too_long = claim(client, me, offer_id, key="k" * 201)
    assert too_long.status_code == 422
    assert counts(app)["rewards"] == 3
    assert_ledger_sound(app)


@pytest.mark.parametrize("journeys", [1, 3], ids=["points-for-one", "points-for-three"])
def test_concurrent_retries_with_one_key_claim_once(client: FlaskClient, app: Flask,
                                                    journeys: int):
    scheme = build_scheme(client, app, cost_points=COST)
    me = resident(client, app, scheme, journeys=journeys)
    offer_id = scheme.offer["id"]

    answers = together(app, 10, lambda c, _: claim(c, me, offer_id, key="tap-tap-tap"))

    assert [status for status, _ in answers] == [202] * 10, answers
    ids = {body["id"] for _, body in answers}
    assert len(ids) == 1
    state = counts(app)
    assert state["rewards"] == 1
    assert state["holds"] == 1
    assert state["idempotency_keys"] == 1
    assert offer_claimed(app, offer_id) == 1
    assert available(client, me) == COST * (journeys - 1)
    assert reward_row(app, ids.pop())["status"] == "issued"
    assert_ledger_sound(app)


# -- concurrency: stock and balance ----------------------------------------------------

def test_concurrent_claims_never_oversell(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=COST, stock=3)
    members = [resident(client, app, scheme, journeys=1) for _ in range(10)]
    offer_id = scheme.offer["id"]

    answers = together(app, 10, lambda c, i: claim(c, members[i], offer_id, key=f"k{i}"))

    assert Counter(status for status, _ in answers) == {202: 3, 409: 7}, answers
    assert all(body["message"] == "Sold out." for status, body in answers if status == 409)
    state = counts(app)
    assert state["rewards"] == 3
    assert state["holds"] == 3
    assert offer_claimed(app, offer_id) == 3
    balances = sorted(available(client, headers) for headers in members)
    assert balances == [0] * 3 + [COST] * 7
    stock_left = client.get(f"/v1/offers/{offer_id}", headers=members[0]).json["stock_left"]
    assert stock_left == 0
    assert_ledger_sound(app)


def test_concurrent_claims_never_overspend(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=COST, stock=None)
    me = resident(client, app, scheme, journeys=2)
    offer_id = scheme.offer["id"]

    answers = together(app, 6, lambda c, i: claim(c, me, offer_id, key=f"spend-{i}"))

    assert Counter(status for status, _ in answers) == {202: 2, 409: 4}, answers
    refusals = [body["message"] for status, body in answers if status == 409]
    assert all(message.startswith("Not enough points") for message in refusals), refusals
    assert len({body["id"] for status, body in answers if status == 202}) == 2
    assert available(client, me) == 0
    state = counts(app)
    assert (state["rewards"], state["holds"]) == (2, 2)
    with database(app) as session:
        assert member_balances(session, member_id(client, me)).available == 0
    assert_ledger_sound(app)


# -- refusals ----------------------------------------------------------------------

def test_claims_refused_change_nothing(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=COST * 3, stock=10)
    me = resident(client, app, scheme, journeys=2)
    auth = bearer(scheme.admin)

    def refused(response: Any, status: int, *, offer_id: str | None = None) -> Any:
        assert response.status_code == status, response.json
        assert response.json["code"] == status
        assert available(client, me) == 2 * COST
        assert counts(app) == before
        if offer_id:
            assert offer_claimed(app, offer_id) == before_claimed[offer_id]
        return response.json

    before = counts(app)
    before_claimed = {scheme.offer["id"]: 0}

    poor = refused(claim(client, me, scheme.offer["id"], key="poor"), 409,
                   offer_id=scheme.offer["id"])
    assert poor["message"] == "Not enough points: this costs 30, you have 20."

    sold_out_offer = client.post(
        "/v1/admin/offers",
        json={"partner_id": scheme.partner["id"], "title": "Gone", "cost_points": 5,
              "stock": 0},
        headers=auth,
    ).json
    before_claimed[sold_out_offer["id"]] = 0
    sold_out = refused(claim(client, me, sold_out_offer["id"]), 409,
                       offer_id=sold_out_offer["id"])
    assert sold_out["message"] == "Sold out."

    unknown = refused(claim(client, me, uuid.uuid4(), key="unknown"), 404)
    assert unknown["message"] == "No such offer."

    for body in ({}, {"offer_id": "not-a-uuid"}, {"offer_id": None}, {"offer_id": 7}):
        invalid = refused(client.post("/v1/me/rewards", json=body, headers=me), 422)
        assert "offer_id" in invalid["errors"], invalid

    # Once per member: the second claim is refused even with points to spare.
    limited = client.post(
        "/v1/admin/offers",
        json={"partner_id": scheme.partner["id"], "title": "Museum entry",
              "cost_points": COST, "per_member_limit": 1},
        headers=auth,
    )
    assert limited.status_code == 201, limited.json
    assert limited.json["per_member_limit"] == 1
    limited_id = limited.json["id"]
    first = claim(client, me, limited_id, key="museum-1")
    assert first.status_code == 202, first.json
    assert available(client, me) == COST
    before = counts(app)
    assert before["rewards"] == 1
    before_claimed[limited_id] = 1
    limit = client.post("/v1/me/rewards", json={"offer_id": limited_id},
                        headers={**me, "Idempotency-Key": "museum-2"})
    assert limit.status_code == 409, limit.json
    assert limit.json["message"] == "You have claimed this offer as many times as allowed."
    assert available(client, me) == COST
    assert counts(app) == before
    assert offer_claimed(app, limited_id) == 1
    assert_ledger_sound(app)


# -- partners -----------------------------------------------------------------------

def test_partner_checks_and_redeems_vouchers(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=COST)
    me = resident(client, app, scheme, journeys=4)
    till = {"X-Api-Key": scheme.partner["api_key"]}
    reward_id, code = issued_code(client, me, scheme.offer["id"])

    # Checking redeems nothing, however often.
    for _ in range(2):
        check = client.get(f"/v1/partner/vouchers/{code}", headers=till)
        assert check.status_code == 200, check.json
        assert check.json["code"] == code
        assert check.json["status"] == "issued"
        assert check.json["valid"] is True
        assert check.json["offer"] == {"id": scheme.offer["id"], "title": "Flat white"}
        assert check.json["redeemed_at"] is None
    assert reward_row(app, reward_id)["status"] == "issued"
    assert counts(app)["redemptions"] == 0

    # Codes are typed at tills: any case, with spaces or dashes.
    typed = f"{code[:5].lower()}-{code[5:].lower()}"
    assert client.get(f"/v1/partner/vouchers/{typed}", headers=till).json["code"] == code

    # Another partner sees nothing; unknown codes are 404 too.
    other = client.post("/v1/admin/partners", json={"name": "Other Cafe", "kind": "business"},
                        headers=bearer(scheme.admin)).json
    other_till = {"X-Api-Key": other["api_key"]}
    assert client.get(f"/v1/partner/vouchers/{code}", headers=other_till).status_code == 404
    stolen = client.post("/v1/partner/redemptions", json={"code": code}, headers=other_till)
    assert stolen.status_code == 404
    assert client.get("/v1/partner/vouchers/ZZZZZZZZZZ", headers=till).status_code == 404
    unknown = client.post("/v1/partner/redemptions", json={"code": "ZZZZZZZZZZ"}, headers=till)
    assert unknown.status_code == 404
    assert unknown.json["code"] == 404
    assert client.post("/v1/partner/redemptions", json={"code": "-- --"},
                       headers=till).status_code == 404
    assert client.get(f"/v1/partner/vouchers/{code}").status_code == 401
    assert reward_row(app, reward_id)["status"] == "issued"
    assert counts(app)["redemptions"] == 0

    redeemed = client.post("/v1/partner/redemptions",
                           json={"code": f" {code[:3].lower()} {code[3:6]}-{code[6:]} "},
                           headers=till)
    assert redeemed.status_code == 201, redeemed.json
    assert redeemed.json["code"] == code
    assert redeemed.json["offer"]["id"] == scheme.offer["id"]
    assert reward_row(app, reward_id)["status"] == "redeemed"
    assert client.get(f"/v1/me/rewards/{reward_id}", headers=me).json["status"] == "redeemed"
    after = client.get(f"/v1/partner/vouchers/{code}", headers=till).json
    assert (after["status"], after["valid"]) == ("redeemed", False)
    assert after["redeemed_at"] is not None
    assert client.post("/v1/partner/redemptions", json={"code": code},
                       headers=till).status_code == 409

    # Expired: check says so, redeeming is 410 and changes nothing.
    late_id, late_code = issued_code(client, me, scheme.offer["id"])
    with database(app) as session:
        session.execute(update(Reward).where(Reward.id == uuid.UUID(late_id))
                        .values(expires_at=datetime.now(UTC) - timedelta(hours=1)))
        session.commit()
    late = client.get(f"/v1/partner/vouchers/{late_code}", headers=till)
    assert late.status_code == 200
    assert (late.json["status"], late.json["valid"]) == ("expired", False)
    gone = client.post("/v1/partner/redemptions", json={"code": late_code}, headers=till)
    assert gone.status_code == 410, gone.json
    assert gone.json["message"] == "This voucher has expired."
    assert reward_row(app, late_id)["status"] == "issued"
    assert client.get(f"/v1/me/rewards/{late_id}", headers=me).json["status"] == "expired"
    assert counts(app)["redemptions"] == 1

    # A partner's own user, logged in with a password, can check and redeem too.
    with database(app) as session:
        for email, partner in (("till@laynes.example", scheme.partner["id"]),
                               ("till@other.example", other["id"])):
            session.add(StaffUser(email=email, role="partner", partner_id=uuid.UUID(partner),
                                  password_hash=generate_password_hash("espresso please")))
        session.commit()

    def login(email: str) -> dict[str, str]:
        response = client.post("/v1/auth/login",
                               json={"email": email, "password": "espresso please"})
        assert response.status_code == 200, response.json
        assert response.json["role"] == "partner"
        return bearer(response.json["access_token"])

    staff_till = login("till@laynes.example")
    other_staff = login("till@other.example")
    user_id, user_code = issued_code(client, me, scheme.offer["id"])
    assert client.get(f"/v1/partner/vouchers/{user_code}", headers=other_staff).status_code == 404
    assert client.post("/v1/partner/redemptions", json={"code": user_code},
                       headers=other_staff).status_code == 404
    seen = client.get(f"/v1/partner/vouchers/{user_code}", headers=staff_till)
    assert seen.status_code == 200 and seen.json["valid"] is True
    done = client.post("/v1/partner/redemptions", json={"code": user_code}, headers=staff_till)
    assert done.status_code == 201, done.json
    assert reward_row(app, user_id)["status"] == "redeemed"
    with database(app) as session:
        redemptions = session.scalars(select(Redemption)).all()
        assert {(str(r.reward_id), str(r.partner_id)) for r in redemptions} == {
            (reward_id, scheme.partner["id"]), (user_id, scheme.partner["id"])}
    # A resident's token is not a partner's.
    assert client.get(f"/v1/partner/vouchers/{user_code}", headers=me).status_code == 403
    assert_ledger_sound(app)


def test_concurrent_redemptions_of_one_code(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=COST)
    me = resident(client, app, scheme, journeys=1)
    reward_id, code = issued_code(client, me, scheme.offer["id"])
    till = {"X-Api-Key": scheme.partner["api_key"]}

    answers = together(app, 20, lambda c, _: c.post("/v1/partner/redemptions",
                                                    json={"code": code}, headers=till))

    assert Counter(status for status, _ in answers) == {201: 1, 409: 19}, answers
    assert all(body["message"] == "This voucher has already been used."
               for status, body in answers if status == 409)
    assert counts(app)["redemptions"] == 1
    assert reward_row(app, reward_id)["status"] == "redeemed"
    assert client.get(f"/v1/me/rewards/{reward_id}", headers=me).json["status"] == "redeemed"
    assert_ledger_sound(app)


# -- the issuing job -------------------------------------------------------------------

def _pending_reward(client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch,
                    journeys: int = 1) -> tuple[Scheme, dict[str, str], str]:
    no_dispatch(monkeypatch)
    scheme = build_scheme(client, app, cost_points=COST)
    me = resident(client, app, scheme, journeys=journeys)
    claimed = claim(client, me, scheme.offer["id"], key="job")
    assert claimed.status_code == 202, claimed.json
    assert reward_row(app, claimed.json["id"])["status"] == "pending"
    assert available(client, me) == COST * (journeys - 1)
    with database(app) as session:
        outbox = session.scalars(select(OutboxMessage).where(
            OutboxMessage.job == "workers.rewards.issue_reward")).one()
        assert outbox.job == "workers.rewards.issue_reward"
        assert outbox.kwargs == {"reward_id": claimed.json["id"]}
    return scheme, me, claimed.json["id"]


def _voucher_mails(app: Flask) -> int:
    return sum(1 for m in app.extensions.get("sent_mail", [])
               if m["Subject"].startswith("Your voucher is ready"))


def test_issuing_twice_issues_one_voucher(client: FlaskClient, app: Flask,
                                          monkeypatch: pytest.MonkeyPatch):
    scheme, me, reward_id = _pending_reward(client, app, monkeypatch)

    with app.app_context():
        assert workers.rewards.issue_reward(reward_id) == "issued"
    first = reward_row(app, reward_id)
    assert first["status"] == "issued" and first["code"]
    with app.app_context():
        assert workers.rewards.issue_reward(reward_id) == "issued"
    assert reward_row(app, reward_id) == first
    state = counts(app)
    assert (state["holds"], state["captures"], state["releases"]) == (1, 1, 0)
    assert _voucher_mails(app) == 1
    assert client.get(f"/v1/me/rewards/{reward_id}", headers=me).json["code"] == first["code"]

    # Overlapping runs (a retry while the first is still going) change nothing either.
    answers: list[str] = []

    def run() -> None:
        with app.app_context():
            answers.append(workers.rewards.issue_reward(reward_id))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == ["issued"] * 4
    assert reward_row(app, reward_id) == first
    assert counts(app)["captures"] == 1
    assert _voucher_mails(app) == 1
    assert offer_claimed(app, scheme.offer["id"]) == 1
    assert_ledger_sound(app)


def test_issuing_that_keeps_failing_returns_the_points(client: FlaskClient, app: Flask,
                                                      monkeypatch: pytest.MonkeyPatch):
    scheme, me, reward_id = _pending_reward(client, app, monkeypatch, journeys=2)
    assert offer_claimed(app, scheme.offer["id"]) == 1

    def broken(session: Session, rid: uuid.UUID) -> Reward | None:
        raise RuntimeError("voucher printer on fire")

    monkeypatch.setattr(vouchers, "issue", broken)

    # A retry is still to come: the reward waits, the points stay held.
    monkeypatch.setattr(rewards.jobs, "last_attempt", lambda: False)
    with app.app_context(), pytest.raises(RuntimeError):
        workers.rewards.issue_reward(reward_id)
    assert reward_row(app, reward_id)["status"] == "pending"
    assert available(client, me) == COST
    assert counts(app)["releases"] == 0

    # The last attempt fails too: the reward is failed, points and stock come back.
    monkeypatch.setattr(rewards.jobs, "last_attempt", lambda: True)
    with app.app_context(), pytest.raises(RuntimeError):
        workers.rewards.issue_reward(reward_id)
    failed = reward_row(app, reward_id)
    assert failed["status"] == "failed"
    assert failed["code"] is None
    assert "voucher printer on fire" in failed["failure_reason"]
    assert available(client, me) == 2 * COST
    state = counts(app)
    assert (state["holds"], state["captures"], state["releases"]) == (1, 0, 1)
    assert offer_claimed(app, scheme.offer["id"]) == 0
    shown = client.get(f"/v1/me/rewards/{reward_id}", headers=me).json
    assert (shown["status"], shown["code"]) == ("failed", None)
    ledger = client.get("/v1/me/ledger", headers=me).json
    assert sum(line["points"] for line in ledger) == 2 * COST
    assert sorted(line["kind"] for line in ledger) == ["earn", "earn", "hold", "release"]

    # A late retry after the failure issues nothing and releases nothing twice.
    monkeypatch.undo()
    no_dispatch(monkeypatch)
    with app.app_context():
        assert workers.rewards.issue_reward(reward_id) == "failed"
    assert reward_row(app, reward_id) == failed
    assert counts(app) == state
    assert _voucher_mails(app) == 0

    # The failed claim does not count against the member: the points buy a new one.
    again = claim(client, me, scheme.offer["id"], key="job-again")
    assert again.status_code == 202, again.json
    assert available(client, me) == COST
    assert_ledger_sound(app)


def test_fifty_concurrent_claims_for_the_last_ten(client: FlaskClient, app: Flask):
    """50 claims at the same moment for the last 10 of an offer, two from each of 25
    members who can each afford one: exactly 10 rewards, 40 refusals, nobody below
    zero. Meant for PostgreSQL (row locks); SQLite serialises the requests."""
    from .reward_support import admin_headers, make_offer, make_partner
    from .reward_support import resident as funded

    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    offer_id = make_offer(client, admin, partner["id"], cost_points=COST, stock=12)["id"]
    early = funded(client, app, points=2 * COST)
    for key in ("early-1", "early-2"):
        assert claim(client, early.headers, offer_id, key=key).status_code == 202
    members = [funded(client, app, points=COST) for _ in range(25)]

    answers = together(app, 50, lambda c, i: claim(c, members[i // 2].headers, offer_id,
                                                   key=f"last-ten-{i}"))

    statuses = Counter(status for status, _ in answers)
    assert statuses == {202: 10, 409: 40}, answers
    refusals = Counter(body["message"].split(":")[0] for status, body in answers
                       if status == 409)
    assert set(refusals) <= {"Sold out.", "Not enough points"}, refusals
    winners = [i // 2 for i, (status, _) in enumerate(answers) if status == 202]
    assert len(set(winners)) == 10  # nobody got two with points for one
    balances = [available(client, member.headers) for member in members]
    assert min(balances) == 0 and sorted(balances) == [0] * 10 + [COST] * 15
    assert offer_claimed(app, offer_id) == 12
    with database(app) as session:
        assert session.scalar(select(func.count(Reward.id)).where(
            Reward.offer_id == uuid.UUID(offer_id), Reward.status == "issued")) == 12
        assert session.scalar(select(func.count(Posting.id))
                              .where(Posting.kind == "capture")) == 12
    assert client.get(f"/v1/offers/{offer_id}", headers=early.headers).status_code == 200
    assert client.get(f"/v1/offers/{offer_id}",
                      headers=early.headers).json["stock_left"] == 0
    assert_ledger_sound(app)
