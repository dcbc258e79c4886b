"""The whole scheme, end to end through HTTP: from a bus tap to a redeemed coffee voucher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.extensions import db
from rewards.models import Identifier, OtpCode

from .helpers import bearer, build_scheme, link, member_token, signed_post, tap


def _daytime(days_ago: int, hour: int = 12) -> datetime:
    """A London-time moment `days_ago` days back at `hour` o'clock."""
    local = datetime.now(ZoneInfo("Europe/London")) - timedelta(days=days_ago)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).astimezone(UTC)


def run_flow(client: FlaskClient, app: Flask, wait_for_voucher) -> None:
    scheme = build_scheme(client, app, cost_points=25)

    # A resident logs in with a mailed code and links a travel card.
    token = member_token(client, app, "amira@example.org")
    me = bearer(token)
    linked = link(client, app, me, "6335 0012 3456 7890")
    assert linked.status_code == 201, linked.json
    assert linked.json["last4"] == "7890"
    assert "number" not in linked.json
    with app.app_context():
        stored = db.session.scalars(select(Identifier)).one()
        assert "7890" not in stored.number_hash and len(stored.number_hash) == 64
        assert db.session.scalars(select(OtpCode)).one().code_hash.isdigit() is False

    # The operator sends a signed batch: peak, off-peak, a repeat, an unknown card, a bad time.
    card = "6335001234567890"
    batch = {"items": [
        tap("trip-1", card, _daytime(1, 12)),
        tap("trip-2", card, _daytime(1, 20)),
        tap("trip-1", card, _daytime(1, 12)),
        tap("trip-3", "9999888877776666", _daytime(1, 13)),
        {**tap("trip-4", card, _daytime(1, 14)), "occurred_at": "yesterday"},
        tap("trip-5", card, _daytime(1, 15), type_code="taxi_ride"),
    ]}
    response = signed_post(client, scheme.source, batch)
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [r["status"] for r in results] == [
        "accepted", "accepted", "duplicate", "rejected", "rejected", "rejected"]
    assert [r["external_ref"] for r in results] == [
        "trip-1", "trip-2", "trip-1", "trip-3", "trip-4", "trip-5"]
    assert "unknown card" in results[3]["reason"]
    assert "occurred_at" in results[4]["reason"]
    assert "taxi_ride" in results[5]["reason"]
    assert results[2]["action_id"] == results[0]["action_id"]

    # Sending the same batch again changes nothing.
    again = signed_post(client, scheme.source, {"items": batch["items"][:2]})
    assert [r["status"] for r in again.json["results"]] == ["duplicate", "duplicate"]

    balance = client.get("/v1/me/balance", headers=me).json
    assert balance == {"available": 25, "pending": 0, "lifetime_earned": 25, "expiring": []}
    ledger = client.get("/v1/me/ledger", headers=me)
    assert sum(line["points"] for line in ledger.json) == 25
    assert sorted(line["points"] for line in ledger.json) == [10, 15]
    assert "X-Pagination" in ledger.headers
    actions = client.get("/v1/me/actions", headers=me).json
    assert len(actions) == 2
    by_points = {a["points"]: a for a in actions}
    assert by_points[15]["awards"][0]["rule_name"] == "Bus journey"
    assert by_points[15]["awards"][0]["rule_version"] == 1
    assert by_points[15]["awards"][0]["rule_id"] == scheme.rule["id"]
    assert by_points[10]["status"] == "accepted"

    # The resident claims the coffee: points held, a job issues the voucher.
    offers = client.get("/v1/offers", headers=me).json
    assert offers[0]["stock_left"] == 100
    claim = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]},
                        headers={**me, "Idempotency-Key": "claim-1"})
    assert claim.status_code == 202, claim.json
    assert claim.json["status"] == "pending"
    assert claim.json["code"] is None
    reward_id = claim.json["id"]
    reward = wait_for_voucher(reward_id, me)
    assert reward["status"] == "issued"
    code = reward["code"]
    assert len(code) == 10 and not set(code) & set("01OIL")
    qr = client.get(reward["qr_svg_url"], headers=me)
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml"
    assert b"<svg" in qr.data
    assert client.get("/v1/me/balance", headers=me).json["available"] == 0

    # Not enough points for a second one.
    poor = client.post("/v1/me/rewards", json={"offer_id": scheme.offer["id"]}, headers=me)
    assert poor.status_code == 409
    assert "Not enough points" in poor.json["message"]

    # The partner checks and redeems once.
    till = {"X-Api-Key": scheme.partner["api_key"]}
    check = client.get(f"/v1/partner/vouchers/{code}", headers=till)
    assert check.status_code == 200
    assert check.json["valid"] is True
    assert check.json["offer"]["title"] == "Flat white"
    first = client.post("/v1/partner/redemptions", json={"code": code}, headers=till)
    assert first.status_code == 201, first.json
    second = client.post("/v1/partner/redemptions", json={"code": code}, headers=till)
    assert second.status_code == 409
    assert client.get(f"/v1/me/rewards/{reward_id}", headers=me).json["status"] == "redeemed"

    # Another partner cannot see or redeem it; an unknown code is 404 too.
    other = client.post("/v1/admin/partners", json={"name": "Other Cafe", "kind": "business"},
                        headers=bearer(scheme.admin)).json
    other_till = {"X-Api-Key": other["api_key"]}
    assert client.get(f"/v1/partner/vouchers/{code}", headers=other_till).status_code == 404
    assert client.post("/v1/partner/redemptions", json={"code": code},
                       headers=other_till).status_code == 404
    assert client.post("/v1/partner/redemptions", json={"code": "ZZZZZZZZZZ"},
                       headers=till).status_code == 404


def test_flow_with_jobs_in_process(client: FlaskClient, app: Flask) -> None:
    def issued_at_once(reward_id, headers):
        # In-process jobs run right after the claim commits.
        return client.get(f"/v1/me/rewards/{reward_id}", headers=headers).json

    run_flow(client, app, issued_at_once)


def test_an_award_cut_by_a_points_cap_says_which_cap(client: FlaskClient, app: Flask) -> None:
    """A rule that pays 10 a journey with at most 25 points a day: the third journey earns
    the 5 left and names the cap that cut it; the fourth earns nothing and names it too."""
    scheme = build_scheme(client, app)
    patched = client.patch(f"/v1/admin/rules/{scheme.rule['id']}", headers=bearer(
        scheme.admin), json={"points": "10", "points_caps": {"per_day": 25}})
    assert patched.status_code == 200, patched.json
    me = bearer(member_token(client, app, "kai@example.org"))
    assert link(client, app, me, "6335 0012 3456 7811").status_code == 201
    batch = [tap(f"cut-{n}", "6335001234567811", _daytime(1, 9 + n)) for n in range(4)]
    answer = signed_post(client, scheme.source, {"items": batch})
    assert [r["status"] for r in answer.json["results"]] == ["accepted"] * 4
    mine = {a["id"]: a for a in client.get("/v1/me/actions", headers=me).json}
    awards = [[(w["points"], w["capped_by"]) for w in mine[r["action_id"]]["awards"]]
              for r in answer.json["results"]]
    assert awards == [[(10, None)], [(10, None)], [(5, "points_per_day")],
                      [(0, "points_per_day")]]
