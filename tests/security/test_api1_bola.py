"""API1:2023 Broken object level authorisation: one resident never reaches another's
rewards, voucher codes, cards, consents or export, and a partner never another
partner's vouchers; a foreign object answers as an unknown one (404)."""

from __future__ import annotations

import uuid

from flask import Flask
from flask.testing import FlaskClient

from ..helpers import link
from ..reward_support import admin_headers, make_offer, make_partner, resident, till


def test_a_resident_reaches_only_their_own_objects(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    partner = make_partner(client, admin, "Laynes")
    offer = make_offer(client, admin, partner["id"], cost_points=10)
    alice, bob = resident(client, app, points=20), resident(client, app, points=20)
    reward = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                         headers=alice.headers).json
    card = link(client, app, alice.headers, "6335001212121212").json
    client.put("/v1/me/consents", headers=alice.headers,
               json={"consents": [{"purpose": "research", "granted": True}]})

    for path in (f"/v1/me/rewards/{reward['id']}", f"/v1/me/rewards/{reward['id']}/qr.svg"):
        assert client.get(path, headers=bob.headers).status_code == 404
        assert client.get(path, headers=alice.headers).status_code == 200
    assert client.get(f"/v1/me/rewards/{uuid.uuid4()}", headers=bob.headers).status_code == 404
    assert client.delete(f"/v1/me/identifiers/{card['id']}",
                         headers=bob.headers).status_code == 404
    assert client.get("/v1/me/identifiers", headers=bob.headers).json == []
    assert client.get("/v1/me/rewards", headers=bob.headers).json == []
    exported = client.get("/v1/me/export", headers=bob.headers).json
    assert exported["member"]["id"] == bob.id and exported["rewards"] == []
    assert exported["cards"] == [] and alice.email not in str(exported)
    consents = client.get("/v1/me/consents", headers=bob.headers).json
    assert [h["purpose"] for h in consents["history"]] == ["terms", "privacy_notice"]
    # Alice's voucher, erased by Bob? Bob's DELETE /v1/me erases only Bob.
    assert client.delete("/v1/me", headers=bob.headers).status_code == 204
    assert client.get(f"/v1/me/rewards/{reward['id']}",
                      headers=alice.headers).json["status"] == "issued"
    assert len(client.get("/v1/me/identifiers", headers=alice.headers).json) == 1


def test_a_partner_reaches_only_its_own_vouchers(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    mine, theirs = make_partner(client, admin, "Mine"), make_partner(client, admin, "Theirs")
    offer = make_offer(client, admin, mine["id"], cost_points=10)
    me = resident(client, app, points=10)
    reward = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                         headers=me.headers).json
    code = client.get(f"/v1/me/rewards/{reward['id']}", headers=me.headers).json["code"]
    assert client.get(f"/v1/partner/vouchers/{code}", headers=till(theirs)).status_code == 404
    assert client.post("/v1/partner/redemptions", json={"code": code},
                       headers=till(theirs)).status_code == 404
    assert client.get(f"/v1/partner/vouchers/{code}", headers=till(mine)).status_code == 200
