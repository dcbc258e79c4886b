"""Volume: one resident, partner or source must not grow stored data, queued work or
the size of an answer without bound. Long lists are refused before they are read;
what waits for staff, and what an account keeps, has a cap per account."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from rewards.extensions import db
from rewards.limits import limiter
from rewards.models import Action, Device, Offer
from rewards.models.privacy import Consent
from rewards.models.review import SelfReport

from ..helpers import at_once, bearer, build_scheme, iso, link, signed_post, staff_token, tap
from ..reward_support import admin_headers, make_partner, partner_user, resident
from ..ways_in import add_type_and_rule, daytime

# Under JSON_MAX_VALUES (5000, which refuses a whole body past it), far over each bound.
MANY = 4000


def _count(app: Flask, model: type, *where: object) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(model).where(*where)))


def test_a_long_list_of_consents_is_refused_before_its_items_are_read(
    client: FlaskClient, app: Flask
) -> None:
    me = resident(client, app)
    before = _count(app, Consent)
    body = json.dumps({"consents": [{}] * MANY})
    answer = client.put("/v1/me/consents", data=body, headers={
        **me.headers, "Content-Type": "application/json"})
    assert answer.status_code == 422
    # One error for the list, not one per item (200,000 such answered 31 MB).
    assert answer.json["errors"] == {"consents": ["At most 5 items."]}
    assert len(answer.get_data()) < 1000
    # Past JSON_MAX_VALUES the body is refused whole, as briefly.
    huge = json.dumps({"consents": [{}] * 200_000})
    answer = client.put("/v1/me/consents", data=huge, headers={
        **me.headers, "Content-Type": "application/json"})
    assert answer.json["errors"] == {"body": ["The body holds more than 5000 values."]}
    assert _count(app, Consent) == before
    # Five is still a list it takes.
    five = [{"purpose": "research", "granted": True}] * 5
    assert client.put("/v1/me/consents", json={"consents": five},
                      headers=me.headers).status_code == 200


def test_a_proposal_with_long_lists_is_refused_before_they_are_read(
    client: FlaskClient, app: Flask
) -> None:
    manager = admin_headers(client, app)
    partner = make_partner(client, manager)
    user = partner_user(client, app, partner["id"])
    offer = {"title": "Cake", "cost_points": 5}
    wards = client.post("/v1/partner/offers", headers=user,
                        json={**offer, "eligible_wards": [""] * MANY})
    assert wards.status_code == 422
    assert wards.json["errors"] == {"eligible_wards": ["At most 200 items."]}
    languages = {f"{a}{b}{c}": {"title": ""} for a in "abcdefghij" for b in "abcdefghij"
                 for c in "abcdefghij"}
    translations = client.post("/v1/partner/offers", headers=user,
                               json={**offer, "translations": languages})
    assert translations.status_code == 422
    assert translations.json["errors"] == {"translations": ["At most 50 entries."]}
    assert len(wards.get_data()) + len(translations.get_data()) < 2000
    assert _count(app, Offer) == 0
    welsh = client.post("/v1/partner/offers", headers=user,
                        json={**offer, "translations": {"cy": {"title": "Cacen"}}})
    assert welsh.status_code == 201, welsh.json


def test_the_spec_gives_the_bounds_of_the_lists(app: Flask) -> None:
    from rewards.extensions import api

    with app.app_context():
        schemas = api.spec.to_dict()["components"]["schemas"]
    assert schemas["ConsentsIn"]["properties"]["consents"]["maxItems"] == 5
    assert schemas["OfferTerms"]["properties"]["eligible_wards"]["maxItems"] == 200
    assert schemas["OfferTerms"]["properties"]["translations"]["maxProperties"] == 50


@pytest.fixture
def setting(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Any], None]:
    def set_it(name: str, value: Any) -> None:
        monkeypatch.setitem(app.config, name, value)

    return set_it


# -- what waits for staff -------------------------------------------------------------------

def test_a_partner_has_at_most_so_many_proposals_waiting(
    client: FlaskClient, app: Flask, setting: Callable[[str, Any], None]
) -> None:
    setting("OFFER_PROPOSALS_PENDING_MAX", 3)
    manager = admin_headers(client, app)
    partner = make_partner(client, manager)
    user = partner_user(client, app, partner["id"])

    def propose(title: str) -> Any:
        return client.post("/v1/partner/offers", json={"title": title, "cost_points": 5},
                           headers=user)

    made = [propose(f"Offer {n}") for n in range(3)]
    assert [answer.status_code for answer in made] == [201, 201, 201]
    refused = propose("One too many")
    assert refused.status_code == 409
    assert refused.json["reason"] == "too_many_pending"
    assert "3 offers waiting" in refused.json["message"]
    assert _count(app, Offer) == 3
    # Another partner has its own count.
    other = partner_user(client, app, make_partner(client, manager)["id"])
    assert client.post("/v1/partner/offers", json={"title": "Tea", "cost_points": 5},
                       headers=other).status_code == 201
    # A decision makes room: rejected or approved, it no longer waits.
    assert client.post(f"/v1/admin/offers/{made[0].json['id']}/reject",
                       json={"reason": "Not for us."}, headers=manager).status_code == 200
    assert propose("Room again").status_code == 201
    assert propose("Full again").status_code == 409
    with app.app_context():
        titles = set(db.session.scalars(select(Offer.title)))
    assert "One too many" not in titles and "Full again" not in titles


def test_concurrent_proposals_stop_at_the_cap(
    client: FlaskClient, app: Flask, setting: Callable[[str, Any], None]
) -> None:
    setting("OFFER_PROPOSALS_PENDING_MAX", 4)
    manager = admin_headers(client, app)
    partner = make_partner(client, manager)
    user = partner_user(client, app, partner["id"])

    def propose(own: FlaskClient, index: int) -> int:
        return own.post("/v1/partner/offers", json={"title": f"Offer {index}",
                                                    "cost_points": 5},
                        headers=user).status_code

    assert Counter(at_once(app, 12, propose)) == {201: 4, 409: 8}
    assert _count(app, Offer) == 4


def _self_report(client: FlaskClient, headers: dict[str, str], index: int) -> Any:
    return client.post("/v1/me/self-reports", content_type="multipart/form-data",
                       headers=headers, data={
                           "type": "litter_pick", "occurred_at": iso(daytime(1, 10)),
                           "description": f"Litter pick number {index}"})


def test_a_member_has_at_most_so_many_self_reports_waiting(
    client: FlaskClient, app: Flask, setting: Callable[[str, Any], None]
) -> None:
    setting("SELF_REPORTS_PER_DAY", 100)
    setting("RATE_LIMIT_SELF_REPORT", "1000 per minute")
    setting("SELF_REPORTS_PENDING_MAX", 3)
    admin = bearer(staff_token(client, app, "admin"))
    add_type_and_rule(client, admin, "litter_pick", "climate", "15")
    person = resident(client, app)

    made = [_self_report(client, person.headers, n) for n in range(3)]
    assert [answer.status_code for answer in made] == [202, 202, 202]
    refused = _self_report(client, person.headers, 3)
    assert refused.status_code == 409
    assert refused.json["reason"] == "too_many_pending"
    assert _count(app, SelfReport) == 3
    # Someone else's queue is their own.
    assert _self_report(client, resident(client, app).headers, 0).status_code == 202
    # Once a reviewer decides one, there is room for one more.
    reviewer = bearer(staff_token(client, app, "reviewer"))
    decided = client.post(f"/v1/admin/reviews/{made[0].json['action_id']}/reject",
                          json={"reason": "No photo."}, headers=reviewer)
    assert decided.status_code == 200, decided.json
    assert _self_report(client, person.headers, 4).status_code == 202
    assert _self_report(client, person.headers, 5).status_code == 409
    assert _count(app, SelfReport) == 5


def test_welsh_says_why_when_too_many_wait(
    client: FlaskClient, app: Flask, setting: Callable[[str, Any], None]
) -> None:
    from rewards.reasons_cy import WELSH

    setting("OFFER_PROPOSALS_PENDING_MAX", 0)
    manager = admin_headers(client, app)
    user = partner_user(client, app, make_partner(client, manager)["id"])
    refused = client.post("/v1/partner/offers", json={"title": "Tea", "cost_points": 5},
                          headers={**user, "Accept-Language": "cy"})
    assert refused.status_code == 409
    assert refused.json["message"] == WELSH["too_many_pending"]


# -- what an account keeps ------------------------------------------------------------------

def _register(client: FlaskClient, headers: dict[str, str], token: str) -> Any:
    return client.post("/v1/me/devices", json={"platform": "fcm", "token": token},
                       headers=headers)


def test_a_member_has_at_most_so_many_devices_even_moving_them_in(
    client: FlaskClient, app: Flask, setting: Callable[[str, Any], None]
) -> None:
    setting("DEVICES_PER_MEMBER", 2)
    me, other = resident(client, app), resident(client, app)
    assert [_register(client, me.headers, f"token-mine-{n}").status_code
            for n in range(2)] == [201, 201]
    refused = _register(client, me.headers, "token-mine-3")
    assert refused.status_code == 409
    assert refused.json["reason"] == "too_many_devices"
    # A token of another account would move here: it counts as one more device.
    assert _register(client, other.headers, "token-theirs").status_code == 201
    moved = _register(client, me.headers, "token-theirs")
    assert moved.status_code == 409 and moved.json["reason"] == "too_many_devices"
    with app.app_context():
        owners = Counter(db.session.scalars(select(Device.member_id)))
    assert sorted(owners.values()) == [1, 2]  # nothing moved, nothing added
    # A token already here is registered again freely; with room, a token moves in.
    assert _register(client, me.headers, "token-mine-0").status_code == 201
    listed = client.get("/v1/me/devices", headers=me.headers).json
    assert client.delete(f"/v1/me/devices/{listed[0]['id']}",
                         headers=me.headers).status_code == 204
    assert _register(client, me.headers, "token-theirs").status_code == 201
    assert client.get("/v1/me/devices", headers=other.headers).json == []


def test_concurrent_registrations_stop_at_the_cap(
    client: FlaskClient, app: Flask, setting: Callable[[str, Any], None]
) -> None:
    setting("DEVICES_PER_MEMBER", 3)
    me = resident(client, app)

    def register(own: FlaskClient, index: int) -> int:
        return _register(own, me.headers, f"token-at-once-{index}").status_code

    assert Counter(at_once(app, 10, register)) == {201: 3, 409: 7}
    assert _count(app, Device) == 3


# -- rates ------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting_name", ["RATE_LIMIT_CONSENTS", "RATE_LIMIT_EXPORT",
                                          "RATE_LIMIT_CLAIM"])
def test_consent_changes_exports_and_donations_are_rate_limited_per_member(
    client: FlaskClient, app: Flask, setting: Callable[[str, Any], None], setting_name: str
) -> None:
    me = resident(client, app, points=50)
    other = resident(client, app, points=50)
    manager = admin_headers(client, app)
    charity = make_partner(client, manager, kind="charity")
    send = {
        "RATE_LIMIT_CONSENTS": lambda who, n: client.put(
            "/v1/me/consents", headers=who.headers,
            json={"consents": [{"purpose": "research", "granted": n % 2 == 0}]}),
        "RATE_LIMIT_EXPORT": lambda who, n: client.get("/v1/me/export", headers=who.headers),
        "RATE_LIMIT_CLAIM": lambda who, n: client.post(
            "/v1/me/donations", headers=who.headers,
            json={"charity_id": charity["id"], "points": 1}),
    }[setting_name]
    setting(setting_name, "2 per hour")
    with app.app_context():
        limiter.reset()
    first, second, third = send(me, 0), send(me, 1), send(me, 2)
    assert first.status_code < 300 and second.status_code < 300
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) > 3000
    # The refused request changed nothing; another member has a count of their own.
    if setting_name == "RATE_LIMIT_CONSENTS":
        assert _count(app, Consent, Consent.purpose == "research") == 2
    if setting_name == "RATE_LIMIT_CLAIM":
        assert client.get("/v1/me/balance", headers=me.headers).json["available"] == 48
    assert send(other, 0).status_code < 300


def test_one_member_mails_only_a_few_new_addresses(client: FlaskClient, app: Flask) -> None:
    """Each address change is a mail to an address the member names; a login code's
    limits (hundreds an hour) would let one free account mail that many strangers."""
    me = resident(client, app)
    sent_before = len(app.extensions.get("sent_mail", []))
    answers = [client.post("/v1/me/email", json={"email": f"stranger{n}@example.org"},
                           headers=me.headers) for n in range(11)]
    assert [answer.status_code for answer in answers] == [202] * 10 + [429]
    assert answers[-1].json["reason"] == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) > 3000
    assert len(app.extensions["sent_mail"]) - sent_before == 10


# -- bodies of very many values ---------------------------------------------------------------

def _json(client: FlaskClient, method: str, path: str, body: Any,
          headers: dict[str, str] | None = None) -> Any:
    return client.open(path, method=method, data=json.dumps(body),
                       headers={**(headers or {}), "Content-Type": "application/json"})


def test_a_body_of_many_unknown_fields_is_one_short_refusal(
    client: FlaskClient, app: Flask
) -> None:
    me = resident(client, app, display_name="Sam")
    many = {f"f{n}": 0 for n in range(150_000)}  # just under 2 MB
    for method, path, headers in (("PATCH", "/v1/me", me.headers),
                                  ("POST", "/v1/me/devices", me.headers),
                                  ("POST", "/v1/auth/otp", None)):
        answer = _json(client, method, path, many, headers)
        assert answer.status_code == 422, path
        # One error for the body, not one per field (that answer was 4 MB, after 8 s).
        assert list(answer.json["errors"]) == ["body"], path
        assert len(answer.get_data()) < 1000, path
    # Under the bound, a few more unknown fields than are named one by one: one error.
    some = {f"field{n}": 0 for n in range(25)}
    answer = _json(client, "PATCH", "/v1/me", {"display_name": "Other", **some}, me.headers)
    assert answer.status_code == 422
    assert answer.json["errors"] == {"_schema": [
        "25 fields this request does not take, such as 'field0', 'field1', 'field2'."]}
    # A few are still named field by field.
    answer = _json(client, "PATCH", "/v1/me", {"display_name": "Other", "colour": "red"},
                   me.headers)
    assert answer.json["errors"] == {"colour": ["Unknown field."]}
    assert client.get("/v1/me", headers=me.headers).json["display_name"] == "Sam"
    assert client.get("/v1/me/devices", headers=me.headers).json == []


def test_a_nested_object_of_many_values_is_refused_whole(
    client: FlaskClient, app: Flask
) -> None:
    me = resident(client, app)
    before = client.get("/v1/me/notification-preferences", headers=me.headers).json
    body = {"scheme_news": {f"channel{n}": True for n in range(20_000)}}
    answer = _json(client, "PATCH", "/v1/me/notification-preferences", body, me.headers)
    assert answer.status_code == 422
    assert answer.json["errors"] == {"body": ["The body holds more than 5000 values."]}
    assert client.get("/v1/me/notification-preferences", headers=me.headers).json == before
    # A body of ordinary size is read as before.
    fine = _json(client, "PATCH", "/v1/me/notification-preferences",
                 {"scheme_news": {"push": True}}, me.headers)
    assert fine.status_code == 200 and fine.json["scheme_news"]["push"] is True



# -- a source's items -------------------------------------------------------------------------

def test_one_item_cannot_carry_megabytes_of_attributes(
    client: FlaskClient, app: Flask, setting: Callable[[str, Any], None]
) -> None:
    """Each item is stored, and shown to its member and to reviewers: one item of
    1.9 MB made each page of that member's actions as large."""
    scheme = build_scheme(client, app)
    me = resident(client, app)
    assert link(client, app, me.headers, "6335 0000 1111 2222").status_code == 201
    when = daytime(1, 10)
    big = {**tap("big", "6335 0000 1111 2222", when),
           "attributes": {"distance_km": 3.2, "notes": "x" * 1_900_000}}
    nested = {**tap("nested", "6335 0000 1111 2222", when),
              "attributes": {"distance_km": 3.2, "legs": [{"stop": "s" * 100}] * 200}}
    fine = {**tap("fine", "6335 0000 1111 2222", when),
            "attributes": {"distance_km": 3.2, "route": "7", "stops": ["a" * 50] * 100}}
    answer = signed_post(client, scheme.source, {"items": [big, nested, fine]})
    assert answer.status_code == 200, answer.json
    results = answer.json["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "accepted"]
    assert "at most 8192 characters" in results[0]["reason"]
    assert "at most 8192 characters" in results[1]["reason"]
    with app.app_context():
        assert list(db.session.scalars(select(Action.external_ref))) == ["fine"]
    # The bound is the scheme's to set.
    setting("ACTION_ATTRIBUTES_MAX_CHARS", 100_000)
    again = signed_post(client, scheme.source, {"items": [nested]})
    assert again.json["results"][0]["status"] == "accepted"
