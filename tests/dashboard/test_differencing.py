"""A cell suppressed in one figure is not given back by another: a ward hidden beside
a small one stays hidden under a ward filter and in every figure for that ward alone,
a deprivation decile holding a hidden ward is hidden, and a partner's total does not
give back an offer whose redemptions are hidden (issue: "totals are not left to
reveal it by subtraction")."""

from __future__ import annotations

import csv
import io
import secrets
import uuid
import zipfile
from datetime import UTC, date, datetime, time

from flask import Flask
from flask.testing import FlaskClient

from rewards.dashboard.filters import scheme_zone
from rewards.dashboard.settings import put
from rewards.extensions import db
from rewards.ledger import ensure_member_accounts
from rewards.models import Action, ActionType, Member, Offer, Partner, Redemption, Reward, Source

from ..helpers import bearer, staff_token
from ..reward_support import add_ward

WARDS = {"Alpha": 3, "Bravo": 12, "Charlie": 20, "Delta": 15}
JANUARY = "from=2025-01-01&to=2025-01-31"
FIGURES_FOR_A_WARD = ("actions", "actions_by_hour", "impact", "fairness_age",
                      "fairness_deprivation", "baseline", "retention", "reach_channel")


def _member(ward: str | None) -> uuid.UUID:
    member = Member(id=uuid.uuid4(), email=f"m{secrets.token_hex(6)}@example.org", ward=ward,
                    joined_at=datetime(2025, 1, 2, 12, tzinfo=UTC))
    db.session.add(member)
    ensure_member_accounts(db.session, member.id)
    return member.id


def _world(app: Flask) -> None:
    """Bus journeys on 10 January 2025 by 3, 12, 20 and 15 members of four wards;
    Alpha (3) and Charlie share deprivation decile 1."""
    for ward in WARDS:
        add_ward(app, ward)
    with app.app_context():
        kind = ActionType(code="bus_journey", name="Bus", category="travel")
        db.session.add(kind)
        db.session.flush()
        source = Source(name="operator", api_key_hash=secrets.token_hex(32),
                        signing_secret=secrets.token_hex(16), action_types=["bus_journey"])
        db.session.add(source)
        db.session.flush()
        when = datetime.combine(date(2025, 1, 10), time(12), scheme_zone()).astimezone(UTC)
        for ward, count in WARDS.items():
            for _ in range(count):
                db.session.add(Action(
                    source_id=source.id, external_ref=secrets.token_hex(8),
                    member_id=_member(ward), action_type_id=kind.id,
                    type_code="bus_journey", occurred_at=when, attributes={"distance_km": 3},
                    points=5, status="accepted"))
        for ward, decile in (("Alpha", 1), ("Charlie", 1), ("Bravo", 5), ("Delta", 6)):
            put(db.session, f"ward:{ward}", {"adult_population": 1000, "imd_decile": decile},
                None)
        db.session.commit()


def _rows(client: FlaskClient, token: str, path: str) -> list[dict]:
    answer = client.get(f"/v1/admin/dashboard/{path}", headers=bearer(token))
    assert answer.status_code == 200, answer.json
    return answer.json["rows"]


def _numbers(rows: list[dict]) -> list:
    return [value for row in rows for key, value in row.items()
            if key not in ("_suppressed",) and isinstance(value, int | float)
            and not isinstance(value, bool)]


def test_the_complementary_ward_stays_hidden_under_a_ward_filter(
    client: FlaskClient, app: Flask
) -> None:
    _world(app)
    token = staff_token(client, app, "analyst")
    wards = {r["ward"]: r for r in _rows(client, token, f"actions_by_ward?{JANUARY}")}
    assert wards["Alpha"]["members"] is None and wards["Bravo"]["members"] is None
    assert wards["Charlie"]["members"] == 20
    for figure in ("actions_by_ward", "reach_wards", "active"):
        alone = _rows(client, token, f"{figure}?{JANUARY}&ward=Bravo")
        assert alone and all(row["ward"] == "Bravo" for row in alone), (figure, alone)
        assert all(row.get("_suppressed") for row in alone), (figure, alone)
    # Every other figure for Bravo alone shows no number that counts its members.
    for figure in FIGURES_FOR_A_WARD:
        rows = _rows(client, token, f"{figure}?{JANUARY}&ward=Bravo")
        counted = [n for n in _numbers(rows) if n and figure != "fairness_deprivation"]
        assert not [n for n in counted if n in (12, 24, 60)], (figure, rows)
    bravo = _rows(client, token, f"actions?{JANUARY}&ward=Bravo")
    assert bravo[0]["members"] is None and bravo[0]["actions"] is None
    # A ward shown in the figures by ward is shown alone as well.
    charlie = _rows(client, token, f"actions?{JANUARY}&ward=Charlie")
    assert (charlie[0]["members"], charlie[0]["actions"]) == (20, 20)


def test_a_decile_holding_a_hidden_ward_is_hidden_on_the_api_and_in_open_data(
    client: FlaskClient, app: Flask
) -> None:
    _world(app)
    token = staff_token(client, app, "analyst")
    deciles = {r["imd_decile"]: r for r in _rows(client, token,
                                                 f"fairness_deprivation?{JANUARY}")}
    assert deciles["1"]["members"] is None  # Alpha (3) + Charlie (20): 23 - 20 = Alpha
    assert deciles["5"]["members"] is None  # Bravo, hidden beside Alpha
    assert deciles["6"]["members"] == 15
    bundle = zipfile.ZipFile(io.BytesIO(client.get(
        f"/v1/admin/dashboard/open-data.zip?{JANUARY}", headers=bearer(token)).data))
    published = {r["Deprivation decile (1 most deprived)"]: r for r in csv.DictReader(
        io.StringIO(bundle.read("fairness_deprivation.csv").decode()))}
    assert published["1"]["Active members"] == "suppressed"


def test_a_partners_total_does_not_give_back_a_hidden_offer(
    client: FlaskClient, app: Flask
) -> None:
    when = datetime(2025, 1, 15, 12, tzinfo=UTC)
    with app.app_context():
        laynes = Partner(name="Laynes Espresso", kind="business",
                         api_key_hash=secrets.token_hex(32))
        tea = Partner(name="Tea Rooms", kind="business", api_key_hash=secrets.token_hex(32))
        db.session.add_all([laynes, tea])
        db.session.flush()
        for partner, title, count in ((laynes, "Coffee", 15), (laynes, "Swim", 2),
                                      (tea, "Tea", 11)):
            offer = Offer(partner_id=partner.id, title=title, cost_points=10, value_pence=150)
            db.session.add(offer)
            db.session.flush()
            for _ in range(count):
                reward = Reward(id=uuid.uuid4(), member_id=_member(None), offer_id=offer.id,
                                status="redeemed", cost_points=10, code=secrets.token_hex(8),
                                issued_at=when, redeemed_at=when, created_at=when)
                db.session.add(reward)
                db.session.flush()
                db.session.add(Redemption(reward_id=reward.id, partner_id=partner.id,
                                          value_pence=150, created_at=when))
        db.session.commit()
    token = staff_token(client, app, "analyst")
    offers = {r["offer"]: r for r in _rows(client, token, f"rewards?{JANUARY}")}
    assert offers["Swim"]["redeemed"] is None and offers["Coffee"]["redeemed"] == 15
    owed = {r["partner"]: r for r in _rows(client, token, f"owed_partners?{JANUARY}")}
    assert owed["Laynes Espresso"]["redemptions"] is None
    assert owed["Laynes Espresso"]["owed_pounds"] is None
    assert owed["Tea Rooms"]["redemptions"] is None  # else the total less it would show
    # The exact amounts are the settlement's, for scheme managers, not analysts.
    assert client.get("/v1/admin/settlements?month=2025-01",
                      headers=bearer(token)).status_code == 403
    manager = bearer(staff_token(client, app, "scheme_manager"))
    settled = client.get("/v1/admin/settlements?month=2025-01", headers=manager)
    assert settled.status_code == 200 and settled.json["count"] == 28
