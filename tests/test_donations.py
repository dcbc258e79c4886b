"""Members give points to charity partners; staff see totals per charity and the share
of all points ever earned that were donated."""

from __future__ import annotations

from collections import Counter

from flask import Flask
from flask.testing import FlaskClient

from rewards.donations import suppress

from .helpers import link
from .reward_support import (
    admin_headers,
    available,
    ledger_sound,
    make_partner,
    postings,
    resident,
)
from .test_rewards import together


def _give(client: FlaskClient, headers: dict[str, str], charity_id: str, points: int,
          key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/me/donations", json={"charity_id": charity_id, "points": points},
                       headers={**headers, **extra})


def test_suppression() -> None:
    assert suppress(9, 10) is None and suppress(10, 10) == 10


def test_members_donate_points(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    crypt = make_partner(client, admin, "St George's Crypt", kind="charity",
                         description="Homelessness charity")
    food = make_partner(client, admin, "Leeds Food Aid Network", kind="charity")
    closed = make_partner(client, admin, "Closed Charity", kind="charity")
    client.patch(f"/v1/admin/partners/{closed['id']}", json={"active": False}, headers=admin)
    cafe = make_partner(client, admin, "Laynes Espresso")
    me = resident(client, app, points=100)

    listed = client.get("/v1/charities", headers=me.headers)
    assert listed.status_code == 200
    assert [(c["name"], c["description"]) for c in listed.json] == [
        ("Leeds Food Aid Network", None), ("St George's Crypt", "Homelessness charity")]
    assert client.get("/v1/charities").status_code == 401
    # It needs a login, so no shared cache may keep it for others.
    assert listed.headers["Cache-Control"].startswith("private")
    assert "Authorization" in listed.headers["Vary"]

    given = _give(client, me.headers, crypt["id"], 30, key="gift-1")
    assert given.status_code == 201, given.json
    assert (given.json["points"], given.json["available"]) == (30, 70)
    assert given.json["charity"]["name"] == "St George's Crypt"
    replay = _give(client, me.headers, crypt["id"], 30, key="gift-1")
    assert replay.status_code == 201 and replay.json["id"] == given.json["id"]
    assert _give(client, me.headers, crypt["id"], 31, key="gift-1").status_code == 422
    assert available(client, me.headers) == 70
    assert postings(app, "donation") == 1
    ledger = client.get("/v1/me/ledger", headers=me.headers).json
    assert ledger[0]["kind"] == "donation" and ledger[0]["points"] == -30
    assert ledger[0]["reason"] == "Donated to St George's Crypt"

    poor = _give(client, me.headers, food["id"], 71)
    assert poor.status_code == 409
    assert poor.json["message"] == "Not enough points: you have 70, you offered 71."
    for charity_id in (cafe["id"], closed["id"], "00000000-0000-4000-8000-000000000000"):
        refused = _give(client, me.headers, charity_id, 5)
        assert refused.status_code == 404 and refused.json["message"] == "No such charity."
    for points in (0, -5, 1.5, "ten", None):
        assert _give(client, me.headers, food["id"], points).status_code == 422
    assert available(client, me.headers) == 70
    assert _give(client, me.headers, food["id"], 70).status_code == 201
    assert available(client, me.headers) == 0
    mine = client.get("/v1/me/donations", headers=me.headers).json
    assert [(d["charity"]["name"], d["points"]) for d in mine] == [
        ("Leeds Food Aid Network", 70), ("St George's Crypt", 30)]
    ledger_sound(app)


def test_staff_see_totals_and_the_share_donated(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    crypt = make_partner(client, admin, "St George's Crypt", kind="charity")
    make_partner(client, admin, "Leeds Food Aid Network", kind="charity")
    donors = [resident(client, app, points=50) for _ in range(10)]
    for donor in donors:
        assert _give(client, donor.headers, crypt["id"], 5).status_code == 201

    totals = client.get("/v1/admin/donations", headers=admin)
    assert totals.status_code == 200, totals.json
    body = totals.json
    # Adjustments are not earned points: nothing was earned through the rules yet.
    assert (body["donated"], body["earned"], body["share"]) == (50, 0, 0.0)
    assert body["charities"] == [
        {"charity_id": body["charities"][0]["charity_id"], "name": "Leeds Food Aid Network",
         "points": 0, "donations": 0, "donors": None},
        {"charity_id": crypt["id"], "name": "St George's Crypt", "points": 50,
         "donations": 10, "donors": 10},
    ]
    analyst = admin_headers(client, app, "analyst")
    assert client.get("/v1/admin/donations", headers=analyst).status_code == 200
    assert client.get("/v1/admin/donations", headers=donors[0].headers).status_code == 403


def test_earned_points_and_share(client: FlaskClient, app: Flask, monkeypatch) -> None:
    from .helpers import bearer, build_scheme, member_token, signed_post, tap
    from .test_flow import _daytime

    scheme = build_scheme(client, app, cost_points=10)
    charity = make_partner(client, bearer(scheme.admin), "St George's Crypt", kind="charity")
    me = bearer(member_token(client, app, "giver@example.org"))
    link(client, app, me, "4444333322221111")
    sent = signed_post(client, scheme.source, {"items": [
        tap(f"t{i}", "4444333322221111", _daytime(1, 9 + i)) for i in range(4)]})
    assert [r["status"] for r in sent.json["results"]] == ["accepted"] * 4
    assert _give(client, me, charity["id"], 10).status_code == 201
    body = client.get("/v1/admin/donations", headers=bearer(scheme.admin)).json
    # One donor: their gift is personal, so the charity's figures and the total are hidden.
    assert (body["donated"], body["earned"], body["share"]) == (None, 40, None)
    assert body["charities"][0]["points"] is None
    monkeypatch.setitem(app.config, "DASHBOARD_MIN_CELL", 1)
    body = client.get("/v1/admin/donations", headers=bearer(scheme.admin)).json
    assert (body["donated"], body["earned"], body["share"]) == (10, 40, 0.25)


def test_concurrent_donations_never_overspend(client: FlaskClient, app: Flask) -> None:
    admin = admin_headers(client, app)
    charity = make_partner(client, admin, kind="charity")
    me = resident(client, app, points=30)
    answers = together(app, 6, lambda c, i: _give(c, me.headers, charity["id"], 10))
    assert Counter(status for status, _ in answers) == {201: 3, 409: 3}, answers
    assert available(client, me.headers) == 0
    ledger_sound(app)
