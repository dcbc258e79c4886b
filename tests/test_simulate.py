"""POST /v1/admin/rules/simulate: draft rules replayed over real recent actions,
checked against totals worked out by hand, and writing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from rewards.extensions import db
from rewards.models import Base

from .helpers import Scheme, bearer, build_scheme, link, member_token, signed_post, staff_token, tap

CARD = "6335009876543210"


@pytest.fixture(autouse=True)
def every_cell_shown(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the arithmetic on one resident's taps; hiding small cells is
    tests/security/test_api5_function_level.py's subject."""
    monkeypatch.setitem(app.config, "DASHBOARD_MIN_CELL", 1)


def _local(days_ago: int, hour: int) -> datetime:
    local = datetime.now(ZoneInfo("Europe/London")) - timedelta(days=days_ago)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).astimezone(UTC)


# (ref, days ago, local hour, distance_km). The live rule (build_scheme) gives 10 a
# journey of 1 km or more, 15 before 7 or from 19; up to 4 a day.
TAPS = [
    ("a1", 3, 12, 3.2),
    ("a2", 3, 13, 5.0),
    ("a3", 3, 20, 2.5),
    ("a4", 2, 12, 0.5),
    ("a5", 2, 14, 4.0),
]
LIVE_POINTS = 10 + 10 + 15 + 0 + 10


@pytest.fixture
def scheme(client: FlaskClient, app: Flask) -> Scheme:
    scheme = build_scheme(client, app)
    me = bearer(member_token(client, app, "sim@example.org"))
    linked = link(client, app, me, CARD)
    assert linked.status_code == 201, linked.json
    items = [tap(ref, CARD, _local(days, hour), distance) for ref, days, hour, distance in TAPS]
    response = signed_post(client, scheme.source, {"items": items})
    assert response.status_code == 200, response.json
    assert [r["status"] for r in response.json["results"]] == ["accepted"] * len(TAPS)
    assert sum(r["points"] for r in response.json["results"]) == LIVE_POINTS
    return scheme


def draft(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Distance bonus", "action_types": ["bus_journey"],
                            "points": "10"}
    body.update(changes)
    return body


def simulate(client: FlaskClient, headers: dict[str, str], body: dict[str, Any],
             status: int = 200) -> dict[str, Any]:
    response = client.post("/v1/admin/rules/simulate", json=body, headers=headers)
    assert response.status_code == status, response.json
    return response.json


def test_totals_match_hand_computed_caps_and_budget(client: FlaskClient,
                                                    scheme: Scheme) -> None:
    result = simulate(client, bearer(scheme.admin), {"rules": [
        # 2 points a km from 2 km, at most 2 a day: a1 6, a2 10, a3 capped, a4 no, a5 8.
        draft(condition="action.attributes.distance_km >= 2",
              points="round(action.attributes.distance_km * 2)", caps={"per_day": 2}),
        # 10 each until 25 points are spent: a1 10, a2 10, a3 5, a4 and a5 over budget.
        draft(name="Budgeted", budget_points=25, status="active"),
    ]})
    assert result["actions_considered"] == 5
    assert result["points_by_rule"] == [
        {"name": "Distance bonus", "points": 24, "actions": 3, "capped": 1, "suppressed": False},
        {"name": "Budgeted", "points": 25, "actions": 3, "capped": 2, "suppressed": False},
    ]
    assert result["points"] == 49
    assert result["actions_matched"] == 4  # a4: too short, and over the budget
    assert result["members_touched"] == 1
    # The live rule alone, replayed, gives what it really gave.
    assert result["baseline_points"] == LIVE_POINTS
    assert result["live_points"] == LIVE_POINTS  # both drafts stack with it
    assert result["cost_change"] == 49
    assert result["errors"] == []
    assert result["days"] == 30 and result["include_live"] is True


def test_exclusive_draft_with_and_without_the_live_rules(client: FlaskClient,
                                                         scheme: Scheme) -> None:
    headers = bearer(scheme.admin)
    exclusive = draft(name="Flat 20", points="20", priority=-1, stackable=False)
    together = simulate(client, headers, {"rules": [exclusive]})
    # Below the live rule and exclusive: it awards only where the live rule gives nothing.
    assert together["points_by_rule"] == [
        {"name": "Flat 20", "points": 20, "actions": 1, "capped": 0, "suppressed": False}]
    assert together["live_points"] == LIVE_POINTS
    assert together["cost_change"] == 20

    alone = simulate(client, headers, {"rules": [exclusive], "include_live": False})
    assert alone["points_by_rule"] == [
        {"name": "Flat 20", "points": 100, "actions": 5, "capped": 0, "suppressed": False}]
    assert alone["live_points"] == 0 and alone["cost_change"] is None
    assert alone["baseline_points"] == LIVE_POINTS

    # Above the live rule, exclusive: it takes every action and the live rule none.
    first = simulate(client, headers, {"rules": [{**exclusive, "priority": 10}]})
    assert first["points"] == 100 and first["live_points"] == 0
    assert first["cost_change"] == 100 - LIVE_POINTS


def test_member_counts_and_window(client: FlaskClient, scheme: Scheme) -> None:
    headers = bearer(scheme.admin)
    welcome = draft(name="First two", condition="member.actions_total < 2", points="50")
    result = simulate(client, headers, {"rules": [welcome]})
    assert result["points_by_rule"][0]["actions"] == 2 and result["points"] == 100
    recent = simulate(client, headers, {"rules": [welcome], "days": 1})
    assert recent["actions_considered"] == 0 and recent["points"] == 0
    assert recent["baseline_points"] == 0


def test_member_history_before_the_window_counts(client: FlaskClient,
                                                 scheme: Scheme) -> None:
    old = signed_post(client, scheme.source, {"items": [tap("old", CARD, _local(10, 12))]})
    assert old.json["results"][0]["status"] == "accepted", old.json
    headers = bearer(scheme.admin)
    welcome = draft(name="First two", condition="member.actions_total < 2", points="50")
    # Five days back holds a1-a5; the journey ten days back is history, so only a1
    # (the member's second action) is among the first two.
    result = simulate(client, headers, {"rules": [welcome], "days": 5})
    assert result["actions_considered"] == 5
    assert result["points"] == 50
    assert simulate(client, headers, {"rules": [welcome], "days": 11})["points"] == 100


def test_run_time_errors_are_counted_not_raised(client: FlaskClient, scheme: Scheme) -> None:
    broken = draft(name="Hours", points="action.attributes.hours * 2")
    result = simulate(client, bearer(scheme.admin), {"rules": [broken]})
    [error] = result["errors"]
    assert error["rule"] == "Hours" and error["draft"] is True and error["count"] == 5
    assert error["message"].startswith("vmError")
    assert result["points"] == 0 and result["baseline_points"] == LIVE_POINTS


@pytest.mark.parametrize(("change", "field", "expected"), [
    ({"points": "10 +"}, "points", "parserError"),
    ({"condition": "action.hour + 1"}, "condition", "true or false"),
    ({"action_types": ["taxi_ride"]}, "action_types", "taxi_ride"),
    ({"caps": {"per_fortnight": 1}}, "caps", ""),
    # Past the size and shape bounds: refused before the engine compiles them.
    ({"condition": "true and " * 12_500 + "true"}, "condition", "at most 2000 characters"),
    ({"points": "(" * 5000 + "1" + ")" * 5000}, "points", "at most 2000 characters"),
    ({"points": "(" * 40 + "1" + ")" * 40}, "points", "nest at most 32"),
    ({"points": "count([0..1000000000], # > 0)"}, "points", "may only follow `in`"),
    ({"condition": "some([1, 2], some([3, 4], # > 1))"}, "condition", "another closure"),
])
def test_bad_draft_is_422(client: FlaskClient, scheme: Scheme, change: dict[str, Any],
                          field: str, expected: str) -> None:
    body = simulate(client, bearer(scheme.admin), {"rules": [draft(), draft(**change)]}, 422)
    assert body["code"] == 422
    assert list(body["errors"]) == ["rules"]
    assert list(body["errors"]["rules"]) == ["1"]
    assert list(body["errors"]["rules"]["1"]) == [field]
    assert expected in json.dumps(body["errors"]["rules"]["1"][field])


@pytest.mark.parametrize("body", [
    {"rules": []},
    {"rules": [draft()], "days": 0},
    {"rules": [draft()], "days": 91},
    {},
])
def test_bad_request_is_422(client: FlaskClient, scheme: Scheme, body: dict[str, Any]) -> None:
    simulate(client, bearer(scheme.admin), body, 422)


def test_who_may_simulate(client: FlaskClient, app: Flask, scheme: Scheme) -> None:
    body = {"rules": [draft()]}
    # Simulation reads individual actions: scheme managers only (tests/security too).
    for role, status in (("scheme_manager", 200), ("analyst", 403), ("reviewer", 403)):
        headers = bearer(staff_token(client, app, role))
        response = client.post("/v1/admin/rules/simulate", json=body, headers=headers)
        assert response.status_code == status, (role, response.json)
    assert client.post("/v1/admin/rules/simulate", json=body).status_code == 401
    resident = bearer(member_token(client, app, "other@example.org"))
    assert client.post("/v1/admin/rules/simulate", json=body,
                       headers=resident).status_code == 403


def _row_counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {table.name: db.session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables}


def test_simulation_writes_nothing(client: FlaskClient, app: Flask, scheme: Scheme) -> None:
    before = _row_counts(app)
    assert before["actions"] == 5 and before["awards"] > 0
    simulate(client, bearer(scheme.admin), {"rules": [
        draft(budget_points=10, caps={"per_day": 1}),
        draft(name="Broken", points="action.attributes.nope * 2"),
    ]})
    simulate(client, bearer(scheme.admin), {"rules": [draft()], "include_live": False})
    simulate(client, bearer(scheme.admin), {"rules": [draft(points="1 +")]}, 422)
    assert _row_counts(app) == before
