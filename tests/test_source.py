"""POST /v1/source/actions through HTTP: signatures, per-item results, body shape, points
and caps, rules that fail at run time, and the same batch sent from several threads."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

import rewards.security
from rewards.api.source import BatchOut
from rewards.extensions import db
from rewards.models import Account, Action, Award, Posting, PostingLine, RuleVersion
from rewards.rules import build_context, compile_rule, evaluate, validate_expression
from rewards.rules.engine import RuleSpec, Usage
from rewards.security import signature_header

from .helpers import (
    Scheme,
    at_once,
    bearer,
    build_scheme,
    iso,
    link,
    member_token,
    signed_post,
    tap,
)

CARD = "6335 0012 3456 7890"
OTHER_CARD = "6335 0098 7654 3210"
ERROR_KEYS = {"code", "status", "message"}


def _daytime(days_ago: int, hour: int = 12, minute: int = 0) -> datetime:
    """A London-time moment `days_ago` days back at hour:minute (always in the past)."""
    local = datetime.now(ZoneInfo("Europe/London")) - timedelta(days=days_ago)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0).astimezone(UTC)


@dataclass
class World:
    scheme: Scheme
    token: str
    member_id: str
    card: str

    @property
    def me(self) -> dict[str, str]:
        return bearer(self.token)


def resident(client: FlaskClient, app: Flask, email: str, card: str) -> tuple[str, str]:
    """A resident with a linked travel card: (token, member id)."""
    token = member_token(client, app, email)
    linked = link(client, app, bearer(token), card)
    assert linked.status_code == 201, linked.json
    member_id = client.get("/v1/me", headers=bearer(token)).json["id"]
    return token, member_id


@pytest.fixture
def world(client: FlaskClient, app: Flask) -> World:
    scheme = build_scheme(client, app)
    token, member_id = resident(client, app, "amira@example.org", CARD)
    return World(scheme, token, member_id, CARD)


def stored(app: Flask) -> dict[str, int]:
    """How many rows the ingest path writes to."""
    with app.app_context():
        session = db.session
        return {
            name: session.scalar(select(func.count()).select_from(model))
            for name, model in (("actions", Action), ("awards", Award),
                                ("postings", Posting), ("posting_lines", PostingLine))
        }


def assert_error(response: Any, code: int) -> dict[str, Any]:
    assert response.status_code == code, response.data
    assert response.mimetype == "application/json"
    body = response.json
    assert ERROR_KEYS <= set(body), body
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


def post_raw(client: FlaskClient, raw: bytes, headers: dict[str, str]) -> Any:
    return client.post("/v1/source/actions", data=raw, content_type="application/json",
                       headers=headers)


def ledger_is_balanced(app: Flask) -> None:
    with app.app_context():
        sums = db.session.execute(
            select(PostingLine.posting_id, func.sum(PostingLine.points))
            .group_by(PostingLine.posting_id)
        ).all()
        postings = db.session.scalar(select(func.count()).select_from(Posting))
    assert len(sums) == postings
    assert all(total == 0 for _, total in sums), sums


def available_and_awarded(app: Flask, member_id: str) -> tuple[int, int]:
    """The member's available balance from the ledger, and the sum of their awards."""
    with app.app_context():
        member = uuid.UUID(member_id)
        available = db.session.scalar(
            select(func.coalesce(func.sum(PostingLine.points), 0))
            .join(Account, Account.id == PostingLine.account_id)
            .where(Account.code == f"member:{member}:available")
        )
        awarded = db.session.scalar(
            select(func.coalesce(func.sum(Award.points), 0)).where(Award.member_id == member)
        )
    return int(available), int(awarded)


# -- signatures ----------------------------------------------------------------------

class _FrozenTime:
    """The `time` module as rewards.security sees it, with time() standing still."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> int:
    """The server checks signatures against this whole second, so ages are exact."""
    now = int(time.time())
    monkeypatch.setattr(rewards.security, "time", _FrozenTime(float(now)))
    return now


def _batch(card: str) -> dict[str, Any]:
    return {"items": [tap("sig-1", card, _daytime(1, 10))]}


def _headers(world: World, raw: bytes, **changes: Any) -> dict[str, str]:
    headers = {
        "X-Api-Key": world.scheme.source["api_key"],
        "X-Signature": signature_header(world.scheme.source["signing_secret"], raw,
                                        changes.pop("t", None)),
    }
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


def _bad_requests(world: World, raw: bytes, now: int) -> dict[str, tuple[bytes, dict, str]]:
    """Case -> (body sent, headers, words the 401 message must contain)."""
    other = signature_header("another-secret", raw, now)
    changed = raw.replace(b"3.2", b"9.2")
    assert changed != raw
    return {
        "missing api key": (raw, _headers(world, raw, **{"X-Api-Key": None}), "X-Api-Key"),
        "unknown api key": (raw, _headers(world, raw, **{"X-Api-Key": "src_nope"}),
                            "not valid"),
        "missing signature": (raw, _headers(world, raw, **{"X-Signature": None}), "missing"),
        "malformed signature": (raw, _headers(world, raw, **{"X-Signature": "abc"}),
                                "t=<unix seconds>"),
        "timestamp not a number": (raw, _headers(world, raw, **{"X-Signature": "t=soon,v1=0f"}),
                                   "t=<unix seconds>"),
        "no v1": (raw, _headers(world, raw, **{"X-Signature": f"t={now}"}), "t=<unix seconds>"),
        "signed with another secret": (raw, _headers(world, raw, **{"X-Signature": other}),
                                       "does not match"),
        "body changed after signing": (changed, _headers(world, raw, t=now), "does not match"),
        "301 s old": (raw, _headers(world, raw, t=now - 301), "300 seconds"),
        "an hour old": (raw, _headers(world, raw, t=now - 3600), "300 seconds"),
        "301 s in the future": (raw, _headers(world, raw, t=now + 301), "300 seconds"),
    }


def test_bad_credentials_are_401_and_record_nothing(
    client: FlaskClient, app: Flask, world: World, frozen_clock: int
) -> None:
    raw = json.dumps(_batch(world.card)).encode()
    empty = {"actions": 0, "awards": 0, "postings": 0, "posting_lines": 0}
    for case, (body, headers, words) in _bad_requests(world, raw, frozen_clock).items():
        response = post_raw(client, body, headers)
        error = assert_error(response, 401)
        assert error["status"] == "Unauthorized", case
        assert words in error["message"], (case, error)
        assert "results" not in error, case
        assert stored(app) == empty, case
    # The same request, properly signed, is recorded: the cases above failed for their
    # one fault alone.
    assert post_raw(client, raw, _headers(world, raw, t=frozen_clock)).status_code == 200
    assert stored(app)["actions"] == 1


def test_non_ascii_signature_is_401(
    client: FlaskClient, app: Flask, world: World, frozen_clock: int
) -> None:
    raw = json.dumps(_batch(world.card)).encode()
    response = post_raw(client, raw, _headers(
        world, raw, **{"X-Signature": f"t={frozen_clock},v1=\u00e9\u00e9"}))
    assert_error(response, 401)
    assert stored(app)["actions"] == 0


def test_signature_inside_the_window_is_accepted(
    client: FlaskClient, app: Flask, world: World, frozen_clock: int
) -> None:
    for n, age in enumerate((299, 300, -299)):
        raw = json.dumps({"items": [tap(f"w-{n}", world.card, _daytime(1, 10 + n))]}).encode()
        response = post_raw(client, raw, _headers(world, raw, t=frozen_clock - age))
        assert response.status_code == 200, (age, response.json)
        assert [r["status"] for r in response.json["results"]] == ["accepted"], age
    assert stored(app)["actions"] == 3


# -- per-item results ------------------------------------------------------------------

def test_each_item_gets_its_own_result_in_order(
    client: FlaskClient, app: Flask, world: World
) -> None:
    auth = bearer(world.scheme.admin)
    volunteering = client.post(
        "/v1/admin/action-types",
        json={"code": "volunteer_hour", "name": "Volunteering", "category": "volunteering"},
        headers=auth,
    )
    assert volunteering.status_code == 201, volunteering.json
    card, when = world.card, _daytime(2, 9)
    by_id = {**tap("by-id", card, _daytime(2, 10)), "member": {"member_id": world.member_id}}
    no_ref = tap("x", card, when)
    del no_ref["external_ref"]
    no_member = tap("no-member", card, when)
    del no_member["member"]
    items: list[Any] = [
        tap("good-1", card, when),                                              # 0
        by_id,                                                                  # 1
        tap("good-1", card, _daytime(3, 9)),                                    # 2 dup
        tap("unknown-card", "9999 8888 7777 6666", when),                       # 3
        {**by_id, "external_ref": "unknown-id",
         "member": {"member_id": str(uuid.uuid4())}},                           # 4
        tap("not-allowed", card, when, type_code="volunteer_hour"),             # 5
        tap("unknown-type", card, when, type_code="taxi_ride"),                 # 6
        no_ref,                                                                 # 7
        {**tap("not-rfc3339", card, when), "occurred_at": "yesterday"},         # 8
        {**tap("no-zone", card, when), "occurred_at": "2026-01-05T08:30:00"},   # 9
        tap("future", card, datetime.now(UTC) + timedelta(hours=1)),            # 10
        tap("too-old", card, datetime.now(UTC) - timedelta(days=31)),           # 11
        {**tap("attrs-list", card, when), "attributes": [1, 2]},                # 12
        no_member,                                                              # 13
        {**tap("date-only", card, when), "occurred_at": when.date().isoformat()},  # 14
        {**tap("basic-format", card, when),
         "occurred_at": when.strftime("%Y%m%dT%H%M%SZ")},                       # 15
        {**tap("bad-member-id", card, when), "member": {"member_id": "42"}},    # 16
        "not an object",                                                        # 17
        tap("good-2", card, _daytime(2, 11)),                                   # 18
    ]
    before = stored(app)
    response = signed_post(client, world.scheme.source, {"items": items})
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert len(results) == len(items)
    # The body is written straight from the results: it must be exactly BatchOut's shape
    # (load refuses unknown keys and wrong types; dump gives back the same JSON).
    assert BatchOut().dump(BatchOut().load(response.json)) == response.json
    assert [r["external_ref"] for r in results] == [
        "good-1", "by-id", "good-1", "unknown-card", "unknown-id", "not-allowed",
        "unknown-type", None, "not-rfc3339", "no-zone", "future", "too-old", "attrs-list",
        "no-member", "date-only", "basic-format", "bad-member-id", None, "good-2"]
    statuses = [r["status"] for r in results]
    assert statuses == ["accepted", "accepted", "duplicate"] + ["rejected"] * 15 + ["accepted"]

    accepted = [r for r in results if r["status"] == "accepted"]
    assert [r["points"] for r in accepted] == [10, 10, 10]
    assert all(uuid.UUID(r["action_id"]) for r in accepted)
    assert len({r["action_id"] for r in accepted}) == 3
    assert results[2]["action_id"] == results[0]["action_id"]
    assert "earlier item of this batch" in results[2]["reason"]

    reasons = {r["external_ref"]: r["reason"] for r in results if r["status"] == "rejected"}
    assert "unknown card" in reasons["unknown-card"]
    assert "member_id" in reasons["unknown-id"] and "no member" in reasons["unknown-id"]
    assert "volunteer_hour" in reasons["not-allowed"]
    assert "may not send" in reasons["not-allowed"]
    assert "bus_journey" in reasons["not-allowed"]  # what it may send
    assert "taxi_ride" in reasons["unknown-type"]
    assert "unknown" in reasons["unknown-type"]
    assert reasons["not-allowed"] != reasons["unknown-type"]
    assert "external_ref" in results[7]["reason"]
    assert "RFC 3339" in reasons["not-rfc3339"]
    assert "zone" in reasons["no-zone"] and "RFC 3339" not in reasons["no-zone"]
    assert "future" in reasons["future"]
    assert "older than 30 days" in reasons["too-old"]
    assert "attributes" in reasons["attrs-list"] and "object" in reasons["attrs-list"]
    assert "member is required" in reasons["no-member"]
    assert "RFC 3339" in reasons["date-only"]
    assert "RFC 3339" in reasons["basic-format"]
    assert "member_id" in reasons["bad-member-id"]
    assert "object" in results[17]["reason"]
    assert all(r["action_id"] is None for r in results if r["status"] == "rejected")

    # Only the accepted items were stored, each with one award and one posting.
    with app.app_context():
        actions = db.session.scalars(select(Action)).all()
        assert {a.external_ref for a in actions} == {"good-1", "by-id", "good-2"}
        assert {str(a.id) for a in actions} == {r["action_id"] for r in accepted}
        assert all(str(a.member_id) == world.member_id for a in actions)
        assert all(a.status == "accepted" and a.points == 10 for a in actions)
        good_1 = next(a for a in actions if a.external_ref == "good-1")
        assert good_1.occurred_at == _daytime(2, 9)  # the first good-1, not the duplicate
        postings = db.session.scalars(select(Posting)).all()
        assert {str(p.action_id) for p in postings} == {r["action_id"] for r in accepted}
    after = stored(app)
    assert after["actions"] - before["actions"] == 3
    assert after["postings"] - before["postings"] == 3
    assert after["awards"] - before["awards"] == 3

    # The same refs in a later batch are duplicates of the first actions.
    again = signed_post(client, world.scheme.source, {"items": [items[0], items[18], items[3]]})
    assert again.status_code == 200, again.json
    assert [r["status"] for r in again.json["results"]] == ["duplicate", "duplicate", "rejected"]
    assert again.json["results"][0]["action_id"] == results[0]["action_id"]
    assert again.json["results"][1]["action_id"] == results[18]["action_id"]
    assert "already received" in again.json["results"][0]["reason"]
    assert stored(app) == after

    # A rejected ref was not recorded: once the card is linked, the same ref is accepted.
    resident(client, app, "bea@example.org", "9999 8888 7777 6666")
    fixed = signed_post(client, world.scheme.source, {"items": [items[3]]})
    assert [r["status"] for r in fixed.json["results"]] == ["accepted"]
    assert stored(app)["actions"] == after["actions"] + 1


def test_in_batch_duplicate_points_at_the_first_item_even_if_it_happened_later(
    client: FlaskClient, app: Flask, world: World
) -> None:
    first, second = tap("trip", world.card, _daytime(1, 15)), tap("trip", world.card,
                                                                   _daytime(1, 9))
    response = signed_post(client, world.scheme.source, {"items": [first, second]})
    results = response.json["results"]
    assert [r["status"] for r in results] == ["accepted", "duplicate"]
    assert results[1]["action_id"] == results[0]["action_id"]
    with app.app_context():
        action = db.session.scalars(select(Action)).one()
        assert str(action.id) == results[0]["action_id"]
        assert action.occurred_at == _daytime(1, 15)


def test_values_the_database_or_engine_cannot_hold_are_rejected(
    client: FlaskClient, app: Flask, world: World
) -> None:
    """Values PostgreSQL or the rules engine cannot take (NUL, NaN, numbers past 64
    bits, times past year 9999) are the source's mistake: rejected, not a 500."""
    card, when = world.card, _daytime(1, 10)
    raw = json.dumps({"items": [
        tap("nul-\u0000-ref", card, when),
        {**tap("nul-attr", card, when), "attributes": {"route": "1\u0000"}},
        tap("r" * 201, card, when),
        {**tap("year-1", card, when), "occurred_at": "0001-01-01T00:00:00+01:00"},
        {**tap("year-9999", card, when), "occurred_at": "9999-12-31T23:59:59-01:00"},
        {**tap("nan-attr", card, when), "attributes": {"distance_km": 3.2, "route": "é"}},
        {**tap("huge-int", card, when), "attributes": {"distance_km": 2**64}},
        {**tap("huge-float", card, when), "attributes": {"legs": [1, {"km": 1e30}]}},
        {**tap("fine", card, when), "attributes": {"distance_km": 2**62, "route": "2"}},
    ]}).encode()
    raw = raw.replace(b'"route": "\\u00e9"}', b'"route": "\\u00e9", "x": NaN}')
    response = post_raw(client, raw, {
        "X-Api-Key": world.scheme.source["api_key"],
        "X-Signature": signature_header(world.scheme.source["signing_secret"], raw),
    })
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [r["status"] for r in results] == ["rejected"] * 8 + ["accepted"]
    assert "external_ref" in results[0]["reason"]
    assert "attributes.route" in results[1]["reason"] and "NUL" in results[1]["reason"]
    assert "200 characters" in results[2]["reason"]
    assert "occurred_at" in results[3]["reason"] and "occurred_at" in results[4]["reason"]
    assert "attributes.x" in results[5]["reason"] and "finite" in results[5]["reason"]
    assert "attributes.distance_km" in results[6]["reason"] and "large" in results[6]["reason"]
    assert "attributes.legs[1].km" in results[7]["reason"]
    assert stored(app)["actions"] == 1


# -- body shape --------------------------------------------------------------------------

def test_body_without_an_items_list_is_422(
    client: FlaskClient, app: Flask, world: World
) -> None:
    for body in ({}, {"items": "x"}, {"items": None}, [], "items", {"items": {"0": {}}},
                 {"item": [tap("t", world.card, _daytime(1, 10))]}):
        error = assert_error(signed_post(client, world.scheme.source, body), 422)
        assert "items" in error["errors"], (body, error)
    for raw in (b"not json", b"[" * 100_000 + b"]" * 100_000, b""):
        response = post_raw(client, raw, {
            "X-Api-Key": world.scheme.source["api_key"],
            "X-Signature": signature_header(world.scheme.source["signing_secret"], raw),
        })
        assert_error(response, 422)
    assert stored(app)["actions"] == 0
    empty = signed_post(client, world.scheme.source, {"items": []})
    assert empty.status_code == 200
    assert empty.json == {"results": []}


def test_more_than_1000_items_is_413_and_records_nothing(
    client: FlaskClient, app: Flask, world: World
) -> None:
    items = [tap(f"big-{i}", world.card, _daytime(1, 10)) for i in range(1001)]
    before = stored(app)
    error = assert_error(signed_post(client, world.scheme.source, {"items": items}), 413)
    assert "1000" in error["message"]
    assert stored(app) == before

    # So is a body over the size limit, whatever it holds.
    huge = {"items": [{**tap("huge", world.card, _daytime(1, 10)),
                       "attributes": {"note": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}}]}
    assert_error(signed_post(client, world.scheme.source, huge), 413)
    assert stored(app) == before

    # 1,000 is allowed: one result each.
    response = signed_post(client, world.scheme.source, {"items": [
        tap(f"big-{i}", "1111 2222 3333 4444", _daytime(1, 10)) for i in range(1000)]})
    assert response.status_code == 200
    assert len(response.json["results"]) == 1000
    assert {r["status"] for r in response.json["results"]} == {"rejected"}


# -- points and caps -----------------------------------------------------------------------

def test_per_day_cap_and_the_ledger(client: FlaskClient, app: Flask, world: World) -> None:
    day = [tap(f"d2-{h}", world.card, _daytime(2, h)) for h in (8, 9, 10, 11, 12)]
    night = tap("d1-night", world.card, _daytime(1, 20))  # off-peak: 15
    response = signed_post(client, world.scheme.source, {"items": [*day, night]})
    results = response.json["results"]
    assert [r["status"] for r in results] == ["accepted"] * 6
    assert [r["points"] for r in results] == [10, 10, 10, 10, 0, 15]

    # A later batch for the capped day is capped too; the next day still earns.
    later = signed_post(client, world.scheme.source, {"items": [
        tap("d2-late", world.card, _daytime(2, 16)), tap("d1-noon", world.card, _daytime(1, 12))]})
    assert [(r["status"], r["points"]) for r in later.json["results"]] == [
        ("accepted", 0), ("accepted", 10)]

    actions = client.get("/v1/me/actions", query_string={"page_size": 100},
                         headers=world.me).json
    by_ref_time = {a["occurred_at"]: a for a in actions}
    assert len(actions) == 8
    for capped_at in (_daytime(2, 12), _daytime(2, 16)):
        capped = by_ref_time[iso(capped_at).replace("Z", "+00:00")]
        assert capped["status"] == "accepted"
        assert capped["points"] == 0
        assert [(a["points"], a["capped_by"], a["rule_id"]) for a in capped["awards"]] == [
            (0, "per_day", world.scheme.rule["id"])]
    earned = [a for a in actions if a["points"] > 0]
    assert len(earned) == 6
    assert all(a["awards"][0]["capped_by"] is None for a in earned)
    assert sorted(a["points"] for a in earned) == [10, 10, 10, 10, 10, 15]

    ledger_is_balanced(app)
    available, awarded = available_and_awarded(app, world.member_id)
    assert available == awarded == 65
    assert client.get("/v1/me/balance", headers=world.me).json["available"] == 65
    with app.app_context():
        # Capped awards post nothing: one posting per award with points.
        assert db.session.scalar(select(func.count()).select_from(Posting)) == 6
        assert db.session.scalar(
            select(func.count()).select_from(Award).where(Award.capped_by == "per_day")) == 2


# -- a rule that fails at run time -------------------------------------------------------------

BROKEN_POINTS = "action.attributes.hours * 2"


def test_engine_accepts_the_broken_rule_at_save_time_and_fails_at_run_time() -> None:
    """The premise of the next test, checked against the engine itself."""
    validate_expression(BROKEN_POINTS, "number")  # saved without complaint
    now = datetime.now(UTC)
    spec = RuleSpec(rule_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()), version=1,
                    name="Hours bonus", action_types=frozenset({"bus_journey"}),
                    condition="true", points=BROKEN_POINTS, starts_at=now - timedelta(days=1))
    context = build_context("bus_journey", now, {"distance_km": 3.2}, {}, now, "Europe/London")
    evaluation = evaluate([compile_rule(spec)], "bus_journey", now, context, Usage())
    assert evaluation.decisions == []
    assert [s.name for s, _ in evaluation.errors] == ["Hours bonus"]


def test_rule_failing_at_run_time_flags_the_action_and_others_still_award(
    client: FlaskClient, app: Flask, world: World
) -> None:
    broken = client.post("/v1/admin/rules", headers=bearer(world.scheme.admin), json={
        "name": "Hours bonus", "action_types": ["bus_journey"], "condition": "true",
        "points": BROKEN_POINTS, "status": "active",
        "starts_at": iso(datetime.now(UTC) - timedelta(days=30)),
    })
    assert broken.status_code == 201, broken.json

    response = signed_post(client, world.scheme.source, {"items": [
        tap("t-1", world.card, _daytime(1, 10)),
        {**tap("t-2", world.card, _daytime(1, 11)),
         "attributes": {"distance_km": 3.2, "hours": 3}},
    ]})
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [(r["status"], r["points"]) for r in results] == [("accepted", 10), ("accepted", 16)]

    actions = {a["id"]: a for a in client.get("/v1/me/actions", headers=world.me).json}
    flagged = actions[results[0]["action_id"]]
    assert flagged["status"] == "flagged"
    assert "Hours bonus" in flagged["reason"]
    assert [(a["rule_name"], a["points"]) for a in flagged["awards"]] == [("Bus journey", 10)]
    fine = actions[results[1]["action_id"]]
    assert fine["status"] == "accepted" and fine["reason"] is None
    assert sorted((a["rule_name"], a["points"]) for a in fine["awards"]) == [
        ("Bus journey", 10), ("Hours bonus", 6)]

    with app.app_context():
        action = db.session.get(Action, uuid.UUID(results[0]["action_id"]))
        assert action.status == "flagged" and "Hours bonus" in action.flag_reason
        assert db.session.scalar(select(func.count()).select_from(Posting)
                                 .where(Posting.action_id == action.id)) == 1
    ledger_is_balanced(app)
    assert available_and_awarded(app, world.member_id) == (26, 26)


def test_stored_rule_the_engine_cannot_compile_is_skipped_and_flags(
    client: FlaskClient, app: Flask, world: World
) -> None:
    """A rule saved before a check existed (or edited in the database) must not stop
    every batch: it fails like a rule failing at run time."""
    odd = client.post("/v1/admin/rules", headers=bearer(world.scheme.admin), json={
        "name": "Odd", "action_types": ["bus_journey"], "points": "5", "status": "active",
        "starts_at": iso(datetime.now(UTC) - timedelta(days=30)),
    })
    assert odd.status_code == 201, odd.json
    with app.app_context():
        version = db.session.get(RuleVersion, uuid.UUID(odd.json["version_id"]))
        version.points = "5 +* ("
        db.session.commit()
    response = signed_post(client, world.scheme.source, {"items": [
        tap("odd-1", world.card, _daytime(1, 10))]})
    assert response.status_code == 200, response.json
    assert [(r["status"], r["points"]) for r in response.json["results"]] == [("accepted", 10)]
    with app.app_context():
        action = db.session.get(Action, uuid.UUID(response.json["results"][0]["action_id"]))
        assert action.status == "flagged"
        assert "Odd" in action.flag_reason and "compiled" in action.flag_reason


def test_absurd_points_flag_the_action_instead_of_awarding(
    client: FlaskClient, app: Flask, world: World
) -> None:
    """A formula fed a huge attribute must not overflow the ledger's columns (a 500)."""
    per_km = client.post("/v1/admin/rules", headers=bearer(world.scheme.admin), json={
        "name": "Per km", "action_types": ["bus_journey"],
        "points": "action.attributes.distance_km * 10", "status": "active",
        "starts_at": iso(datetime.now(UTC) - timedelta(days=30)),
    })
    assert per_km.status_code == 201, per_km.json
    response = signed_post(client, world.scheme.source, {"items": [
        tap("far", world.card, _daytime(1, 10), distance_km=4e17),
        tap("near", world.card, _daytime(1, 11), distance_km=2),
    ]})
    assert response.status_code == 200, response.json
    assert [(r["status"], r["points"]) for r in response.json["results"]] == [
        ("accepted", 10), ("accepted", 30)]
    with app.app_context():
        far = db.session.get(Action, uuid.UUID(response.json["results"][0]["action_id"]))
        assert far.status == "flagged" and "Per km" in far.flag_reason
    ledger_is_balanced(app)
    assert available_and_awarded(app, world.member_id) == (40, 40)


def test_engine_failing_outside_a_rule_flags_the_action_not_500(
    client: FlaskClient, app: Flask, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rewards.awarding.decisions as decisions

    real = decisions.evaluate

    def evaluate(rules, action_type, occurred_at, context, usage):
        if context["action"]["attributes"].get("route") == "crash":
            raise Exception("invalid value: floating point")  # as zen raises on bad input
        return real(rules, action_type, occurred_at, context, usage)

    monkeypatch.setattr(decisions, "evaluate", evaluate)
    response = signed_post(client, world.scheme.source, {"items": [
        {**tap("crash", world.card, _daytime(1, 10)), "attributes": {"route": "crash"}},
        tap("fine", world.card, _daytime(1, 11)),
    ]})
    assert response.status_code == 200, response.json
    assert [(r["status"], r["points"]) for r in response.json["results"]] == [
        ("accepted", 0), ("accepted", 10)]
    with app.app_context():
        crash = db.session.get(Action, uuid.UUID(response.json["results"][0]["action_id"]))
        assert crash.status == "flagged" and "Bus journey" in crash.flag_reason


# -- concurrency -------------------------------------------------------------------------------

def post_from_threads(app: Flask, source: dict[str, Any], bodies: list[Any]) -> list[Any]:
    """Each body posted from its own thread and client, all released at once."""
    answers = at_once(app, len(bodies),
                      lambda client, i: signed_post(client, source, bodies[i]))
    for index, answer in enumerate(answers):
        assert answer.status_code == 200, (index, answer.status_code, answer.json)
    return answers


def test_same_batch_from_five_threads_is_counted_once(
    client: FlaskClient, app: Flask, world: World
) -> None:
    token_b, member_b = resident(client, app, "bea@example.org", OTHER_CARD)
    items = [tap(f"c-{h}", world.card, _daytime(1, h)) for h in (8, 9, 10)]
    items += [tap(f"c-b-{h}", OTHER_CARD, _daytime(1, h)) for h in (8, 20)]
    answers = post_from_threads(app, world.scheme.source, [{"items": items}] * 5)

    statuses = [r["status"] for a in answers for r in a.json["results"]]
    assert statuses.count("accepted") == len(items)
    assert statuses.count("duplicate") == 4 * len(items)
    assert set(statuses) == {"accepted", "duplicate"}
    # Every answer names the same action for each ref.
    for position in range(len(items)):
        assert len({a.json["results"][position]["action_id"] for a in answers}) == 1

    with app.app_context():
        refs = db.session.execute(
            select(Action.external_ref, func.count()).group_by(Action.external_ref)).all()
    assert dict(refs) == {item["external_ref"]: 1 for item in items}
    ledger_is_balanced(app)
    assert available_and_awarded(app, world.member_id) == (30, 30)
    assert available_and_awarded(app, member_b) == (25, 25)
    assert client.get("/v1/me/balance", headers=world.me).json["available"] == 30
    assert client.get("/v1/me/balance", headers=bearer(token_b)).json["available"] == 25


def test_concurrent_batches_for_one_member_respect_the_cap(
    client: FlaskClient, app: Flask, world: World
) -> None:
    """Five different batches for the same member and day: four awards in all, not
    four per batch."""
    bodies = [{"items": [tap(f"p-{t}-{n}", world.card, _daytime(2, 8 + n, t))
                         for n in range(2)]} for t in range(5)]
    answers = post_from_threads(app, world.scheme.source, bodies)
    points = [r["points"] for a in answers for r in a.json["results"]]
    assert len(points) == 10 and sorted(points) == [0] * 6 + [10] * 4
    ledger_is_balanced(app)
    assert available_and_awarded(app, world.member_id) == (40, 40)


def test_concurrent_batches_respect_a_rule_budget(
    client: FlaskClient, app: Flask, world: World
) -> None:
    """A budget is shared by all members: batches for different members at once
    cannot together spend more than it."""
    budgeted = client.post("/v1/admin/rules", headers=bearer(world.scheme.admin), json={
        "name": "Launch week", "action_types": ["bus_journey"], "points": "5",
        "budget_points": 20, "status": "active",
        "starts_at": iso(datetime.now(UTC) - timedelta(days=30)),
    })
    assert budgeted.status_code == 201, budgeted.json
    cards = [world.card] + [f"7000 0000 0000 000{n}" for n in range(4)]
    for n, card in enumerate(cards[1:]):
        resident(client, app, f"m{n}@example.org", card)
    bodies = [{"items": [tap(f"b-{n}-{h}", card, _daytime(1, h)) for h in (9, 10)]}
              for n, card in enumerate(cards)]
    post_from_threads(app, world.scheme.source, bodies)
    with app.app_context():
        spent = db.session.scalar(
            select(func.sum(Award.points)).where(Award.rule_id == uuid.UUID(budgeted.json["id"])))
        capped = db.session.scalar(
            select(func.count()).select_from(Award).where(Award.capped_by == "budget"))
    assert spent == 20
    assert capped == 6
    ledger_is_balanced(app)
