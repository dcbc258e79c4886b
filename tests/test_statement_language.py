"""Statements and actions in the member's language: what the scheme wrote (claims,
vouchers, expiry, award lines naming rules) in Welsh for a Welsh reader; rule names from
the rules' own translations; action types by name; staff's own words as typed."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from rewards.extensions import db
from rewards.models import ActionType, Offer
from rewards.statement_text import say

from .helpers import bearer, build_scheme, link, signed_post, staff_token, tap
from .reward_support import resident
from .test_flow import _daytime

CARD = "6335 0012 3456 7301"


def test_scheme_words_are_said_in_welsh() -> None:
    names = {"Bus journey": "Taith bws"}
    assert say("Claimed: Flat white", "cy") == "Hawliwyd: Flat white"
    assert say("Claimed: Flat white", "en") == "Claimed: Flat white"
    titles = {"Flat white": "Gwyn fflat"}  # an offer's title where it has a translation
    assert say("Claimed: Flat white", "cy", names, titles) == "Hawliwyd: Gwyn fflat"
    assert say("Now spendable: Claimed: Flat white", "cy", names, titles) == \
        "Ar gael i'w gwario nawr: Hawliwyd: Gwyn fflat"
    assert say("Claimed: Flat white", "en", names, titles) == "Claimed: Flat white"
    assert say("Bus journey v2 + Boost v1", "cy", names) == "Taith bws v2 + Boost v1"
    assert say("Now spendable: Bus journey v1", "cy", names) == \
        "Ar gael i'w gwario nawr: Taith bws v1"
    assert say("Voucher expired unused: Swim; points returned", "cy") == \
        "Daeth y daleb i ben heb ei defnyddio: Swim; pwyntiau wedi'u dychwelyd"
    assert say("Revoked by First Bus", "cy") == "Diddymwyd gan First Bus"
    assert say("Card lost in the post", "cy", names) == "Card lost in the post"  # staff's words
    assert say("Unknown rule v1", "cy", names) == "Unknown rule v1"
    assert say(None, "cy") is None


def test_a_welsh_reader_sees_their_statement_and_actions_in_welsh(client: FlaskClient,
                                                                   app: Flask) -> None:
    scheme = build_scheme(client, app, cost_points=10)
    admin = bearer(scheme.admin)
    rule_path = f"/v1/admin/rules/{scheme.rule['id']}"
    version = scheme.rule["version"]
    named = client.patch(rule_path, json={"translations": {"cy": {"name": "Taith bws"}}},
                         headers=admin)
    assert named.status_code == 200, named.json
    # A translated name is the rule's, not a new version of what it awards.
    assert named.json["version"] == version
    assert named.json["translations"] == {"cy": {"name": "Taith bws"}}
    assert client.patch(rule_path, json={"translations": {"Welsh": {"name": "x"}}},
                        headers=admin).status_code == 422
    with app.app_context():
        db.session.execute(update(ActionType).where(ActionType.code == "bus_journey")
                           .values(translations={"cy": {"name": "Taith ar fws"}}))
        db.session.execute(update(Offer).where(Offer.title == "Flat white")
                           .values(translations={"cy": {"title": "Gwyn fflat"}}))
        db.session.commit()

    member = resident(client, app, locale="cy")
    assert link(client, app, member.headers, CARD).status_code == 201
    batch = {"items": [tap("s1", CARD, _daytime(1, 10))]}
    assert signed_post(client, scheme.source, batch).json["results"][0]["points"] == 10
    assert client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]},
                       headers=member.headers).status_code == 202

    ledger = client.get("/v1/me/ledger", headers=member.headers)
    assert ledger.headers["Content-Language"] == "cy"
    reasons = [line["reason"] for line in ledger.json]
    assert "Taith bws v1" in reasons
    assert any(reason.startswith("Hawliwyd: Gwyn fflat") for reason in reasons)
    english = client.get("/v1/me/ledger", headers={**member.headers, "Accept-Language": "en"})
    assert "Bus journey v1" in [line["reason"] for line in english.json]

    actions = client.get("/v1/me/actions", headers=member.headers).json
    assert actions[0]["type"] == "bus_journey"
    assert actions[0]["awards"][0]["rule_name"] == "Taith bws"
    assert actions[0]["type_name"] == "Taith ar fws"
    english_actions = client.get("/v1/me/actions",
                                 headers={**member.headers, "Accept-Language": "en"}).json
    assert english_actions[0]["type_name"] == "Bus journey"
    assert english_actions[0]["awards"][0]["rule_name"] == "Bus journey"


def test_staff_name_an_existing_action_type_in_welsh(client: FlaskClient, app: Flask) -> None:
    """A type made before its Welsh name was known gets it later; code and category
    stay as rules, sources and the dashboard know them; the change is audited."""
    scheme = build_scheme(client, app)
    admin = bearer(scheme.admin)
    path = "/v1/admin/action-types/bus_journey"
    named = client.patch(path, headers=admin, json={
        "translations": {"cy": {"name": "Taith ar fws", "description": "Taith gyda cherdyn"}}})
    assert named.status_code == 200, named.json
    assert named.json["code"] == "bus_journey" and named.json["category"] == "travel"
    assert named.json["translations"]["cy"]["name"] == "Taith ar fws"
    listed = client.get("/v1/action-types", headers={"Accept-Language": "cy"}).json
    assert "Taith ar fws" in str(listed)
    assert client.patch(path, headers=admin, json={"category": "health"}).status_code == 422
    assert client.patch(path, headers=admin, json={"name": ""}).status_code == 422
    missing = client.patch("/v1/admin/action-types/no_such_type", headers=admin,
                           json={"name": "X"})
    assert missing.status_code == 404 and missing.json["reason"] == "not_found"
    analyst = bearer(staff_token(client, app, "analyst"))
    assert client.patch(path, headers=analyst, json={"name": "X"}).status_code == 403
    log = client.get("/v1/admin/audit-log", headers=admin).json
    [entry] = [e for e in log if (e["action"], e["target_type"]) == ("update", "action_type")]
    assert entry["target_id"] == named.json["id"]
    assert entry["details"]["fields"] == ["translations"]
