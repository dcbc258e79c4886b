"""Volume: one resident, partner or source must not grow stored data, queued work or
the size of an answer without bound. Long lists are refused before they are read;
what waits for staff, and what an account keeps, has a cap per account."""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from rewards.extensions import db
from rewards.models import Offer
from rewards.models.privacy import Consent

from ..reward_support import admin_headers, make_partner, partner_user, resident

# A body just under MAX_CONTENT_LENGTH (2 MB) holds hundreds of thousands of items.
MANY = 200_000


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
    # One error for the list, not one per item (that answer was tens of MB).
    assert answer.json["errors"] == {"consents": ["At most 5 items."]}
    assert len(answer.get_data()) < 1000
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
