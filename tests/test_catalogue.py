"""The catalogue: languages, filters, eligibility, how many are left; partners propose
offers and a scheme manager approves or rejects them; per-member limits per period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from rewards.catalogue import Eligibility, ineligible_because, period_start, window_state
from rewards.extensions import db
from rewards.i18n import localise, parse_accept_language, preferences
from rewards.models import AuditEntry, Member, Offer
from rewards.vouchers import ClaimRefused, claim

from .helpers import iso
from .reward_support import (
    admin_headers,
    available,
    load_test_wards,
    make_offer,
    make_partner,
    partner_user,
    resident,
    till,
)

# Their fake partner systems listen on 127.0.0.1 over http.
pytestmark = pytest.mark.usefixtures("allow_private_webhooks")


WELSH = {"cy": {"title": "Nofio am ddim", "description": "Un nofio i oedolyn."}}


# -- pure decisions ----------------------------------------------------------------------

def test_accept_language_is_ranked_by_quality() -> None:
    assert parse_accept_language("pl;q=0.5, cy-GB, en;q=0.8, *;q=0.1, fr;q=0") == [
        "cy", "en", "pl"]
    assert parse_accept_language("") == [] and parse_accept_language(None) == []
    assert parse_accept_language("en;q=oops, cy") == ["cy"]
    assert preferences("cy-GB,en;q=0.5", "pl") == ["cy", "en", "pl"]
    assert preferences(None, "pl") == ["pl", "en"]
    assert preferences(None, None) == ["en"]


def test_localise_falls_back_to_english() -> None:
    assert localise("Free swim", "One adult swim.", WELSH, ["cy", "en"]) == (
        "Nofio am ddim", "Un nofio i oedolyn.", "cy")
    assert localise("Free swim", "One adult swim.", WELSH, ["pl", "en"]) == (
        "Free swim", "One adult swim.", "en")
    no_description = {"pl": {"title": "Darmowe pływanie"}}
    assert localise("Free swim", "One adult swim.", no_description, ["pl"]) == (
        "Darmowe pływanie", "One adult swim.", "pl")


def test_eligibility_decisions() -> None:
    joined = datetime(2026, 3, 1, tzinfo=UTC)
    anyone = Eligibility(None, None)
    assert ineligible_because(anyone, None, joined) is None
    wards = Eligibility(("headingley & hyde park", "roundhay"), None)
    assert ineligible_because(wards, "  Roundhay ", joined) is None
    assert ineligible_because(wards, "Headingley  &  Hyde Park", joined) is None
    assert "wards" in ineligible_because(wards, "Armley", joined)
    assert "wards" in ineligible_because(wards, None, joined)
    newcomers = Eligibility(None, datetime(2026, 1, 1, tzinfo=UTC))
    assert ineligible_because(newcomers, None, joined) is None
    assert "joined on or after 01 January 2026" in ineligible_because(
        newcomers, None, datetime(2025, 12, 31, tzinfo=UTC))


def test_period_starts_in_the_scheme_time_zone() -> None:
    tz = "Europe/London"
    # Wednesday 1 July 2026, 00:30 in London (BST) is 23:30 UTC on 30 June.
    now = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    assert period_start("ever", now, tz) is None
    assert period_start("day", now, tz) == datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
    assert period_start("week", now, tz) == datetime(2026, 6, 28, 23, 0, tzinfo=UTC)
    assert period_start("month", now, tz) == datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
    # Sunday 25 October 2026, after the clocks went back: that week's Monday midnight
    # was still summer time.
    after = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)
    assert period_start("week", after, tz) == datetime(2026, 10, 18, 23, 0, tzinfo=UTC)
    assert period_start("day", after, tz) == datetime(2026, 10, 24, 23, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        period_start("fortnight", now, tz)
    assert window_state(None, None, now) == "open"
    assert window_state(now + timedelta(seconds=1), None, now) == "not_yet"
    assert window_state(None, now, now) == "ended"


# -- what residents see -------------------------------------------------------------------

def test_catalogue_language_filters_and_stock(client: FlaskClient, app: Flask,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    admin = admin_headers(client, app)
    leisure = make_partner(client, admin, "Active Leeds")
    cafe = make_partner(client, admin, "Laynes Espresso")
    swim = make_offer(client, admin, leisure["id"], title="Free swim",
                      description="One adult swim.", translations=WELSH, category="health",
                      cost_points=150, stock=20)
    coffee = make_offer(client, admin, cafe["id"], title="Any hot drink", category="food",
                        cost_points=80, translations={"pl": {"title": "Gorący napój"}})
    gym = make_offer(client, admin, leisure["id"], title="Gym day pass", category="health",
                     cost_points=200)
    me = resident(client, app, points=160)

    listed = client.get("/v1/offers", headers=me.headers)
    assert listed.status_code == 200
    assert [o["id"] for o in listed.json] == [coffee["id"], swim["id"], gym["id"]]
    assert "X-Pagination" in listed.headers
    first = listed.json[1]
    assert (first["title"], first["language"], first["stock_left"]) == ("Free swim", "en", 20)
    assert first["partner"] == {"id": leisure["id"], "name": "Active Leeds"}
    assert [o["affordable"] for o in listed.json] == [True, True, False]
    assert "value_pence" not in first

    welsh = client.get("/v1/offers", headers={**me.headers, "Accept-Language": "cy-GB,en;q=0.5"})
    by_id = {o["id"]: o for o in welsh.json}
    assert (by_id[swim["id"]]["title"], by_id[swim["id"]]["language"]) == (
        "Nofio am ddim", "cy")
    assert by_id[swim["id"]]["description"] == "Un nofio i oedolyn."
    assert (by_id[coffee["id"]]["title"], by_id[coffee["id"]]["language"]) == (
        "Any hot drink", "en")
    # Without the header, the member's saved language (one the scheme offers).
    assert client.patch("/v1/me", json={"locale": "pl"}, headers=me.headers).status_code == 422
    monkeypatch.setitem(app.config, "SCHEME_LANGUAGES", ("en", "cy", "pl"))
    assert client.patch("/v1/me", json={"locale": "pl"}, headers=me.headers).status_code == 200
    polish = client.get(f"/v1/offers/{coffee['id']}", headers=me.headers).json
    assert (polish["title"], polish["language"]) == ("Gorący napój", "pl")

    def ids(query: str) -> list[str]:
        response = client.get(f"/v1/offers?{query}", headers=me.headers)
        assert response.status_code == 200, response.json
        return [o["id"] for o in response.json]

    assert ids("category=health") == [swim["id"], gym["id"]]
    assert ids(f"partner_id={cafe['id']}") == [coffee["id"]]
    assert ids("affordable=true") == [coffee["id"], swim["id"]]
    assert ids("affordable=true&category=health") == [swim["id"]]
    assert ids("affordable=false") == [coffee["id"], swim["id"], gym["id"]]
    assert ids("page=2&page_size=2") == [gym["id"]]
    assert client.get("/v1/offers?partner_id=nope", headers=me.headers).status_code == 422

    # Claiming changes how many are left.
    assert client.post("/v1/me/rewards", json={"offer_id": swim["id"]},
                       headers=me.headers).status_code == 202
    assert client.get(f"/v1/offers/{swim['id']}", headers=me.headers).json["stock_left"] == 19
    assert ids("affordable=true") == []
    assert available(client, me.headers) == 10


def test_eligibility_hides_offers_and_refuses_claims(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    load_test_wards(app, "Pudsey", "Roundhay", "Armley")
    local = make_offer(client, admin, partner["id"], eligible_wards=["Roundhay", "Armley"])
    newcomers = make_offer(client, admin, partner["id"],
                           joined_after=iso(datetime.now(UTC) - timedelta(days=1)))
    everyone = make_offer(client, admin, partner["id"])
    outsider = resident(client, app, points=100, ward="Pudsey")
    insider = resident(client, app, points=100, ward="roundhay")

    def visible(who) -> set[str]:
        return {o["id"] for o in client.get("/v1/offers", headers=who.headers).json}

    assert visible(insider) == {local["id"], newcomers["id"], everyone["id"]}
    with app.app_context():
        db.session.execute(update(Member).where(Member.id == uuid.UUID(outsider.id))
                           .values(joined_at=datetime.now(UTC) - timedelta(days=400)))
        db.session.commit()
    assert visible(outsider) == {everyone["id"]}
    for offer in (local, newcomers):
        assert client.get(f"/v1/offers/{offer['id']}",
                          headers=outsider.headers).status_code == 404
    refused = client.post("/v1/me/rewards", json={"offer_id": local["id"]},
                          headers=outsider.headers)
    assert refused.status_code == 409
    assert "wards" in refused.json["message"]
    refused = client.post("/v1/me/rewards", json={"offer_id": newcomers["id"]},
                          headers=outsider.headers)
    assert refused.status_code == 409 and "joined on or after" in refused.json["message"]
    assert available(client, outsider.headers) == 100
    # Moving into the ward opens the offer.
    client.patch("/v1/me", json={"ward": "Armley"}, headers=outsider.headers)
    assert client.post("/v1/me/rewards", json={"offer_id": local["id"]},
                       headers=outsider.headers).status_code == 202


def test_offers_not_open_are_hidden_and_refused(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    now = datetime.now(UTC)
    later = make_offer(client, admin, partner["id"], starts_at=iso(now + timedelta(days=2)))
    ended = make_offer(client, admin, partner["id"])
    retired = make_offer(client, admin, partner["id"])
    me = resident(client, app, points=100)
    assert client.post(f"/v1/admin/offers/{retired['id']}/retire",
                       headers=admin).json["status"] == "retired"
    assert client.post(f"/v1/admin/offers/{retired['id']}/retire",
                       headers=admin).status_code == 409
    with app.app_context():
        db.session.execute(update(Offer).where(Offer.id == uuid.UUID(ended["id"]))
                           .values(ends_at=now - timedelta(minutes=1)))
        db.session.commit()
    assert client.get("/v1/offers", headers=me.headers).json == []
    for offer in (later, ended, retired):
        assert client.get(f"/v1/offers/{offer['id']}", headers=me.headers).status_code == 404

    def claim_of(offer):
        return client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me.headers)

    assert claim_of(later).status_code == 409
    assert "opens on" in claim_of(later).json["message"]
    gone = claim_of(ended)
    assert gone.status_code == 410 and gone.json["message"] == "This offer has ended."
    assert claim_of(retired).status_code == 404
    assert available(client, me.headers) == 100


# -- partners propose, staff approve ------------------------------------------------------

def test_partner_proposes_and_manager_approves(client: FlaskClient, app: Flask) -> None:
    manager = admin_headers(client, app)
    partner = make_partner(client, manager, "Leeds City Museum")
    user = partner_user(client, app, partner["id"])
    me = resident(client, app, points=100)

    body = {"title": "Family pass", "cost_points": 120, "value_pence": 1250,
            "translations": {"cy": {"title": "Tocyn teulu"}}, "stock": 30,
            "per_member_limit": 1, "limit_period": "month", "category": "culture"}
    proposed = client.post("/v1/partner/offers", json=body, headers=user)
    assert proposed.status_code == 201, proposed.json
    offer = proposed.json
    assert (offer["status"], offer["partner_id"], offer["value_gbp"]) == (
        "proposed", partner["id"], "12.50")
    assert offer["proposed_by"] is not None
    # Waiting offers are not in the catalogue and cannot be claimed.
    assert client.get("/v1/offers", headers=me.headers).json == []
    assert client.get(f"/v1/offers/{offer['id']}", headers=me.headers).status_code == 404
    assert client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                       headers=me.headers).status_code == 404
    waiting = client.get("/v1/admin/offers?status=proposed", headers=manager).json
    assert [o["id"] for o in waiting] == [offer["id"]]
    assert client.get("/v1/admin/offers?status=live", headers=manager).json == []
    mine = client.get("/v1/partner/offers", headers=till(partner)).json
    assert [(o["id"], o["status"]) for o in mine] == [(offer["id"], "proposed")]

    # Only staff with the right role decide; the partner cannot approve its own.
    assert client.post(f"/v1/admin/offers/{offer['id']}/approve", json={},
                       headers=user).status_code == 403
    analyst = admin_headers(client, app, "analyst")
    assert client.post(f"/v1/admin/offers/{offer['id']}/approve", json={},
                       headers=analyst).status_code == 403
    approved = client.post(f"/v1/admin/offers/{offer['id']}/approve",
                           json={"cost_points": 100, "note": "Cheaper, please"}, headers=manager)
    assert approved.status_code == 200, approved.json
    assert (approved.json["status"], approved.json["cost_points"]) == ("live", 100)
    assert approved.json["review_note"] == "Cheaper, please"
    assert approved.json["reviewed_by"] is not None
    again = client.post(f"/v1/admin/offers/{offer['id']}/approve", json={}, headers=manager)
    assert again.status_code == 409
    assert client.post(f"/v1/admin/offers/{offer['id']}/reject", json={"reason": "x"},
                       headers=manager).status_code == 409
    assert client.post(f"/v1/admin/offers/{uuid.uuid4()}/approve", json={},
                       headers=manager).status_code == 404

    seen = client.get(f"/v1/offers/{offer['id']}", headers=me.headers)
    assert seen.status_code == 200 and seen.json["cost_points"] == 100
    assert client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                       headers=me.headers).status_code == 202
    limited = client.post("/v1/me/rewards", json={"offer_id": offer["id"]}, headers=me.headers)
    assert limited.status_code == 409
    assert limited.json["message"].startswith(
        "You have claimed this offer as many times as allowed this month")

    with app.app_context():
        actions = [(e.action, e.actor_role) for e in db.session.scalars(
            select(AuditEntry).where(AuditEntry.target_id == offer["id"])
            .order_by(AuditEntry.created_at))]
    assert actions == [("propose", "partner"), ("approve", "scheme_manager")]


def test_rejected_proposals_and_who_may_propose(client: FlaskClient, app: Flask) -> None:
    manager = admin_headers(client, app)
    partner = make_partner(client, manager)
    charity = make_partner(client, manager, kind="charity")
    user = partner_user(client, app, partner["id"])
    proposed = client.post("/v1/partner/offers", json={"title": "Cake", "cost_points": 5},
                           headers=user).json
    assert client.post(f"/v1/admin/offers/{proposed['id']}/reject", json={},
                       headers=manager).status_code == 422
    rejected = client.post(f"/v1/admin/offers/{proposed['id']}/reject",
                           json={"reason": "Not a reward we fund."}, headers=manager)
    assert rejected.status_code == 200
    assert (rejected.json["status"], rejected.json["review_note"]) == (
        "rejected", "Not a reward we fund.")
    assert client.get("/v1/partner/offers", headers=user).json[0]["status"] == "rejected"
    assert client.post(f"/v1/admin/offers/{proposed['id']}/approve", json={},
                       headers=manager).status_code == 409

    # A till key cannot propose; nor a charity's user; nor staff through the partner API.
    tried = client.post("/v1/partner/offers", json={"title": "Tea", "cost_points": 5},
                        headers=till(partner))
    assert tried.status_code == 403
    # Refused for what it is before its body is read: no field errors for a till.
    for body in ({"title": "x"}, {}):
        refused = client.post("/v1/partner/offers", json=body, headers=till(partner))
        assert (refused.status_code, refused.json["reason"]) == (403, "wrong_role")
    charity_user = partner_user(client, app, charity["id"])
    assert client.post("/v1/partner/offers", json={"title": "Tea", "cost_points": 5},
                       headers=charity_user).status_code == 403
    assert client.post("/v1/partner/offers", json={"title": "Tea", "cost_points": 5},
                       headers=manager).status_code == 403
    assert client.post("/v1/partner/offers", json={"title": "Tea"},
                       headers=user).status_code == 422
    # A webhook offer needs the partner's endpoint first.
    webhook = client.post("/v1/partner/offers", json={"title": "Swim", "cost_points": 5,
                                                      "fulfilment": "webhook"}, headers=user)
    assert webhook.status_code == 422 and "fulfilment" in webhook.json["errors"]
    # Another partner's proposals are not listed.
    other = make_partner(client, manager)
    assert client.get("/v1/partner/offers", headers=till(other)).json == []


def test_offer_terms_are_validated(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    for change, field in (({"limit_period": "year"}, "limit_period"),
                          ({"translations": {"Welsh": {"title": "x"}}}, "translations"),
                          ({"translations": {"cy": {}}}, "translations"),
                          ({"eligible_wards": []}, "eligible_wards"),
                          ({"value_pence": -1}, "value_pence"),
                          ({"fulfilment": "post"}, "fulfilment")):
        response = client.post("/v1/admin/offers", json={
            "partner_id": partner["id"], "title": "Tea", "cost_points": 5, **change},
            headers=admin)
        assert response.status_code == 422, (change, response.json)
        assert field in response.json["errors"], response.json
    # Wards come from the scheme's list (GET /v1/wards), by code or name, never free text.
    load_test_wards(app, "Gipton & Harehills")
    unknown = client.post("/v1/admin/offers", json={
        "partner_id": partner["id"], "title": "Tea", "cost_points": 5,
        "eligible_wards": ["Gipton & Harehills", "Atlantis"]}, headers=admin)
    assert unknown.status_code == 422 and unknown.json["reason"] == "unknown_ward"
    assert "Atlantis" in unknown.json["errors"]["eligible_wards"][0]
    with app.app_context():
        assert db.session.scalar(select(Offer.id).where(Offer.title == "Tea")) is None
    full = make_offer(client, admin, partner["id"], value_pence=350, limit_period="week",
                      per_member_limit=2, points_back_on_expiry=True,
                      eligible_wards=["  Gipton &   Harehills ", "gipton & harehills"])
    assert (full["value_pence"], full["value_gbp"], full["limit_period"]) == (350, "3.50", "week")
    assert full["eligible_wards"] == ["Gipton & Harehills"]
    assert full["points_back_on_expiry"] is True and full["status"] == "live"
    assert client.get(f"/v1/admin/offers/{full['id']}", headers=admin).json["id"] == full["id"]


def test_partner_admin_details(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Active Leeds", description="Pools and gyms",
                           fulfilment_url="http://127.0.0.1:9/passes")
    assert partner["webhook_secret"] and partner["fulfilment_url"].endswith("/passes")
    shown = client.get(f"/v1/admin/partners/{partner['id']}", headers=admin).json
    assert "webhook_secret" not in shown and "api_key" not in shown
    assert client.post("/v1/admin/partners", json={"name": "X", "kind": "business",
                                                   "fulfilment_url": "ftp://x"},
                       headers=admin).status_code == 422
    changed = client.patch(f"/v1/admin/partners/{partner['id']}",
                           json={"fulfilment_url": None, "active": False}, headers=admin)
    assert changed.status_code == 200
    assert (changed.json["fulfilment_url"], changed.json["active"]) == (None, False)
    rotated = client.post(f"/v1/admin/partners/{partner['id']}/webhook-secret", headers=admin)
    assert rotated.status_code == 200
    assert rotated.json["webhook_secret"] != partner["webhook_secret"]
    assert client.get(f"/v1/admin/partners/{uuid.uuid4()}", headers=admin).status_code == 404


def test_limits_per_day_week_and_month(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin)
    daily = make_offer(client, admin, partner["id"], cost_points=1, per_member_limit=2,
                       limit_period="day")
    weekly = make_offer(client, admin, partner["id"], cost_points=1, per_member_limit=1,
                        limit_period="week")
    me = resident(client, app, points=100)
    monday = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)

    def attempt(offer: dict, when: datetime) -> int:
        with app.app_context():
            member = db.session.get(Member, uuid.UUID(me.id))
            try:
                claim(db.session, member, uuid.UUID(offer["id"]), when)
            except ClaimRefused as refused:
                db.session.rollback()
                return refused.status
            db.session.commit()
            return 202

    assert [attempt(daily, monday + timedelta(hours=h)) for h in (0, 1, 2)] == [202, 202, 409]
    assert attempt(daily, monday + timedelta(days=1)) == 202  # a new day
    assert attempt(weekly, monday) == 202
    assert attempt(weekly, monday + timedelta(days=6)) == 409  # Sunday: the same week
    assert attempt(weekly, monday + timedelta(days=7)) == 202  # the next Monday
