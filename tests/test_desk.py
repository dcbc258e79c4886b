"""Assisted enrolment at a council desk through HTTP: a card, a postcode district and a
PIN make a member with no email, who earns from the card's taps like anyone."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.extensions import db
from rewards.members import PinRefused, check_card_pin
from rewards.models import AuditEntry, Identifier, Member

from .helpers import bearer, build_scheme, signed_post, staff_token, tap
from .ways_in import assert_error, counts, daytime

CARD = "6335 0099 8877 6655"


@pytest.fixture
def desk(client: FlaskClient, app: Flask) -> dict[str, str]:
    return bearer(staff_token(client, app, "desk"))


def _enrol(client: FlaskClient, headers: dict[str, str], **changes: Any) -> Any:
    body = {"card": {"kind": "travel_card", "number": CARD}, "postcode_district": "ls6",
            "pin": "4071", **changes}
    return client.post("/v1/admin/members", json=body, headers=headers)


def test_desk_enrols_a_member_who_then_earns_from_taps(
    client: FlaskClient, app: Flask, desk: dict[str, str]
) -> None:
    response = _enrol(client, desk)
    assert response.status_code == 201, response.json
    enrolled = response.json
    assert enrolled["postcode_district"] == "LS6"
    assert enrolled["card"]["kind"] == "travel_card" and enrolled["card"]["last4"] == "6655"
    assert "4071" not in response.get_data(as_text=True)
    assert CARD.replace(" ", "") not in response.get_data(as_text=True)
    member_id = uuid.UUID(enrolled["id"])

    with app.app_context():
        member = db.session.get(Member, member_id)
        assert member.email is None and member.enrolled_by is not None
        assert member.pin_hash and "4071" not in member.pin_hash
        assert check_card_pin(db.session, "travel_card", CARD, "4071").id == member_id
        with pytest.raises(PinRefused):
            check_card_pin(db.session, "travel_card", CARD, "4072")
        db.session.rollback()
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "enrol")).one()
        assert entry.actor_role == "desk" and entry.target_id == str(member_id)
        assert entry.details == {"card_kind": "travel_card", "card_last4": "6655",
                                 "postcode_district": "LS6"}
        assert "4071" not in json.dumps(entry.details)

    scheme = build_scheme(client, app)
    sent = signed_post(client, scheme.source, {"items": [tap("desk-1", CARD, daytime(1, 9))]})
    [result] = sent.json["results"]
    assert (result["status"], result["points"]) == ("accepted", 10)
    support = client.get(f"/v1/admin/members/{member_id}", headers=bearer(scheme.admin)).json
    assert support["balances"]["available"] == 10


def test_a_card_already_linked_is_409_and_creates_nobody(
    client: FlaskClient, app: Flask, desk: dict[str, str]
) -> None:
    assert _enrol(client, desk).status_code == 201
    before = counts(app, Identifier)
    again = assert_error(_enrol(client, desk, postcode_district="LS10", pin="5093"), 409)
    assert "already linked" in again["message"]
    # The same card written differently is the same card.
    assert_error(_enrol(client, desk, card={"kind": "travel_card",
                                            "number": CARD.replace(" ", "-")}), 409)
    assert counts(app, Identifier) == before


@pytest.mark.parametrize(("changes", "field"), [
    ({"pin": "123"}, "pin"),
    ({"pin": "1234567"}, "pin"),
    ({"pin": "12a4"}, "pin"),
    ({"pin": "1234"}, "pin"),
    ({"pin": "0000"}, "pin"),
    ({"pin": "9876"}, "pin"),
    ({"postcode_district": "LS6 3AB"}, "postcode_district"),
    ({"postcode_district": "Leeds"}, "postcode_district"),
    ({"card": {"kind": "travel_card", "number": "12"}}, "card"),
    ({"card": {"kind": "store_card", "number": CARD}}, "card"),
    ({"card": None}, "card"),
    ({"email": "someone@example.org"}, "email"),
])
def test_bad_enrolments_are_422_and_create_nobody(
    client: FlaskClient, app: Flask, desk: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    before = counts(app, Identifier)
    error = assert_error(_enrol(client, desk, **changes), 422)
    assert field in error["errors"], error
    assert "4071" not in json.dumps(error)
    assert counts(app, Identifier) == before


def test_enrolment_is_for_desk_staff(client: FlaskClient, app: Flask) -> None:
    for role in ("reviewer", "analyst", "scheme_manager"):
        assert_error(_enrol(client, bearer(staff_token(client, app, role))), 403)
    assert_error(_enrol(client, {}), 401)
    assert _enrol(client, bearer(staff_token(client, app, "admin"))).status_code == 201


def test_desk_resets_a_forgotten_pin_and_lifts_the_lockout(
    client: FlaskClient, app: Flask, desk: dict[str, str]
) -> None:
    member_id = _enrol(client, desk).json["id"]
    with app.app_context():
        for _ in range(5):
            with pytest.raises(PinRefused):
                check_card_pin(db.session, "travel_card", CARD, "1111")
            db.session.commit()
        with pytest.raises(PinRefused, match="Too many"):
            check_card_pin(db.session, "travel_card", CARD, "4071")
        db.session.rollback()
    url = f"/v1/admin/members/{member_id}/pin"
    assert "pin" in assert_error(client.post(url, json={"pin": "2222"}, headers=desk),
                                 422)["errors"]
    assert client.post(url, json={"pin": "3850"}, headers=desk).status_code == 204
    with app.app_context():
        assert str(check_card_pin(db.session, "travel_card", CARD, "3850").id) == member_id
        db.session.rollback()
        assert db.session.scalars(select(AuditEntry).where(AuditEntry.action == "reset_pin")
                                  ).one().target_id == member_id
    assert_error(client.post(f"/v1/admin/members/{uuid.uuid4()}/pin", json={"pin": "3850"},
                             headers=desk), 404)
    assert_error(client.post(url, json={"pin": "3850"},
                             headers=bearer(staff_token(client, app, "reviewer"))), 403)


def test_a_member_with_an_address_is_told_when_a_desk_sets_their_pin(
    client: FlaskClient, app: Flask, desk: dict[str, str]
) -> None:
    """A PIN spends the member's points at a till: an app member whose PIN a desk sets
    hears of it at their address (in their language); a desk-only member has none."""
    from .reward_support import resident

    me = resident(client, app)
    assert client.patch("/v1/me", json={"locale": "cy"}, headers=me.headers).status_code == 200
    sent = len(app.extensions["sent_mail"])
    answer = client.post(f"/v1/admin/members/{me.id}/pin", json={"pin": "3850"},
                         headers=desk)
    assert answer.status_code == 204
    [notice] = app.extensions["sent_mail"][sent:]
    assert notice["To"] == me.email
    assert "PIN" in notice["Subject"] and "desg" in notice.get_content()
    assert "3850" not in notice.get_content()  # never the PIN itself
    desk_only = _enrol(client, desk).json["id"]
    sent = len(app.extensions["sent_mail"])
    assert client.post(f"/v1/admin/members/{desk_only}/pin", json={"pin": "4071"},
                       headers=desk).status_code == 204
    assert app.extensions["sent_mail"][sent:] == []


def test_a_council_sets_what_its_desks_record_of_a_postcode(
        client: FlaskClient, app: Flask, desk: dict[str, str], monkeypatch) -> None:
    """Bologna records the whole CAP (five digits); the UK outward code is the default."""
    monkeypatch.setitem(app.config, "POSTCODE_DISTRICT_PATTERN", "[0-9]{5}")
    refused = _enrol(client, desk, postcode_district="LS6",
                     card={"kind": "travel_card", "number": "6335 0099 1111 2222"})
    assert refused.status_code == 422 and "postcode_district" in refused.json["errors"]
    enrolled = _enrol(client, desk, postcode_district=" 40121 ",
                      card={"kind": "travel_card", "number": "6335 0099 1111 2222"})
    assert enrolled.status_code == 201, enrolled.json
    assert enrolled.json["postcode_district"] == "40121"
