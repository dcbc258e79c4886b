"""The ledger through HTTP: what expires and when, pending points, revocations by a
source, staff adjustments and the support view, and the ledger under concurrency."""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

import workers.ledger
from rewards.cli import main as rewards_cli
from rewards.extensions import db
from rewards.ledger import account_balance, runs, scheme_account, verify
from rewards.models import Action, Award, Posting, Rule

from .helpers import (
    Scheme,
    at_once,
    bearer,
    build_scheme,
    link,
    member_token,
    signed_post,
    staff_token,
    tap,
)
from .reward_support import load_test_wards

POINTS = 10  # build_scheme's rule: 10 points for a daytime bus journey, at most 4 a day
_people = itertools.count(1)


def _daytime(days_ago: int, hour: int) -> datetime:
    local = datetime.now(ZoneInfo("Europe/London")) - timedelta(days=days_ago)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).astimezone(UTC)


@dataclass
class Person:
    headers: dict[str, str]
    id: str
    card: str
    refs: list[str]


def person(client: FlaskClient, app: Flask, scheme: Scheme, journeys: int) -> Person:
    """A resident with a linked card and `journeys` daytime bus journeys, sent by the
    scheme's source with refs '<card>-<n>'."""
    n = next(_people)
    headers = bearer(member_token(client, app, f"person{n}@example.org"))
    card = f"6335{n:012d}"
    linked = link(client, app, headers, card)
    assert linked.status_code == 201, linked.json
    refs = [f"{card}-{i}" for i in range(journeys)]
    if journeys:
        items = [tap(ref, card, _daytime(1 + i // 4, 9 + i % 4)) for i, ref in enumerate(refs)]
        sent = signed_post(client, scheme.source, {"items": items})
        assert [r["status"] for r in sent.json["results"]] == ["accepted"] * journeys, sent.json
    me = client.get("/v1/me", headers=headers).json
    return Person(headers, me["id"], card, refs)


def balance(client: FlaskClient, who: Person) -> dict[str, Any]:
    response = client.get("/v1/me/balance", headers=who.headers)
    assert response.status_code == 200, response.json
    return response.json


def statement(client: FlaskClient, who: Person) -> list[dict[str, Any]]:
    response = client.get("/v1/me/ledger?page_size=100", headers=who.headers)
    assert response.status_code == 200, response.json
    return response.json


def claim(client: FlaskClient, who: Person, offer_id: str, key: str | None = None) -> Any:
    headers = {**who.headers, **({"Idempotency-Key": key} if key else {})}
    return client.post("/v1/me/rewards", json={"offer_id": offer_id}, headers=headers)


def revoke(client: FlaskClient, scheme: Scheme, refs: Any, **kwargs: Any) -> Any:
    return signed_post(client, scheme.source, {"external_refs": refs},
                       path="/v1/source/actions/revocations", **kwargs)


def adjust(client: FlaskClient, headers: dict[str, str], member_id: str, body: Any,
           key: str | None = None) -> Any:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"/v1/admin/members/{member_id}/adjustments", json=body,
                       headers={**headers, **extra})


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def earn_postings(app: Flask, member_id: str) -> list[uuid.UUID]:
    with app.app_context():
        return list(db.session.scalars(
            select(Posting.id).join(Action, Action.id == Posting.action_id)
            .where(Posting.member_id == uuid.UUID(member_id), Posting.kind == "earn")
            .order_by(Action.external_ref)
        ))


def set_expiry(app: Flask, posting_id: uuid.UUID, when: datetime | None) -> None:
    """Stand-in for time passing: the lot was earned long enough ago to expire `when`."""
    with app.app_context():
        db.session.execute(update(Posting).where(Posting.id == posting_id)
                           .values(expires_at=when))
        db.session.commit()


def count_postings(app: Flask, kind: str) -> int:
    with app.app_context():
        return int(db.session.scalar(
            select(func.count(Posting.id)).where(Posting.kind == kind)) or 0)


def action_status(app: Flask, ref: str) -> str:
    with app.app_context():
        return db.session.scalars(select(Action.status).where(Action.external_ref == ref)).one()


def assert_ledger_sound(app: Flask) -> None:
    with app.app_context():
        assert verify(db.session) == []


def run_job(app: Flask, job: Any, **kwargs: Any) -> Any:
    """A scheduled job as a worker runs it, inside the app (outside one it builds its own)."""
    with app.app_context():
        return job(**kwargs)


def release_at(app: Flask, moment: datetime) -> dict[str, Any]:
    """The hourly release job, run as if at `moment`."""
    return run_job(app, workers.ledger.release_pending, now=rfc3339(moment))


def run_cli(app: Flask, *args: str) -> Any:
    return CliRunner().invoke(rewards_cli, list(args), obj=ScriptInfo(create_app=lambda: app))


# -- expiry ---------------------------------------------------------------------------

def test_the_oldest_points_are_spent_first_and_what_is_left_expires(client: FlaskClient,
                                                                      app: Flask):
    scheme = build_scheme(client, app, cost_points=POINTS)
    me = person(client, app, scheme, journeys=3)
    now = datetime.now(UTC).replace(microsecond=0)
    oldest, middle, newest = earn_postings(app, me.id)
    # Stand-ins for lots earned about 24 months ago.
    set_expiry(app, oldest, now + timedelta(days=2))
    set_expiry(app, middle, now + timedelta(days=10))
    set_expiry(app, newest, now + timedelta(days=45))

    shown = balance(client, me)
    assert shown["available"] == 30
    assert shown["expiring"] == [
        {"points": 10, "expires_at": rfc3339(now + timedelta(days=2))},
        {"points": 10, "expires_at": rfc3339(now + timedelta(days=10))},
    ]

    # Spending takes the lot that expires first.
    spent = claim(client, me, scheme.offer["id"])
    assert spent.status_code == 202, spent.json
    assert balance(client, me)["expiring"] == [
        {"points": 10, "expires_at": rfc3339(now + timedelta(days=10))}]

    # The daily job, today: nothing has expired.
    assert run_job(app, workers.ledger.expire_points) == {"members": 0, "points": 0, "failed": 0}
    # Three days on, as `rewards ledger expire --now` acts: nothing left of the oldest lot.
    in_3_days = (now + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S")
    assert "expired 0 points" in run_cli(app, "ledger", "expire", "--now", in_3_days).output
    assert count_postings(app, "expiry") == 0

    # Eleven days on, the middle lot goes, once.
    in_11_days = (now + timedelta(days=11)).strftime("%Y-%m-%dT%H:%M:%S")
    ran = run_cli(app, "ledger", "expire", "--now", in_11_days)
    assert ran.exit_code == 0, ran.output
    assert "expired 10 points of 1 member(s)" in ran.output
    again = run_cli(app, "ledger", "expire", "--now", in_11_days)
    assert "expired 0 points of 0 member(s)" in again.output

    shown = balance(client, me)
    assert (shown["available"], shown["expiring"]) == (10, [])
    assert shown["lifetime_earned"] == 30
    lines = statement(client, me)
    assert sum(line["points"] for line in lines) == 10
    expiry = [line for line in lines if line["kind"] == "expiry"]
    assert [line["points"] for line in expiry] == [-10]
    assert "expired" in expiry[0]["reason"]

    assert_ledger_sound(app)


def test_points_past_their_expiry_cannot_be_spent(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=15)
    me = person(client, app, scheme, journeys=2)
    gone = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    set_expiry(app, earn_postings(app, me.id)[0], gone)
    # The daily job has not run yet: the lot is still in the balance, shown as expiring.
    shown = balance(client, me)
    assert (shown["available"], shown["expiring"]) == (
        20, [{"points": 10, "expires_at": rfc3339(gone)}])
    refused = claim(client, me, scheme.offer["id"])
    assert refused.status_code == 409, refused.json
    assert refused.json["message"] == "Not enough points: this costs 15, you have 10."
    assert balance(client, me)["available"] == 20  # a refused claim changes nothing
    assert run_job(app, workers.ledger.expire_points)["points"] == 10
    assert balance(client, me) == {"available": 10, "pending": 0, "lifetime_earned": 20,
                                   "expiring": []}
    assert_ledger_sound(app)


# -- pending ----------------------------------------------------------------------------

def test_points_on_hold_become_spendable_when_the_hold_ends(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=POINTS)
    changed = client.patch(f"/v1/admin/rules/{scheme.rule['id']}", json={"hold_days": 3},
                           headers=bearer(scheme.admin))
    assert changed.status_code == 200, changed.json
    me = person(client, app, scheme, journeys=2)
    shown = balance(client, me)
    assert (shown["available"], shown["pending"], shown["lifetime_earned"]) == (0, 20, 20)
    refused = claim(client, me, scheme.offer["id"])
    assert refused.status_code == 409, refused.json

    now = datetime.now(UTC)
    early = release_at(app, now + timedelta(days=2, hours=23))
    assert early["points"] == 0
    assert balance(client, me)["pending"] == 20

    done = release_at(app, now + timedelta(days=3, minutes=1))
    assert done == {"members": 1, "points": 20, "failed": 0}
    shown = balance(client, me)
    assert (shown["available"], shown["pending"], shown["lifetime_earned"]) == (20, 0, 20)
    assert release_at(app, now + timedelta(days=9))["points"] == 0
    ran = run_cli(app, "ledger", "release")
    assert ran.exit_code == 0 and "released 0 pending points" in ran.output, ran.output
    assert count_postings(app, "pending_release") == 2
    assert [line["kind"] for line in statement(client, me)] == ["pending_release"] * 2
    assert claim(client, me, scheme.offer["id"]).status_code == 202
    assert_ledger_sound(app)


@pytest.mark.parametrize(("command", "finder", "settle", "run"), [
    ("expire", "members_with_expired_lots", "expire_member", "expiry"),
    ("release", "members_with_due_pending", "release_member", "pending release"),
])
def test_a_ledger_command_that_fails_for_a_member_exits_1_naming_them(
        app: Flask, monkeypatch: pytest.MonkeyPatch, command: str, finder: str, settle: str,
        run: str) -> None:
    member_id = uuid.uuid4()
    monkeypatch.setattr(runs, finder, lambda session, now: [member_id])

    def broken(session: Any, member: uuid.UUID, now: datetime) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(runs, settle, broken)
    ran = run_cli(app, "ledger", command, "--now", "2026-11-02")
    assert ran.exit_code == 1, ran.output
    # After the log of what went wrong, the line saying who it failed for.
    assert ran.stderr.strip().splitlines()[-1] == f"{run} failed for 1 member(s): {member_id}"
    assert ran.stdout == ""


# -- revocations ------------------------------------------------------------------------

def test_a_source_revokes_actions_before_and_after_they_are_spent(client: FlaskClient,
                                                                   app: Flask):
    scheme = build_scheme(client, app, cost_points=15)
    me = person(client, app, scheme, journeys=3)
    assert claim(client, me, scheme.offer["id"]).status_code == 202
    assert balance(client, me)["available"] == 15

    first, second, third = me.refs
    answer = revoke(client, scheme, [first, "never-sent", first])
    assert answer.status_code == 200, answer.json
    action_id = answer.json["results"][0]["action_id"]
    assert answer.json["results"] == [
        {"external_ref": first, "status": "revoked", "action_id": action_id,
         "points_reversed": 10, "points_written_off": 0},
        {"external_ref": "never-sent", "status": "not_found", "action_id": None,
         "points_reversed": 0, "points_written_off": 0},
        {"external_ref": first, "status": "already_revoked", "action_id": action_id,
         "points_reversed": 10, "points_written_off": 0},
    ]
    assert balance(client, me)["available"] == 5

    # Only 5 points are left to take back: the rest was spent, and is written off.
    answer = revoke(client, scheme, [second, third])
    assert [(r["status"], r["points_reversed"], r["points_written_off"])
            for r in answer.json["results"]] == [("revoked", 5, 5), ("revoked", 0, 10)]
    shown = balance(client, me)
    assert (shown["available"], shown["lifetime_earned"]) == (0, 0)
    # What was written off had been spent: the scheme paid it, so it stays spent from
    # the rule's budget; what was taken back is free to award again.
    with app.app_context():
        written_off = dict(db.session.execute(
            select(Action.external_ref, Award.points_written_off)
            .join(Award, Award.action_id == Action.id)).all())
        assert written_off == {first: 0, second: 5, third: 10}
        assert db.session.scalar(select(Rule.points_awarded)) == 15

    # Sent again (a retry): the first answer's figures, nothing moves.
    before = count_postings(app, "reversal")
    answer = revoke(client, scheme, [third, second, first])
    assert [(r["status"], r["points_reversed"], r["points_written_off"])
            for r in answer.json["results"]] == [
        ("already_revoked", 0, 10), ("already_revoked", 5, 5), ("already_revoked", 10, 0)]
    assert count_postings(app, "reversal") == before == 3

    actions = client.get("/v1/me/actions", headers=me.headers).json
    assert {a["status"] for a in actions} == {"revoked"}
    assert all(a["reason"] == "Revoked by First Bus" for a in actions)
    lines = statement(client, me)
    assert sum(line["points"] for line in lines) == 0
    assert Counter(line["kind"] for line in lines) == {"earn": 3, "hold": 1, "reversal": 2}
    assert_ledger_sound(app)


def test_revoking_pending_points_takes_them_from_pending(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app)
    client.patch(f"/v1/admin/rules/{scheme.rule['id']}", json={"hold_days": 7},
                 headers=bearer(scheme.admin))
    me = person(client, app, scheme, journeys=2)
    answer = revoke(client, scheme, [me.refs[0]])
    assert answer.json["results"][0]["points_reversed"] == 10
    shown = balance(client, me)
    assert (shown["available"], shown["pending"]) == (0, 10)
    released = release_at(app, datetime.now(UTC) + timedelta(days=8))
    assert released["points"] == 10  # the revoked award is never released
    assert balance(client, me)["available"] == 10
    assert_ledger_sound(app)


def test_revocations_only_reach_the_sources_own_actions(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app)
    me = person(client, app, scheme, journeys=1)
    other = client.post("/v1/admin/sources",
                        json={"name": "Arriva", "action_types": ["bus_journey"]},
                        headers=bearer(scheme.admin)).json
    theirs = signed_post(client, other, {"items": [tap("arriva-1", me.card, _daytime(2, 10))]})
    assert theirs.json["results"][0]["status"] == "accepted"

    # Arriva's ref, revoked by First Bus, is unknown to First Bus.
    answer = revoke(client, scheme, ["arriva-1"])
    assert answer.json["results"][0]["status"] == "not_found"
    assert action_status(app, "arriva-1") == "accepted"
    # And First Bus's ref, sent by Arriva.
    answer = signed_post(client, other, {"external_refs": [me.refs[0]]},
                         path="/v1/source/actions/revocations")
    assert answer.json["results"][0]["status"] == "not_found"
    assert balance(client, me)["available"] == 20
    assert count_postings(app, "reversal") == 0


def test_revocations_must_be_signed_and_well_formed(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app)
    me = person(client, app, scheme, journeys=1)
    ref = me.refs[0]
    path = "/v1/source/actions/revocations"
    body = json.dumps({"external_refs": [ref]}).encode()

    def unsigned(headers: dict[str, str]) -> Any:
        return client.post(path, data=body, content_type="application/json", headers=headers)

    stale = revoke(client, scheme, [ref], timestamp=int(datetime.now(UTC).timestamp()) - 900)
    forged = revoke(client, scheme, [ref], secret="not-the-secret")
    no_signature = unsigned({"X-Api-Key": scheme.source["api_key"]})
    no_key = unsigned({})
    for response in (stale, forged, no_signature, no_key):
        assert response.status_code == 401, response.json
        assert set(response.json) >= {"code", "status", "message"}
    assert action_status(app, ref) == "accepted"
    assert count_postings(app, "reversal") == 0
    assert balance(client, me)["available"] == 10

    too_many = revoke(client, scheme, [f"r{i}" for i in range(1001)])
    assert too_many.status_code == 413, too_many.json
    assert "at most 1000" in too_many.json["message"]
    for bad in ({}, {"external_refs": "abc"}, {"refs": [ref]}, [ref]):
        response = signed_post(client, scheme.source, bad, path=path)
        assert response.status_code == 422, response.json
        assert "external_refs" in response.json["errors"]
    response = revoke(client, scheme, [ref, 7, "", "x" * 201])
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]["external_refs"]) == {"1", "2", "3"}
    assert action_status(app, ref) == "accepted"  # a bad body revokes nothing
    empty = revoke(client, scheme, [])
    assert (empty.status_code, empty.json) == (200, {"results": []})


# -- staff: adjustments and the support view --------------------------------------------

def test_adjustments_are_idempotent_audited_and_never_overdraw(client: FlaskClient,
                                                              app: Flask):
    scheme = build_scheme(client, app)
    admin = bearer(scheme.admin)
    me = person(client, app, scheme, journeys=1)

    given = adjust(client, admin, me.id, {"points": 25, "reason": "Card lost in the post"},
                   key="adj-1")
    assert given.status_code == 201, given.json
    assert (given.json["points"], given.json["available"]) == (25, 35)
    assert given.json["reason"] == "Card lost in the post"
    assert given.json["expires_at"] is not None
    replay = adjust(client, admin, me.id, {"points": 25, "reason": "Card lost in the post"},
                    key="adj-1")
    assert replay.status_code == 201
    assert replay.json == given.json
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert balance(client, me)["available"] == 35
    other_body = adjust(client, admin, me.id, {"points": 30, "reason": "Card lost"},
                        key="adj-1")
    assert other_body.status_code == 422, other_body.json

    taken = adjust(client, admin, me.id, {"points": -35, "reason": "Duplicate account"},
                   key="adj-2")
    assert taken.status_code == 201, taken.json
    assert taken.json["available"] == 0
    overdraw = adjust(client, admin, me.id, {"points": -1, "reason": "One more"}, key="adj-3")
    assert overdraw.status_code == 409, overdraw.json
    assert "0 points available" in overdraw.json["message"]
    # A refusal keeps no key: the same key works once the member has points again.
    adjust(client, admin, me.id, {"points": 1, "reason": "Sorry"})
    assert adjust(client, admin, me.id, {"points": -1, "reason": "One more"},
                  key="adj-3").status_code == 201
    assert balance(client, me)["available"] == 0

    for body in ({"points": 5}, {"points": 5, "reason": ""}, {"points": 5, "reason": "  "},
                 {"points": 0, "reason": "zero"}, {"points": "5", "reason": "text"},
                 {"points": 2.5, "reason": "half"}, {"points": True, "reason": "bool"},
                 {"points": 10**9, "reason": "a lot"}, {"reason": "no points"}):
        response = adjust(client, admin, me.id, body)
        assert response.status_code == 422, (body, response.json)
    assert "reason" in adjust(client, admin, me.id, {"points": 5}).json["errors"]

    statement_lines = statement(client, me)
    assert [line["kind"] for line in statement_lines].count("adjustment") == 4
    entries = client.get("/v1/admin/audit-log?page_size=100", headers=admin).json
    adjustments = [e for e in entries if e["action"] == "adjust_points"]
    assert len(adjustments) == 4
    assert {e["target_id"] for e in adjustments} == {me.id}
    assert {(e["details"]["points"], e["details"]["reason"]) for e in adjustments} == {
        (25, "Card lost in the post"), (-35, "Duplicate account"), (1, "Sorry"),
        (-1, "One more")}
    assert_ledger_sound(app)


def test_only_admins_adjust_or_see_members(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app)
    me = person(client, app, scheme, journeys=1)
    body = {"points": 5, "reason": "Goodwill"}
    for role in ("scheme_manager", "reviewer", "analyst"):
        headers = bearer(staff_token(client, app, role))
        assert adjust(client, headers, me.id, body).status_code == 403
        assert client.get(f"/v1/admin/members/{me.id}", headers=headers).status_code == 403
    assert adjust(client, me.headers, me.id, body).status_code == 403
    assert adjust(client, {}, me.id, body).status_code == 401
    assert client.get(f"/v1/admin/members/{me.id}").status_code == 401
    admin = bearer(scheme.admin)
    unknown = uuid.uuid4()
    assert adjust(client, admin, str(unknown), body).status_code == 404
    assert client.get(f"/v1/admin/members/{unknown}", headers=admin).status_code == 404
    assert balance(client, me)["available"] == 10

    # An erased account keeps its ledger sums, which no longer change.
    assert client.delete("/v1/me", headers=me.headers).status_code == 204
    erased = adjust(client, admin, me.id, body)
    assert erased.status_code == 409, erased.json
    view = client.get(f"/v1/admin/members/{me.id}", headers=admin).json
    assert view["erased_at"] is not None and view["balances"]["available"] == 10


def test_the_support_view(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=5)
    admin = bearer(scheme.admin)
    me = person(client, app, scheme, journeys=3)
    load_test_wards(app, "Headingley")
    assert client.patch("/v1/me", json={"ward": "Headingley"},
                        headers=me.headers).status_code == 200
    now = datetime.now(UTC).replace(microsecond=0)
    first, second, _ = earn_postings(app, me.id)
    set_expiry(app, first, now + timedelta(days=3))
    set_expiry(app, second, now + timedelta(days=20))
    # Whatever is taken out (a reversal, a claim) goes from the lot expiring first.
    revoke(client, scheme, [me.refs[2]])
    assert claim(client, me, scheme.offer["id"]).status_code == 202
    adjust(client, admin, me.id, {"points": 5, "reason": "Goodwill"})

    view = client.get(f"/v1/admin/members/{me.id}", headers=admin)
    assert view.status_code == 200, view.json
    body = view.json
    assert body["id"] == me.id and body["ward"] == "Headingley"
    assert body["balances"] == {"available": 20, "pending": 0, "lifetime_earned": 20,
                                "expired": 0, "adjusted": 5, "written_off": 0}
    assert body["expiring"] == [{"points": 5, "expires_at": rfc3339(now + timedelta(days=20))}]
    assert balance(client, me)["expiring"] == body["expiring"]
    assert body["counts"] == {"actions": {"accepted": 2, "revoked": 1},
                              "rewards": {"issued": 1}, "cards": 1, "adjustments": 1}
    text = json.dumps(body)
    assert me.card not in text and me.card[-4:] not in text
    assert "email" not in body and "example.org" not in text
    entries = client.get("/v1/admin/audit-log", headers=admin).json
    assert any(e["action"] == "view" and e["target_id"] == me.id for e in entries)


# -- concurrency ------------------------------------------------------------------------

def test_claims_adjustments_revocations_and_jobs_at_once(client: FlaskClient, app: Flask):
    """Everything that moves one member's points, at the same moment: the balance never
    goes below zero, every point is accounted for, and `verify` finds nothing wrong."""
    scheme = build_scheme(client, app, cost_points=POINTS, stock=None)
    admin = bearer(scheme.admin)
    me = person(client, app, scheme, journeys=6)
    for posting_id in earn_postings(app, me.id)[:2]:  # 20 points due to expire now
        set_expiry(app, posting_id, datetime.now(UTC) - timedelta(minutes=1))

    def send(own: FlaskClient, index: int) -> tuple[str, Any]:
        if index < 4:
            return "claim", claim(own, me, scheme.offer["id"], key=f"c{index}")
        if index < 6:
            return "adjust", adjust(own, admin, me.id,
                                    {"points": -15, "reason": f"Correction {index}"})
        if index < 8:  # both revoke the same two actions
            return "revoke", revoke(own, scheme, me.refs[4:])
        return "expire", run_job(app, workers.ledger.expire_points)

    answers = at_once(app, 9, send)

    statuses = Counter((kind, getattr(answer, "status_code", None)) for kind, answer in answers)
    assert statuses[("expire", None)] == 1
    claims = statuses[("claim", 202)]
    adjustments = statuses[("adjust", 201)]
    assert claims + statuses[("claim", 409)] == 4, statuses
    assert adjustments + statuses[("adjust", 409)] == 2, statuses
    assert statuses[("revoke", 200)] == 2, statuses
    revocations = [answer.json["results"] for kind, answer in answers if kind == "revoke"]
    for ref_index in range(2):
        assert sorted(results[ref_index]["status"] for results in revocations) == [
            "already_revoked", "revoked"]
    reversed_points = sum(r["points_reversed"] for results in revocations for r in results
                          if r["status"] == "revoked")
    # The 20 past their expiry went once: by the job, or by whatever took points first.
    with app.app_context():
        expired = account_balance(db.session, scheme_account(db.session, "scheme:expired").id)
    assert expired == 20
    assert count_postings(app, "expiry") == 1

    available = balance(client, me)["available"]
    assert available >= 0
    assert available == 60 - POINTS * claims - 15 * adjustments - reversed_points - expired
    assert count_postings(app, "reversal") <= 2
    assert_ledger_sound(app)


@pytest.mark.parametrize("threads", [6])
def test_the_same_revocation_sent_at_once_reverses_once(client: FlaskClient, app: Flask,
                                                        threads: int):
    scheme = build_scheme(client, app)
    me = person(client, app, scheme, journeys=3)
    answers = at_once(app, threads, lambda own, _: revoke(own, scheme, me.refs))
    assert [answer.status_code for answer in answers] == [200] * threads
    for index in range(3):
        statuses = sorted(answer.json["results"][index]["status"] for answer in answers)
        assert statuses == ["already_revoked"] * (threads - 1) + ["revoked"]
    assert count_postings(app, "reversal") == 3
    assert balance(client, me)["available"] == 0
    assert_ledger_sound(app)
