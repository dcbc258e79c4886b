"""Events with claim codes through HTTP: staff create them (shared or single-use codes, a
printable sheet), residents claim once each, inside the window, up to the limit."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from rewards.actions.claims import CODE_ALPHABET
from rewards.extensions import db
from rewards.models import Action, AuditEntry
from rewards.models.event import Event, EventClaim

from .helpers import at_once, bearer, iso, staff_token
from .ways_in import add_type_and_rule, assert_error, balance, counts, resident


@pytest.fixture
def manager(client: FlaskClient, app: Flask) -> dict[str, str]:
    headers = bearer(staff_token(client, app, "scheme_manager"))
    admin = bearer(staff_token(client, app, "admin"))
    add_type_and_rule(client, admin, "volunteer_session", "volunteering",
                      "action.attributes.hours * 10")
    return headers


def _event(client: FlaskClient, manager: dict[str, str], **body: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    payload = {"name": "Beach clean, Roundhay", "action_type": "volunteer_session",
               "starts_at": iso(now - timedelta(hours=1)), "ends_at": iso(now + timedelta(hours=2)),
               "attributes": {"hours": 2}, **body}
    response = client.post("/v1/admin/events", json=payload, headers=manager)
    assert response.status_code == 201, response.json
    return response.json


def _claim(client: FlaskClient, me: dict[str, str], code: str, **headers: str) -> Any:
    return client.post("/v1/me/claims", json={"code": code}, headers={**me, **headers})


CODE = re.compile(f"^[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}$")


def test_a_shared_code_is_claimed_once_by_each_member(
    client: FlaskClient, app: Flask, manager: dict[str, str]
) -> None:
    event = _event(client, manager)
    assert CODE.match(event["code"]), event["code"]
    assert event["mode"] == "shared" and event["codes"] == [] and event["claims"] == 0
    amira, amira_id = resident(client, app, "amira@example.org")
    bea, _ = resident(client, app, "bea@example.org")

    claimed = _claim(client, amira, event["code"])
    assert claimed.status_code == 201, claimed.json
    body = claimed.json
    assert (body["status"], body["points"], body["type"]) == ("accepted", 20, "volunteer_session")
    assert body["event_id"] == event["id"] and body["event_name"] == event["name"]
    assert [(a["rule_name"], a["points"]) for a in body["awards"]] == [
        ("volunteer_session points", 20)]
    assert balance(client, amira) == 20
    # Lower case, spaces instead of hyphens: the same code.
    typed = event["code"].lower().replace("-", " ")
    assert _claim(client, bea, typed).status_code == 201

    before = counts(app, EventClaim)
    again = assert_error(_claim(client, amira, event["code"]), 409)
    assert "already claimed" in again["message"]
    assert counts(app, EventClaim) == before
    assert balance(client, amira) == 20

    with app.app_context():
        action = db.session.get(Action, uuid.UUID(body["id"]))
        assert action.source_id is None and action.origin == "claim"
        assert action.external_ref == f"event:{event['id']}:{amira_id}"
        assert action.attributes == {"hours": 2, "event_id": event["id"]}
    mine = client.get("/v1/me/actions", headers=amira).json
    assert [(a["id"], a["points"]) for a in mine] == [(body["id"], 20)]
    shown = client.get(f"/v1/admin/events/{event['id']}", headers=manager).json
    assert shown["claims"] == 2 and shown["code"] == event["code"]


def test_unknown_codes_and_the_window(client: FlaskClient, app: Flask,
                                      manager: dict[str, str]) -> None:
    me, _ = resident(client, app, "amira@example.org")
    now = datetime.now(UTC)
    later = _event(client, manager, starts_at=iso(now + timedelta(hours=1)),
                   ends_at=iso(now + timedelta(hours=3)))
    over = _event(client, manager, starts_at=iso(now - timedelta(hours=3)),
                  ends_at=iso(now - timedelta(minutes=1)))
    before = counts(app, EventClaim)
    for code in ("ABCD-EFGH-JKMN", "not a code", "0000-0000-0000", "x" * 64):
        assert "No such claim code" in assert_error(_claim(client, me, code), 404)["message"]
    early = assert_error(_claim(client, me, later["code"]), 409)
    assert "open at" in early["message"]
    gone = assert_error(_claim(client, me, over["code"]), 410)
    assert "closed at" in gone["message"]
    assert counts(app, EventClaim) == before
    assert_error(client.post("/v1/me/claims", json={}, headers=me), 422)
    assert_error(client.post("/v1/me/claims", json={"code": 42}, headers=me), 422)
    assert_error(client.post("/v1/me/claims", json={"code": "ABCD-EFGH-JKMN"}), 401)
    assert_error(client.post("/v1/me/claims", json={"code": "ABCD-EFGH-JKMN"}, headers=manager),
                 403)


def test_max_claims_is_a_hard_limit(client: FlaskClient, app: Flask,
                                    manager: dict[str, str]) -> None:
    event = _event(client, manager, max_claims=2)
    members = [resident(client, app, f"m{n}@example.org")[0] for n in range(3)]
    assert [_claim(client, me, event["code"]).status_code for me in members[:2]] == [201, 201]
    full = assert_error(_claim(client, members[2], event["code"]), 409)
    assert "all the claims it allows (2)" in full["message"]
    assert balance(client, members[2]) == 0
    with app.app_context():
        assert db.session.get(Event, uuid.UUID(event["id"])).claims == 2


def test_single_use_codes_work_once_each(client: FlaskClient, app: Flask,
                                         manager: dict[str, str]) -> None:
    event = _event(client, manager, mode="single_use", codes=3)
    codes = [c["code"] for c in event["codes"]]
    assert len(set(codes)) == 3 and all(CODE.match(c) for c in codes)
    assert event["code"] is None
    amira, _ = resident(client, app, "amira@example.org")
    bea, _ = resident(client, app, "bea@example.org")
    assert _claim(client, amira, codes[0]).status_code == 201
    used = assert_error(_claim(client, bea, codes[0]), 409)
    assert "used already" in used["message"]
    # One claim per member whatever the code.
    assert "already claimed" in assert_error(_claim(client, amira, codes[1]), 409)["message"]
    assert _claim(client, bea, codes[1]).status_code == 201
    shown = client.get(f"/v1/admin/events/{event['id']}", headers=manager).json
    assert [c["claimed_at"] is not None for c in shown["codes"]].count(True) == 2
    assert shown["claims"] == 2


def test_a_claim_retried_with_its_idempotency_key_is_replayed(
    client: FlaskClient, app: Flask, manager: dict[str, str]
) -> None:
    event = _event(client, manager)
    me, _ = resident(client, app, "amira@example.org")
    first = _claim(client, me, event["code"], **{"Idempotency-Key": "claim-1"})
    again = _claim(client, me, event["code"], **{"Idempotency-Key": "claim-1"})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert balance(client, me) == 20


def test_event_input_is_checked(client: FlaskClient, app: Flask,
                                manager: dict[str, str]) -> None:
    now = datetime.now(UTC)
    base = {"name": "Litter pick", "action_type": "volunteer_session",
            "starts_at": iso(now), "ends_at": iso(now + timedelta(hours=2))}
    cases = [
        ({**base, "ends_at": iso(now - timedelta(hours=1))}, "ends_at"),
        ({**base, "mode": "single_use"}, "codes"),
        ({**base, "mode": "single_use", "codes": 1001}, "codes"),
        ({**base, "codes": 5}, "codes"),
        ({**base, "mode": "raffle"}, "mode"),
        ({**base, "max_claims": 0}, "max_claims"),
        ({**base, "starts_at": "2026-11-20T08:00:00"}, "starts_at"),
        ({**base, "action_type": "taxi_ride"}, "action_type"),
        ({**base, "attributes": {"note": "x" * 5000}}, "attributes"),
        ({**base, "attributes": {"note": "\u0000"}}, "attributes"),
        ({**base, "attributes": {"\ud800": 1}}, "attributes"),
        ({**base, "name": "Beach\u0000clean"}, "name"),
        ({**base, "action_type": "volunteer\u0000session"}, "action_type"),
        ({key: value for key, value in base.items() if key != "name"}, "name"),
    ]
    before = counts(app, Event)
    for body, field in cases:
        error = assert_error(client.post("/v1/admin/events", json=body, headers=manager), 422)
        assert field in error["errors"], (body, error)
    assert counts(app, Event) == before
    reviewer = bearer(staff_token(client, app, "reviewer"))
    assert_error(client.post("/v1/admin/events", json=base, headers=reviewer), 403)
    assert_error(client.get(f"/v1/admin/events/{uuid.uuid4()}", headers=manager), 404)
    made = _event(client, manager)
    listed = client.get("/v1/admin/events", headers=manager)
    assert [e["id"] for e in listed.json] == [made["id"]] and "X-Pagination" in listed.headers
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.target_type == "event")
                                   ).one()
        assert entry.action == "create" and entry.details["mode"] == "shared"


def assert_refused_page(response: Any) -> None:
    """The sheet is a page a person opens: refused, it answers a page (401), not JSON."""
    assert response.status_code == 401, (response.status_code, response.data[:300])
    assert response.mimetype == "text/html"
    assert b"Traceback" not in response.data


def test_the_printable_sheet(client: FlaskClient, app: Flask, manager: dict[str, str]) -> None:
    event = _event(client, manager, mode="single_use", codes=4)
    me, _ = resident(client, app, "amira@example.org")
    _claim(client, me, event["codes"][0]["code"])
    page = client.get(event["sheet_url"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count("<svg") == 4
    assert all(c["code"] in html for c in event["codes"])
    assert html.count('class="card used"') == 1
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "script" not in html.lower()
    # Its own policy (no scripts at all) still forbids framing, as every page's does:
    # the signed link opens the sheet for anyone who has it, inside a frame too.
    policy = [part.strip() for part in page.headers["Content-Security-Policy"].split(";")]
    assert {"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'",
            "form-action 'none'"} <= set(policy)
    assert page.headers["X-Frame-Options"] == "DENY"

    sheet = f"/staff/events/{event['id']}/sheet"
    assert_refused_page(client.get(sheet))
    assert_refused_page(client.get(sheet + "?token=nonsense"))
    other = _event(client, manager)
    assert_refused_page(client.get(sheet + "?" + other["sheet_url"].split("?", 1)[1]))
    # A scheme manager's bearer token opens it too (for scripts); other roles' do not.
    assert client.get(sheet, headers=manager).status_code == 200
    assert_refused_page(client.get(sheet, headers=bearer(staff_token(client, app, "reviewer"))))
    assert_refused_page(client.get(sheet, headers=me))
    # The sheet token opens no API.
    token = event["sheet_url"].split("token=", 1)[1]
    assert_error(client.get("/v1/admin/events", headers=bearer(token)), 401)
    shared = client.get(other["sheet_url"])
    assert shared.status_code == 200 and shared.get_data(as_text=True).count("<svg") == 1


def test_the_sheet_link_expires(client: FlaskClient, app: Flask,
                                manager: dict[str, str]) -> None:
    saved = app.config["EVENT_SHEET_LINK_TTL"]
    app.config["EVENT_SHEET_LINK_TTL"] = -10
    try:
        event = _event(client, manager)
    finally:
        app.config["EVENT_SHEET_LINK_TTL"] = saved
    assert_refused_page(client.get(event["sheet_url"]))


def test_an_event_that_has_ended_is_410_even_if_it_was_open(
    client: FlaskClient, app: Flask, manager: dict[str, str]
) -> None:
    event = _event(client, manager)
    me, _ = resident(client, app, "amira@example.org")
    with app.app_context():
        db.session.execute(update(Event).values(ends_at=datetime.now(UTC) - timedelta(seconds=1)))
        db.session.commit()
    assert_error(_claim(client, me, event["code"]), 410)
    assert balance(client, me) == 0


def _from_threads(app: Flask, calls: list[tuple[dict[str, str], str]]) -> list[Any]:
    """Each claim from its own thread and client, all released at once."""
    return at_once(app, len(calls), lambda client, n: _claim(client, *calls[n]))


def test_concurrent_claims_respect_the_limit_and_once_per_member(
    client: FlaskClient, app: Flask, manager: dict[str, str]
) -> None:
    event = _event(client, manager, max_claims=3)
    members = [resident(client, app, f"c{n}@example.org")[0] for n in range(6)]
    answers = _from_threads(app, [(me, event["code"]) for me in members])
    assert sorted(a.status_code for a in answers) == [201] * 3 + [409] * 3
    same = _event(client, manager, name="Park run")
    answers = _from_threads(app, [(members[0], same["code"])] * 4)
    assert sorted(a.status_code for a in answers) == [201] + [409] * 3
    with app.app_context():
        claims = db.session.scalars(select(EventClaim)).all()
        assert len(claims) == 4
        assert db.session.get(Event, uuid.UUID(event["id"])).claims == 3
    assert sum(balance(client, me) for me in members) == 4 * 20
