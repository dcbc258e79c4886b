"""Monthly settlement per partner: count and value owed per offer, JSON and CSV, for
staff (every partner) and the partner (its own); undone redemptions left out."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

import rewards.jobs
from rewards import vouchers
from rewards.extensions import db
from rewards.models import Redemption, Reward
from rewards.settlement import month_bounds

from .reward_support import admin_headers, make_offer, make_partner, partner_user, resident, till

# Their fake partner systems listen on 127.0.0.1 over http.
pytestmark = pytest.mark.usefixtures("allow_private_webhooks")


def _redeemed(client: FlaskClient, app: Flask, member: dict[str, str], offer_id: str,
              partner: dict, when: datetime) -> str:
    claimed = client.post("/v1/me/rewards", json={"offer_id": offer_id}, headers=member)
    code = client.get(f"/v1/me/rewards/{claimed.json['id']}", headers=member).json["code"]
    done = client.post("/v1/partner/redemptions", json={"code": code}, headers=till(partner))
    assert done.status_code == 201, done.json
    with app.app_context():
        db.session.execute(update(Redemption).where(Redemption.id == uuid.UUID(done.json["id"]))
                           .values(created_at=when))
        db.session.commit()
    return done.json["id"]


def test_month_bounds_follow_the_scheme_time_zone() -> None:
    assert month_bounds("2026-07", "Europe/London") == (
        datetime(2026, 6, 30, 23, tzinfo=UTC), datetime(2026, 7, 31, 23, tzinfo=UTC))
    assert month_bounds("2026-12", "Europe/London") == (
        datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        month_bounds("2026-7", "Europe/London")


def test_settlement_for_staff_and_partners(client: FlaskClient, app: Flask,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    admin = admin_headers(client, app)
    cafe = make_partner(client, admin, "Laynes Espresso")
    museum = make_partner(client, admin, "Leeds City Museum")
    idle = make_partner(client, admin, "Quiet Shop")
    coffee = make_offer(client, admin, cafe["id"], title="Flat white", cost_points=1,
                        value_pence=250)
    cake = make_offer(client, admin, cafe["id"], title="Cake", cost_points=1, value_pence=400)
    entry = make_offer(client, admin, museum["id"], title="Family pass", cost_points=1,
                       value_pence=1000)
    me = resident(client, app, points=100).headers

    july = datetime(2026, 7, 10, 12, tzinfo=UTC)
    _redeemed(client, app, me, coffee["id"], cafe, july)
    _redeemed(client, app, me, coffee["id"], cafe, datetime(2026, 6, 30, 23, 30, tzinfo=UTC))
    _redeemed(client, app, me, cake["id"], cafe, july)
    _redeemed(client, app, me, coffee["id"], cafe, datetime(2026, 6, 30, 22, 30, tzinfo=UTC))
    _redeemed(client, app, me, entry["id"], museum, july)
    undone = _redeemed(client, app, me, entry["id"], museum, july)
    with app.app_context():
        db.session.execute(update(Redemption).where(Redemption.id == uuid.UUID(undone))
                           .values(undone_at=july))
        db.session.commit()
    # The value is the one in force when redeemed, not today's.
    with app.app_context():
        from rewards.models import Offer

        db.session.execute(update(Offer).where(Offer.id == uuid.UUID(coffee["id"]))
                           .values(value_pence=9999))
        db.session.commit()
    # A pass the museum's own booking system issued in July counts as issued.
    client.patch(f"/v1/admin/partners/{museum['id']}",
                 json={"fulfilment_url": "http://127.0.0.1:9/passes"}, headers=admin)
    booked = make_offer(client, admin, museum["id"], title="Tour", cost_points=1,
                        value_pence=700, fulfilment="webhook")
    monkeypatch.setattr(rewards.jobs, "dispatch_pending", rewards.jobs.discard_pending)
    pending = client.post("/v1/me/rewards", json={"offer_id": booked["id"]}, headers=me).json
    with app.app_context():
        vouchers.issue(db.session, uuid.UUID(pending["id"]), now=july, partner_code="TOUR-1")
        db.session.commit()
        assert db.session.get(Reward, uuid.UUID(pending["id"])).issued_at == july

    report = client.get("/v1/admin/settlements?month=2026-07", headers=admin)
    assert report.status_code == 200, report.json
    body = report.json
    assert (body["month"], body["currency"], body["count"]) == ("2026-07", "GBP", 5)
    assert (body["value_pence"], body["value_gbp"]) == (250 * 2 + 400 + 1000 + 700, "26.00")
    assert body["starts_at"].startswith("2026-06-30T23:00")
    assert [p["partner"]["name"] for p in body["partners"]] == ["Laynes Espresso",
                                                             "Leeds City Museum"]
    laynes, museum_line = body["partners"]
    assert (laynes["count"], laynes["value_pence"], laynes["value_gbp"]) == (3, 900, "9.00")
    assert [(o["title"], o["basis"], o["count"], o["value_pence"]) for o in laynes["offers"]] \
        == [("Cake", "redeemed", 1, 400), ("Flat white", "redeemed", 2, 500)]
    assert [(o["title"], o["basis"], o["count"], o["value_pence"])
            for o in museum_line["offers"]] == [("Family pass", "redeemed", 1, 1000),
                                                ("Tour", "issued", 1, 700)]
    june = client.get("/v1/admin/settlements?month=2026-06", headers=admin).json
    assert (june["count"], june["value_pence"]) == (1, 250)

    as_csv = client.get("/v1/admin/settlements?month=2026-07&format=csv", headers=admin)
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert "settlement-2026-07.csv" in as_csv.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    assert [(r["partner_name"], r["offer_title"], r["count"], r["value_gbp"]) for r in rows] == [
        ("Laynes Espresso", "Cake", "1", "4.00"), ("Laynes Espresso", "Flat white", "2", "5.00"),
        ("Laynes Espresso", "TOTAL", "3", "9.00"),
        ("Leeds City Museum", "Family pass", "1", "10.00"),
        ("Leeds City Museum", "Tour", "1", "7.00"), ("Leeds City Museum", "TOTAL", "2", "17.00")]
    by_accept = client.get("/v1/admin/settlements?month=2026-07",
                           headers={**admin, "Accept": "text/csv"})
    assert by_accept.mimetype == "text/csv"

    # The partner sees its own, by till key or user; a partner with nothing sees zeros.
    own = client.get("/v1/partner/settlements?month=2026-07", headers=till(cafe)).json
    assert [p["partner"]["name"] for p in own["partners"]] == ["Laynes Espresso"]
    assert own["value_pence"] == 900
    user = partner_user(client, app, museum["id"])
    mine = client.get("/v1/partner/settlements?month=2026-07&format=csv", headers=user)
    assert "Laynes" not in mine.get_data(as_text=True)
    assert "Leeds City Museum,,TOTAL,,2,1700,17.00" in mine.get_data(as_text=True)
    nothing = client.get("/v1/partner/settlements?month=2026-07", headers=till(idle)).json
    assert nothing["partners"] == [{"partner": {"id": idle["id"], "name": "Quiet Shop"},
                                    "count": 0, "value_pence": 0, "value_gbp": "0.00",
                                    "offers": []}]

    # Who may see what, and bad months.
    assert client.get("/v1/admin/settlements?month=2026-07", headers=user).status_code == 403
    assert client.get("/v1/admin/settlements?month=2026-07",
                      headers=till(cafe)).status_code == 401
    analyst = admin_headers(client, app, "analyst")
    assert client.get("/v1/admin/settlements?month=2026-07", headers=analyst).status_code == 403
    reviewer = admin_headers(client, app, "reviewer")
    assert client.get("/v1/admin/settlements?month=2026-07",
                      headers=reviewer).status_code == 403
    for query in ("", "?month=July", "?month=2026-00", "?month=2026-07&format=xls"):
        response = client.get(f"/v1/admin/settlements{query}", headers=admin)
        assert response.status_code == 422, query
    assert client.get("/v1/partner/settlements?month=2026-07", headers=me).status_code == 403


def test_a_scheme_in_euros_says_so(client: FlaskClient, app: Flask, monkeypatch) -> None:
    from rewards.dashboard.opendata import unit
    from rewards.web.staff_figures import format_value

    monkeypatch.setitem(app.config, "SCHEME_CURRENCY", "EUR")
    monkeypatch.setitem(app.config, "SCHEME_TIMEZONE", "Europe/Rome")
    report = client.get("/v1/admin/settlements?month=2026-07",
                        headers=admin_headers(client, app))
    assert report.status_code == 200, report.json
    assert report.json["currency"] == "EUR"
    assert report.json["starts_at"].startswith("2026-06-30T22:00")  # midnight in Rome
    with app.app_context():
        assert format_value(1234.5, "money") == "€1,234.50"
        assert unit("money") == "money (EUR)" and unit("int") == "count"
        monkeypatch.setitem(app.config, "SCHEME_CURRENCY", "CHF")
        assert format_value(4.5, "money") == "CHF 4.50"
    assert format_value(4.5, "money") == "£4.50"  # outside a scheme: the default
