"""Controls before points are awarded, through HTTP: too many actions of a type in an
hour and implausible travel hold an action for review (flagged, awarding nothing, the
reason shown to reviewers and in the source's result); approving awards it through the
rules and caps; rejecting revokes it."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from rewards.extensions import db
from rewards.models import Action, Award, Posting

from .helpers import Scheme, bearer, build_scheme, iso, signed_post, staff_token, tap
from .ways_in import add_type_and_rule, assert_error, balance, daytime, resident

CARD = "6335 0012 3456 7890"
LEEDS = {"lat": 53.7997, "lon": -1.5492}
LONDON = {"lat": 51.5074, "lon": -0.1278}
HEADINGLEY = {"lat": 53.8190, "lon": -1.5780}


@pytest.fixture
def scheme(client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch) -> Scheme:
    monkeypatch.setitem(app.config, "CONTROL_MAX_PER_HOUR_BY_TYPE", {"bus_journey": 3})
    return build_scheme(client, app, per_day=4)


@pytest.fixture
def me(client: FlaskClient, app: Flask, scheme: Scheme) -> dict[str, str]:
    return resident(client, app, "amira@example.org", CARD)[0]


@pytest.fixture
def reviewer(client: FlaskClient, app: Flask) -> dict[str, str]:
    return bearer(staff_token(client, app, "reviewer"))


def _located(ref: str, when: datetime, where: dict[str, float]) -> dict[str, Any]:
    item = tap(ref, CARD, when)
    item["attributes"] = {"distance_km": 3.2, **where}
    return item


def _flagged(app: Flask) -> dict[str, Action]:
    with app.app_context():
        return {a.external_ref: a for a in db.session.scalars(
            select(Action).where(Action.status == "flagged"))}


def _awards_of(app: Flask, action_id: str) -> tuple[int, int]:
    with app.app_context():
        action = uuid.UUID(action_id)
        return (int(db.session.scalar(select(func.count()).select_from(Award)
                                      .where(Award.action_id == action)) or 0),
                int(db.session.scalar(select(func.count()).select_from(Posting)
                                      .where(Posting.action_id == action)) or 0))


def test_too_many_in_an_hour_are_held_and_award_nothing_until_approved(
    client: FlaskClient, app: Flask, scheme: Scheme, me: dict[str, str],
    reviewer: dict[str, str]
) -> None:
    taps = [tap(f"burst-{n}", CARD, daytime(1, 9, 10 * n)) for n in range(5)]
    response = signed_post(client, scheme.source, {"items": taps})
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert [(r["status"], r["points"]) for r in results] == [
        ("accepted", 10), ("accepted", 10), ("accepted", 10), ("accepted", 0), ("accepted", 0)]
    assert [r["reason"] is None for r in results] == [True, True, True, False, False]
    assert results[3]["reason"].startswith("held for review: more than 3 bus_journey actions")
    assert "(4 between" in results[3]["reason"] and "(5 between" in results[4]["reason"]
    assert balance(client, me) == 30
    for result in results[3:]:
        assert _awards_of(app, result["action_id"]) == (0, 0)
    assert set(_flagged(app)) == {"burst-3", "burst-4"}

    # Reviewers see why; the member sees the action held, with the reason.
    queue = client.get("/v1/admin/reviews", headers=reviewer).json
    assert [(q["external_ref"], q["kind"], q["points"]) for q in queue] == [
        ("burst-3", "flagged", 0), ("burst-4", "flagged", 0)]
    assert queue[0]["reason"] == results[3]["reason"]
    mine = {a["id"]: a for a in client.get("/v1/me/actions", headers=me).json}
    assert mine[results[3]["action_id"]]["status"] == "flagged"
    assert mine[results[3]["action_id"]]["reason"] == results[3]["reason"]

    # Approving awards through the rules, under the day's cap (4 a day: one left).
    first = client.post(f"/v1/admin/reviews/{results[3]['action_id']}/approve", json={},
                        headers=reviewer)
    assert first.status_code == 200, first.json
    assert first.json["points"] == 10 and first.json["decision"]["points"] == 10
    second = client.post(f"/v1/admin/reviews/{results[4]['action_id']}/approve", json={},
                         headers=reviewer).json
    assert second["points"] == 0 and second["status"] == "approved"
    assert balance(client, me) == 40
    mine = {a["id"]: a for a in client.get("/v1/me/actions", headers=me).json}
    assert [(a["points"], a["capped_by"]) for a in mine[results[4]["action_id"]]["awards"]] == [
        (0, "per_day")]
    assert mine[results[3]["action_id"]]["status"] == "accepted"
    assert mine[results[3]["action_id"]]["reason"] is None
    assert _flagged(app) == {}


def test_earlier_batches_count_towards_the_hour(
    client: FlaskClient, app: Flask, scheme: Scheme, me: dict[str, str]
) -> None:
    first = signed_post(client, scheme.source, {"items": [
        tap(f"a-{n}", CARD, daytime(1, 9, 10 * n)) for n in range(3)]})
    assert {r["reason"] for r in first.json["results"]} == {None}
    # Sent later, but it happened inside the same hour: the fourth.
    late = signed_post(client, scheme.source, {"items": [tap("late", CARD, daytime(1, 8, 55))]})
    [result] = late.json["results"]
    assert result["status"] == "accepted" and result["points"] == 0
    assert "held for review" in result["reason"]
    # A revoked action no longer counts.
    signed_post(client, scheme.source, {"external_refs": ["a-0", "late"]},
                path="/v1/source/actions/revocations")
    fine = signed_post(client, scheme.source, {"items": [tap("then", CARD, daytime(1, 9, 35))]})
    assert fine.json["results"][0]["reason"] is None


def test_implausible_travel_is_held_with_the_distance_and_speed(
    client: FlaskClient, app: Flask, scheme: Scheme, me: dict[str, str],
    reviewer: dict[str, str]
) -> None:
    response = signed_post(client, scheme.source, {"items": [
        _located("leeds", daytime(1, 9), LEEDS),
        _located("headingley", daytime(1, 9, 20), HEADINGLEY),   # 3 km in 20 min: fine
        _located("london", daytime(1, 9, 50), LONDON),           # 270 km in 30 min: no
        tap("no-position", CARD, daytime(1, 14)),
    ]})
    results = {r["external_ref"]: r for r in response.json["results"]}
    assert {ref: r["points"] for ref, r in results.items()} == {
        "leeds": 10, "headingley": 10, "london": 0, "no-position": 10}
    reason = results["london"]["reason"]
    assert reason.startswith("held for review: implausible travel: ")
    assert "km from this member's action at" in reason and "in 30 minutes" in reason
    assert "km/h" in reason and "more than 200 km/h" in reason
    assert set(_flagged(app)) == {"london"}

    # A tap that arrives late is checked against the one after it, too.
    late = signed_post(client, scheme.source, {"items": [
        _located("london-earlier", daytime(1, 8, 45), LONDON)]})
    assert "implausible travel" in late.json["results"][0]["reason"]

    rejected = client.post(f"/v1/admin/reviews/{results['london']['action_id']}/reject",
                           json={"reason": "Card cloned: reported by First Bus"},
                           headers=reviewer)
    assert rejected.status_code == 200, rejected.json
    mine = {a["id"]: a for a in client.get("/v1/me/actions", headers=me).json}
    london = mine[results["london"]["action_id"]]
    assert london["status"] == "revoked"
    assert london["reason"] == "Rejected on review: Card cloned: reported by First Bus"
    assert balance(client, me) == 30


def test_controls_switched_off_hold_nothing(
    client: FlaskClient, app: Flask, scheme: Scheme, me: dict[str, str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "CONTROL_MAX_PER_HOUR_BY_TYPE", {})
    monkeypatch.setitem(app.config, "CONTROL_MAX_PER_HOUR", 0)
    monkeypatch.setitem(app.config, "CONTROL_MAX_SPEED_KMH", 0)
    response = signed_post(client, scheme.source, {"items": [
        _located("leeds", daytime(1, 9), LEEDS), _located("london", daytime(1, 9, 5), LONDON),
        *[tap(f"b-{n}", CARD, daytime(1, 9, 10 + n)) for n in range(4)]]})
    assert {r["reason"] for r in response.json["results"]} == {None}
    assert _flagged(app) == {}


def test_claims_and_csv_rows_pass_the_same_controls(
    client: FlaskClient, app: Flask, scheme: Scheme, me: dict[str, str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "CONTROL_MAX_PER_HOUR_BY_TYPE",
                        {"bus_journey": 3, "volunteer_session": 1})
    admin = bearer(scheme.admin)
    add_type_and_rule(client, admin, "volunteer_session", "volunteering", "20")
    now = datetime.now(UTC)
    codes = []
    for name in ("Litter pick", "Tree planting"):
        event = client.post("/v1/admin/events", headers=admin, json={
            "name": name, "action_type": "volunteer_session",
            "starts_at": iso(now - timedelta(hours=1)), "ends_at": iso(now + timedelta(hours=1))})
        codes.append(event.json["code"])
    first = client.post("/v1/me/claims", json={"code": codes[0]}, headers=me)
    assert (first.json["status"], first.json["points"]) == ("accepted", 20)
    second = client.post("/v1/me/claims", json={"code": codes[1]}, headers=me)
    assert second.status_code == 201, second.json
    assert (second.json["status"], second.json["points"]) == ("flagged", 0)
    assert second.json["reason"].startswith("held for review: more than 1 volunteer_session")
    assert second.json["awards"] == []

    rows = ["external_ref,card_kind,card_number,type,occurred_at,attributes"] + [
        f'csv-{n},travel_card,{CARD},bus_journey,{iso(daytime(2, 9, 10 * n))},'
        '"{""distance_km"": 3}"' for n in range(4)]
    upload = client.post(f"/v1/admin/sources/{scheme.source['id']}/imports", headers=admin,
                         data={"file": (io.BytesIO("\n".join(rows).encode()), "taps.csv")},
                         content_type="multipart/form-data")
    assert upload.status_code == 202, upload.json
    shown = client.get(f"/v1/admin/sources/{scheme.source['id']}/imports/{upload.json['id']}",
                       headers=admin).json
    assert (shown["accepted"], shown["held"], shown["points"]) == (4, 1, 30)
    report = client.get(shown["report_url"], headers=admin).get_data(as_text=True)
    assert "held for review: more than 3 bus_journey" in report
    assert_error(client.post("/v1/me/claims", json={"code": codes[1]}, headers=me), 409)
