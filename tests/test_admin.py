"""Council staff managing the scheme through HTTP: action types, rules and their
versions, sources, partners, offers, who may do what, and the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from rewards.extensions import db
from rewards.models import Partner, StaffUser

from .helpers import at_once, bearer, iso, link, member_token, signed_post, staff_token, tap

CARD = "6335001234567890"


def _daytime(days_ago: int, hour: int = 12) -> datetime:
    local = datetime.now(ZoneInfo("Europe/London")) - timedelta(days=days_ago)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).astimezone(UTC)


@pytest.fixture
def admin(client: FlaskClient, app: Flask) -> dict[str, str]:
    return bearer(staff_token(client, app, "admin"))


@pytest.fixture
def manager(client: FlaskClient, app: Flask) -> dict[str, str]:
    return bearer(staff_token(client, app, "scheme_manager"))


def create(client: FlaskClient, path: str, body: dict[str, Any],
           headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def action_type(client: FlaskClient, headers: dict[str, str], code: str = "bus_journey",
                category: str = "travel") -> dict[str, Any]:
    return create(client, "/v1/admin/action-types",
                  {"code": code, "name": code.replace("_", " ").title(), "category": category},
                  headers)


def rule_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Bus journey",
        "action_types": ["bus_journey"],
        "condition": "action.attributes.distance_km >= 1",
        "points": "10",
        "status": "active",
        "starts_at": iso(datetime.now(UTC) - timedelta(days=30)),
    }
    body.update(changes)
    return body


def count(client: FlaskClient, path: str, headers: dict[str, str]) -> int:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.json
    return json.loads(response.headers["X-Pagination"])["total"]


def audit_entries(client: FlaskClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/v1/admin/audit-log?page_size=100", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


# -- action types -----------------------------------------------------------------

def test_action_type_created(client: FlaskClient, manager: dict[str, str]) -> None:
    response = client.post(
        "/v1/admin/action-types",
        json={"code": "volunteering_hour", "name": "Volunteering", "category": "volunteering",
              "description": "An hour confirmed by the organiser."},
        headers=manager,
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert body["code"] == "volunteering_hour"
    assert body["name"] == "Volunteering"
    assert body["category"] == "volunteering"
    assert body["description"] == "An hour confirmed by the organiser."
    assert body["id"] and body["created_at"]


def test_action_type_duplicate_code_is_409(client: FlaskClient, manager: dict[str, str]) -> None:
    action_type(client, manager)
    again = client.post("/v1/admin/action-types",
                        json={"code": "bus_journey", "name": "Again", "category": "travel"},
                        headers=manager)
    assert again.status_code == 409
    assert again.json["code"] == 409
    assert "bus_journey" in again.json["message"]
    assert count(client, "/v1/admin/action-types", manager) == 1


def test_action_type_bad_category_is_422(client: FlaskClient, manager: dict[str, str]) -> None:
    response = client.post("/v1/admin/action-types",
                           json={"code": "bus_journey", "name": "Bus", "category": "transport"},
                           headers=manager)
    assert response.status_code == 422
    assert response.json["code"] == 422
    assert list(response.json["errors"]) == ["category"]
    assert "travel" in response.json["errors"]["category"][0]


@pytest.mark.parametrize("code", ["Bus", "bus journey", "1bus", "b", "bus-journey", "x" * 65, ""])
def test_action_type_bad_code_is_422(client: FlaskClient, manager: dict[str, str],
                                     code: str) -> None:
    response = client.post("/v1/admin/action-types",
                           json={"code": code, "name": "Bus", "category": "travel"},
                           headers=manager)
    assert response.status_code == 422
    assert "code" in response.json["errors"]


def test_action_type_missing_fields_are_422(client: FlaskClient,
                                            manager: dict[str, str]) -> None:
    response = client.post("/v1/admin/action-types", json={}, headers=manager)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"code", "name", "category"}


def test_action_types_are_listed_paginated(client: FlaskClient, app: Flask,
                                           manager: dict[str, str]) -> None:
    for code in ("walk", "bus_journey", "cycle_hire"):
        action_type(client, manager, code)
    page = client.get("/v1/admin/action-types?page=1&page_size=2", headers=manager)
    assert page.status_code == 200
    assert [t["code"] for t in page.json] == ["bus_journey", "cycle_hire"]
    pagination = json.loads(page.headers["X-Pagination"])
    assert pagination["total"] == 3 and pagination["total_pages"] == 2
    last = client.get("/v1/admin/action-types?page=2&page_size=2", headers=manager)
    assert [t["code"] for t in last.json] == ["walk"]
    # Analysts and reviewers may read them.
    analyst = bearer(staff_token(client, app, "analyst"))
    assert count(client, "/v1/admin/action-types", analyst) == 3
    assert client.get("/v1/admin/action-types?page_size=101",
                      headers=manager).status_code == 422


# -- rules ------------------------------------------------------------------------

def test_rule_created(client: FlaskClient, manager: dict[str, str]) -> None:
    action_type(client, manager)
    body = rule_body(caps={"per_day": 4, "per_week": None}, points_caps={"per_month": 300},
                     budget_points=10_000, priority=5, stackable=False, hold_days=2,
                     ends_at=iso(datetime.now(UTC) + timedelta(days=60)))
    rule = create(client, "/v1/admin/rules", body, manager)
    assert rule["id"] and rule["version_id"] and rule["id"] != rule["version_id"]
    assert rule["version"] == 1
    assert rule["name"] == "Bus journey"
    assert rule["action_types"] == ["bus_journey"]
    assert rule["condition"] == "action.attributes.distance_km >= 1"
    assert rule["points"] == "10"
    assert rule["status"] == "active"
    assert rule["caps"] == {"per_day": 4}
    assert rule["points_caps"] == {"per_month": 300}
    assert rule["budget_points"] == 10_000
    assert rule["priority"] == 5 and rule["stackable"] is False and rule["hold_days"] == 2
    assert client.get(f"/v1/admin/rules/{rule['id']}", headers=manager).json == rule


def test_rule_defaults(client: FlaskClient, manager: dict[str, str]) -> None:
    action_type(client, manager)
    before = datetime.now(UTC) - timedelta(seconds=1)
    rule = create(client, "/v1/admin/rules",
                  {"name": "Bus", "action_types": ["bus_journey"], "points": "10"}, manager)
    assert rule["condition"] == "true" and rule["status"] == "active"
    assert rule["caps"] == {} and rule["points_caps"] == {}
    assert rule["priority"] == 0 and rule["stackable"] is True and rule["hold_days"] == 0
    assert rule["budget_points"] is None and rule["ends_at"] is None
    starts_at = datetime.fromisoformat(rule["starts_at"])
    assert before <= starts_at <= datetime.now(UTC) + timedelta(seconds=1)


@pytest.mark.parametrize(("field", "expression", "expected"), [
    ("condition", "action.attributes.distance_km >=", "parserError"),
    ("points", "10 +", "parserError"),
    ("condition", "action.hour + 1", "true or false"),
    ("points", '"ten"', "must give a number"),
    ("points", "action.hour > 3", "must give a number"),
    ("points", "", "empty"),
    ("condition", "  ", "empty"),
    # A constant that is not points would flag every action the rule matches.
    ("points", "-5", "a negative number"),
    ("points", "0 - 5", "a negative number"),
    ("points", "2000000", "more than"),
])
def test_rule_with_bad_expression_is_422_and_not_stored(
    client: FlaskClient, manager: dict[str, str], field: str, expression: str, expected: str
) -> None:
    action_type(client, manager)
    response = client.post("/v1/admin/rules", json=rule_body(**{field: expression}),
                           headers=manager)
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == [field]
    [message] = response.json["errors"][field]
    assert expected in message
    assert "Stack backtrace" not in message
    assert count(client, "/v1/admin/rules", manager) == 0


@pytest.mark.parametrize(("field", "expression", "expected"), [
    ("condition", "true or " * 12_500 + "true", "at most 2000 characters, this has 100004"),
    ("points", "(" * 5000 + "1" + ")" * 5000, "at most 2000 characters"),
    ("condition", "(" * 33 + "true" + ")" * 33, "nest at most 32 deep"),
    ("points", "[" * 40 + "1" + "]" * 40, "nest at most 32 deep"),
    # Short, but the engine builds the whole range (or aborts the process).
    ("condition", "count([0..1000000000], # > 5) > 0", "may only follow `in`"),
    ("points", "len(map([1..10000000], #))", "may only follow `in`"),
    # Iterations multiply: seconds per action over a long list of attributes.
    ("condition", "some(action.attributes.stops, some(action.attributes.stops, # > 1))",
     "another closure"),
    # Compiled on every call: 70 of these took 5 s per action.
    ("condition", 'matches(action.attributes.ref, ".{9999}")', "may total at most 256"),
])
def test_rule_past_the_expression_bounds_is_422_before_the_engine(
    client: FlaskClient, manager: dict[str, str], monkeypatch: pytest.MonkeyPatch,
    field: str, expression: str, expected: str
) -> None:
    action_type(client, manager)
    import zen

    def guarded(real: Any) -> Any:
        def call(text: str, *args: Any) -> Any:
            assert text != expression, "the engine was given an expression past the bounds"
            return real(text, *args)
        return call

    for name in ("validate_expression", "compile_expression", "evaluate_expression"):
        monkeypatch.setattr(zen, name, guarded(getattr(zen, name)))
    response = client.post("/v1/admin/rules", json=rule_body(**{field: expression}),
                           headers=manager)
    assert response.status_code == 422, response.json
    assert response.json["reason"] == "invalid_request"
    assert list(response.json["errors"]) == [field]
    [message] = response.json["errors"][field]
    assert expected in message and len(message) < 200
    monkeypatch.undo()
    assert count(client, "/v1/admin/rules", manager) == 0


def test_rule_expression_length_is_configurable(client: FlaskClient, app: Flask,
                                                manager: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    action_type(client, manager)
    monkeypatch.setitem(app.config, "RULE_EXPRESSION_MAX_CHARS", 40)
    at_most = "action.attributes.distance_km >= 1.00000"
    assert len(at_most) == 40
    create(client, "/v1/admin/rules", rule_body(condition=at_most), manager)
    response = client.post("/v1/admin/rules", json=rule_body(condition=at_most + " "),
                           headers=manager)
    assert response.status_code == 422
    assert response.json["errors"] == {
        "condition": ["an expression may have at most 40 characters, this has 41"]}
    # The bound holds for points too, and ranges after `in` and one closure are fine.
    monkeypatch.setitem(app.config, "RULE_EXPRESSION_MAX_CHARS", 2000)
    create(client, "/v1/admin/rules", rule_body(
        condition="action.hour in [7..9] and some([1, 2], # in (0..3])",
        points="(" * 32 + "10" + ")" * 32), manager)
    assert count(client, "/v1/admin/rules", manager) == 2


def test_rule_both_expressions_bad_reports_both(client: FlaskClient,
                                                manager: dict[str, str]) -> None:
    action_type(client, manager)
    response = client.post("/v1/admin/rules", json=rule_body(condition="(", points="1 +"),
                           headers=manager)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"condition", "points"}
    assert response.json["errors"]["condition"][0].startswith("parserError: ")
    assert response.json["errors"]["points"][0].startswith("parserError: ")


def test_rule_over_attributes_the_sample_lacks_is_accepted(client: FlaskClient,
                                                           manager: dict[str, str]) -> None:
    action_type(client, manager, "parkrun", "health")
    create(client, "/v1/admin/rules",
           rule_body(action_types=["parkrun"], condition="action.attributes.steps >= 5000",
                     points="action.attributes.steps / 1000"), manager)


def test_rule_unknown_action_type_is_422(client: FlaskClient, manager: dict[str, str]) -> None:
    action_type(client, manager)
    response = client.post("/v1/admin/rules",
                           json=rule_body(action_types=["bus_journey", "taxi_ride"]),
                           headers=manager)
    assert response.status_code == 422
    assert response.json["errors"] == {"action_types": ["unknown action type 'taxi_ride'"]}
    assert count(client, "/v1/admin/rules", manager) == 0
    empty = client.post("/v1/admin/rules", json=rule_body(action_types=[]), headers=manager)
    assert empty.status_code == 422 and "action_types" in empty.json["errors"]


def test_rule_ends_before_it_starts_is_422(client: FlaskClient, manager: dict[str, str]) -> None:
    action_type(client, manager)
    starts = datetime.now(UTC)
    for ends in (starts - timedelta(days=1), starts):
        response = client.post("/v1/admin/rules",
                               json=rule_body(starts_at=iso(starts), ends_at=iso(ends)),
                               headers=manager)
        assert response.status_code == 422
        assert list(response.json["errors"]) == ["ends_at"]
    # starts_at defaults to now, so an end in the past is before the start too.
    response = client.post("/v1/admin/rules",
                           json={"name": "Bus", "action_types": ["bus_journey"], "points": "10",
                                 "ends_at": iso(starts - timedelta(days=1))},
                           headers=manager)
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["ends_at"]
    assert count(client, "/v1/admin/rules", manager) == 0


@pytest.mark.parametrize("change", [
    {"caps": {"per_day": -1}},
    {"caps": {"per_fortnight": 3}},
    {"points_caps": {"lifetime": "lots"}},
    {"budget_points": 0},
    {"hold_days": -1},
    {"status": "paused"},
    {"starts_at": "2026-01-05T08:00:00"},  # no zone
    {"name": ""},
])
def test_rule_bad_fields_are_422(client: FlaskClient, manager: dict[str, str],
                                 change: dict[str, Any]) -> None:
    action_type(client, manager)
    response = client.post("/v1/admin/rules", json=rule_body(**change), headers=manager)
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) == set(change)


def test_rule_patch_makes_a_new_version(client: FlaskClient, manager: dict[str, str]) -> None:
    action_type(client, manager)
    action_type(client, manager, "tram_journey")
    rule = create(client, "/v1/admin/rules", rule_body(caps={"per_day": 4}), manager)
    patched = client.patch(f"/v1/admin/rules/{rule['id']}",
                           json={"points": "12", "action_types": ["bus_journey", "tram_journey"]},
                           headers=manager)
    assert patched.status_code == 200, patched.json
    assert patched.json["id"] == rule["id"]
    assert patched.json["version"] == 2
    assert patched.json["version_id"] != rule["version_id"]
    assert patched.json["points"] == "12"
    assert patched.json["action_types"] == ["bus_journey", "tram_journey"]
    # What was not changed is carried over.
    for key in ("name", "condition", "caps", "starts_at", "status", "priority", "stackable"):
        assert patched.json[key] == rule[key], key

    current = client.get(f"/v1/admin/rules/{rule['id']}", headers=manager).json
    assert current["version"] == 2 and current["points"] == "12"
    listed = client.get("/v1/admin/rules", headers=manager).json
    assert [(r["id"], r["version"]) for r in listed] == [(rule["id"], 2)]

    versions = client.get(f"/v1/admin/rules/{rule['id']}/versions", headers=manager)
    assert versions.status_code == 200
    assert [(v["version"], v["points"], v["action_types"]) for v in versions.json] == [
        (1, "10", ["bus_journey"]),
        (2, "12", ["bus_journey", "tram_journey"]),
    ]
    assert versions.json[0]["id"] == rule["version_id"]
    assert versions.json[1]["id"] == patched.json["version_id"]


def test_rule_patch_bad_expression_leaves_version_1(client: FlaskClient,
                                                    manager: dict[str, str]) -> None:
    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(), manager)
    for change, field in (({"points": "10 *"}, "points"),
                          ({"condition": "action.hour"}, "condition"),
                          ({"condition": "true or " * 300 + "true"}, "condition"),
                          ({"points": "(" * 33 + "1" + ")" * 33}, "points"),
                          ({"points": "len(map([1..100000000], #))"}, "points"),
                          ({"action_types": ["taxi_ride"]}, "action_types"),
                          ({"name": None}, "name"),
                          ({"ends_at": iso(datetime.now(UTC) - timedelta(days=31))}, "ends_at")):
        response = client.patch(f"/v1/admin/rules/{rule['id']}", json=change, headers=manager)
        assert response.status_code == 422, (change, response.json)
        assert list(response.json["errors"]) == [field]
    current = client.get(f"/v1/admin/rules/{rule['id']}", headers=manager).json
    assert current == rule
    versions = client.get(f"/v1/admin/rules/{rule['id']}/versions", headers=manager).json
    assert [v["version"] for v in versions] == [1]


def test_rule_patch_can_clear_the_end_and_caps(client: FlaskClient,
                                               manager: dict[str, str]) -> None:
    action_type(client, manager)
    ends = iso(datetime.now(UTC) + timedelta(days=5))
    rule = create(client, "/v1/admin/rules", rule_body(ends_at=ends, caps={"per_day": 2}),
                  manager)
    patched = client.patch(f"/v1/admin/rules/{rule['id']}",
                           json={"ends_at": None, "caps": {}}, headers=manager)
    assert patched.status_code == 200, patched.json
    assert patched.json["ends_at"] is None and patched.json["caps"] == {}


def test_unknown_rule_is_404(client: FlaskClient, manager: dict[str, str]) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/v1/admin/rules/{missing}", headers=manager).status_code == 404
    assert client.patch(f"/v1/admin/rules/{missing}", json={"points": "1"},
                        headers=manager).status_code == 404
    assert client.get(f"/v1/admin/rules/{missing}/versions", headers=manager).status_code == 404


# -- rules at work: versions, drafts, retirement ----------------------------------

def _resident_with_card(client: FlaskClient, app: Flask) -> dict[str, str]:
    me = bearer(member_token(client, app, "amira@example.org"))
    linked = link(client, app, me, CARD)
    assert linked.status_code == 201, linked.json
    return me


def _source(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    return create(client, "/v1/admin/sources",
                  {"name": "First Bus", "action_types": ["bus_journey"]}, headers)


def _send(client: FlaskClient, source: dict[str, Any], ref: str, when: datetime) -> dict[str, Any]:
    response = signed_post(client, source, {"items": [tap(ref, CARD, when)]})
    assert response.status_code == 200, response.json
    [result] = response.json["results"]
    assert result["status"] == "accepted", result
    return result


def test_awards_use_the_version_live_at_the_time(client: FlaskClient, app: Flask,
                                                 manager: dict[str, str]) -> None:
    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(points="10"), manager)
    source = _source(client, manager)
    me = _resident_with_card(client, app)

    first = _send(client, source, "trip-1", _daytime(2))
    patched = client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": "25"},
                           headers=manager)
    assert patched.status_code == 200
    second = _send(client, source, "trip-2", _daytime(1))
    assert (first["points"], second["points"]) == (10, 25)

    actions = {a["id"]: a for a in client.get("/v1/me/actions", headers=me).json}
    assert actions[first["action_id"]]["points"] == 10
    assert actions[first["action_id"]]["awards"] == [
        {"rule_id": rule["id"], "rule_name": "Bus journey", "rule_version": 1, "points": 10,
         "capped_by": None}]
    assert actions[second["action_id"]]["points"] == 25
    assert actions[second["action_id"]]["awards"] == [
        {"rule_id": rule["id"], "rule_name": "Bus journey", "rule_version": 2, "points": 25,
         "capped_by": None}]
    assert client.get("/v1/me/balance", headers=me).json["available"] == 35


def test_draft_rule_awards_nothing_until_activated(client: FlaskClient, app: Flask,
                                                   manager: dict[str, str]) -> None:
    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(status="draft"), manager)
    assert rule["status"] == "draft"
    source = _source(client, manager)
    me = _resident_with_card(client, app)

    draft = _send(client, source, "trip-1", _daytime(2))
    assert draft["points"] == 0
    activated = client.patch(f"/v1/admin/rules/{rule['id']}", json={"status": "active"},
                             headers=manager)
    assert activated.json["status"] == "active" and activated.json["version"] == 2
    live = _send(client, source, "trip-2", _daytime(1))
    assert live["points"] == 10

    actions = {a["id"]: a for a in client.get("/v1/me/actions", headers=me).json}
    assert actions[draft["action_id"]]["awards"] == []
    assert [a["rule_version"] for a in actions[live["action_id"]]["awards"]] == [2]


def test_retired_rule_stops_awards(client: FlaskClient, app: Flask,
                                   manager: dict[str, str]) -> None:
    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(), manager)
    source = _source(client, manager)
    me = _resident_with_card(client, app)

    assert _send(client, source, "trip-1", _daytime(2))["points"] == 10
    retired = client.patch(f"/v1/admin/rules/{rule['id']}", json={"status": "retired"},
                           headers=manager)
    assert retired.status_code == 200
    assert retired.json["status"] == "retired" and retired.json["version"] == 2
    assert _send(client, source, "trip-2", _daytime(1))["points"] == 0
    assert client.get("/v1/me/balance", headers=me).json["available"] == 10
    # The retired rule is still listed, at its retired version.
    listed = client.get("/v1/admin/rules", headers=manager).json
    assert [(r["status"], r["version"]) for r in listed] == [("retired", 2)]


def test_rule_window_bounds_awards(client: FlaskClient, app: Flask,
                                   manager: dict[str, str]) -> None:
    action_type(client, manager)
    create(client, "/v1/admin/rules",
           rule_body(starts_at=iso(_daytime(4, 0)), ends_at=iso(_daytime(2, 0))), manager)
    source = _source(client, manager)
    _resident_with_card(client, app)
    # All three in the past whatever the time of day the test runs.
    assert _send(client, source, "before", _daytime(5))["points"] == 0
    assert _send(client, source, "inside", _daytime(3))["points"] == 10
    assert _send(client, source, "after", _daytime(1))["points"] == 0


# -- lifecycle: activate and retire -----------------------------------------------

def test_activate_and_retire_make_versions(client: FlaskClient, app: Flask,
                                           admin: dict[str, str],
                                           manager: dict[str, str]) -> None:
    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(status="draft", points="7"), manager)
    path = f"/v1/admin/rules/{rule['id']}"

    activated = client.post(f"{path}/activate", headers=manager)
    assert activated.status_code == 200, activated.json
    assert activated.json["status"] == "active" and activated.json["version"] == 2
    assert activated.json["version_id"] != rule["version_id"]
    for key in ("name", "condition", "points", "caps", "starts_at", "priority"):
        assert activated.json[key] == rule[key], key
    again = client.post(f"{path}/activate", headers=manager)
    assert again.status_code == 409 and again.json["code"] == 409
    assert "already active" in again.json["message"]

    retired = client.post(f"{path}/retire", headers=manager)
    assert retired.status_code == 200, retired.json
    assert retired.json["status"] == "retired" and retired.json["version"] == 3
    assert client.post(f"{path}/retire", headers=manager).status_code == 409
    # A retired rule can be brought back; a draft can be retired unused.
    assert client.post(f"{path}/activate", headers=manager).json["version"] == 4

    versions = client.get(f"{path}/versions", headers=manager).json
    assert [(v["version"], v["status"]) for v in versions] == [
        (1, "draft"), (2, "active"), (3, "retired"), (4, "active")]
    assert client.get(path, headers=manager).json["status"] == "active"

    entries = [e for e in reversed(audit_entries(client, admin)) if e["target_type"] == "rule"]
    assert [(e["action"], e["details"].get("version"), e["details"].get("status"))
            for e in entries] == [("create", 1, None), ("activate", 2, "active"),
                                  ("retire", 3, "retired"), ("activate", 4, "active")]
    assert all(e["actor_role"] == "scheme_manager" for e in entries)


@pytest.mark.parametrize("role", ["analyst", "reviewer"])
def test_only_managers_activate_or_retire(client: FlaskClient, app: Flask,
                                          manager: dict[str, str], role: str) -> None:
    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(status="draft"), manager)
    headers = bearer(staff_token(client, app, role))
    for verb in ("activate", "retire"):
        response = client.post(f"/v1/admin/rules/{rule['id']}/{verb}", headers=headers)
        assert response.status_code == 403, verb
    assert client.post(f"/v1/admin/rules/{rule['id']}/activate").status_code == 401
    assert client.get(f"/v1/admin/rules/{rule['id']}", headers=manager).json["version"] == 1


def test_activate_unknown_rule_is_404(client: FlaskClient, manager: dict[str, str]) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for verb in ("activate", "retire"):
        response = client.post(f"/v1/admin/rules/{missing}/{verb}", headers=manager)
        assert response.status_code == 404 and response.json["code"] == 404


def test_draft_awards_nothing_activated_awards_retired_stops(
    client: FlaskClient, app: Flask, manager: dict[str, str]
) -> None:
    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(status="draft"), manager)
    path = f"/v1/admin/rules/{rule['id']}"
    source = _source(client, manager)
    me = _resident_with_card(client, app)

    assert _send(client, source, "trip-1", _daytime(3))["points"] == 0
    assert client.post(f"{path}/activate", headers=manager).status_code == 200
    assert _send(client, source, "trip-2", _daytime(2))["points"] == 10
    assert client.post(f"{path}/retire", headers=manager).status_code == 200
    assert _send(client, source, "trip-3", _daytime(1))["points"] == 0
    assert client.get("/v1/me/balance", headers=me).json["available"] == 10
    awards = [a["awards"] for a in client.get("/v1/me/actions", headers=me).json]
    assert sorted(len(a) for a in awards) == [0, 0, 1]
    assert [a[0]["rule_version"] for a in awards if a] == [2]


# -- the compiled-rule cache --------------------------------------------------------

def test_cache_follows_live_versions_and_drops_the_rest(client: FlaskClient, app: Flask,
                                                        manager: dict[str, str]) -> None:
    from rewards.actions import rulebook

    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(), manager)
    other = create(client, "/v1/admin/rules", rule_body(name="Other", points="1"), manager)
    source = _source(client, manager)
    _resident_with_card(client, app)

    assert _send(client, source, "trip-1", _daytime(3))["points"] == 11
    cached = rulebook.cached_version_ids()
    assert {rule["version_id"], other["version_id"]} <= cached

    # An edit through the API is used by the very next batch, no restart, and the
    # version it replaced leaves the cache.
    patched = client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": "30"},
                           headers=manager).json
    assert _send(client, source, "trip-2", _daytime(2))["points"] == 31
    cached = rulebook.cached_version_ids()
    assert patched["version_id"] in cached and other["version_id"] in cached
    assert rule["version_id"] not in cached

    retired = client.post(f"/v1/admin/rules/{other['id']}/retire", headers=manager).json
    assert _send(client, source, "trip-3", _daytime(1))["points"] == 30
    cached = rulebook.cached_version_ids()
    assert cached == {patched["version_id"]}
    assert retired["version_id"] not in cached and other["version_id"] not in cached


# -- sources ----------------------------------------------------------------------

def test_source_created_with_secrets_shown_once(client: FlaskClient,
                                                manager: dict[str, str]) -> None:
    action_type(client, manager)
    response = client.post("/v1/admin/sources",
                           json={"name": "First Bus", "action_types": ["bus_journey"]},
                           headers=manager)
    assert response.status_code == 201, response.json
    created = response.json
    assert created["name"] == "First Bus" and created["action_types"] == ["bus_journey"]
    assert created["active"] is True
    assert created["api_key"].startswith("src") and len(created["api_key"]) >= 32
    assert len(created["signing_secret"]) == 64

    listed = client.get("/v1/admin/sources", headers=manager)
    assert listed.status_code == 200 and "X-Pagination" in listed.headers
    assert [s["id"] for s in listed.json] == [created["id"]]
    raw = listed.get_data(as_text=True)
    assert "api_key" not in raw and "signing_secret" not in raw
    assert created["api_key"] not in raw and created["signing_secret"] not in raw
    assert set(listed.json[0]) == {"id", "name", "action_types", "active", "created_at"}


def test_source_unknown_action_type_is_422(client: FlaskClient, manager: dict[str, str]) -> None:
    action_type(client, manager)
    response = client.post("/v1/admin/sources",
                           json={"name": "Taxis", "action_types": ["bus_journey", "taxi_ride"]},
                           headers=manager)
    assert response.status_code == 422
    assert response.json["errors"] == {"action_types": ["unknown action type 'taxi_ride'"]}
    assert count(client, "/v1/admin/sources", manager) == 0
    missing = client.post("/v1/admin/sources", json={"name": "Taxis"}, headers=manager)
    assert missing.status_code == 422 and "action_types" in missing.json["errors"]


# -- partners ---------------------------------------------------------------------

def test_partner_created_with_key_shown_once(client: FlaskClient,
                                             manager: dict[str, str]) -> None:
    response = client.post("/v1/admin/partners",
                           json={"name": "Laynes Espresso", "kind": "business"},
                           headers=manager)
    assert response.status_code == 201, response.json
    created = response.json
    assert created["name"] == "Laynes Espresso" and created["kind"] == "business"
    assert created["active"] is True
    assert created["api_key"].startswith("ptn")
    charity = create(client, "/v1/admin/partners",
                     {"name": "Leeds Food Bank", "kind": "charity"}, manager)
    assert charity["kind"] == "charity"

    listed = client.get("/v1/admin/partners", headers=manager)
    assert listed.status_code == 200
    assert [p["name"] for p in listed.json] == ["Laynes Espresso", "Leeds Food Bank"]
    raw = listed.get_data(as_text=True)
    assert "api_key" not in raw and created["api_key"] not in raw
    # The key works at the till.
    assert client.get("/v1/partner/vouchers/ZZZZZZZZZZ",
                      headers={"X-Api-Key": created["api_key"]}).status_code == 404


@pytest.mark.parametrize("kind", ["shop", "", "Business", None])
def test_partner_kind_must_be_business_or_charity(client: FlaskClient, manager: dict[str, str],
                                                  kind: Any) -> None:
    response = client.post("/v1/admin/partners", json={"name": "X", "kind": kind},
                           headers=manager)
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["kind"]
    assert count(client, "/v1/admin/partners", manager) == 0


# -- offers -----------------------------------------------------------------------

def test_offer_is_live_at_once_and_visible_to_residents(client: FlaskClient, app: Flask,
                                                        manager: dict[str, str]) -> None:
    partner = create(client, "/v1/admin/partners",
                     {"name": "Laynes Espresso", "kind": "business"}, manager)
    offer = create(client, "/v1/admin/offers",
                   {"partner_id": partner["id"], "title": "Flat white", "cost_points": 25,
                    "stock": 50, "per_member_limit": 2, "voucher_valid_days": 14},
                   manager)
    assert offer["status"] == "live"
    assert offer["partner_id"] == partner["id"]
    assert (offer["cost_points"], offer["stock"], offer["claimed"]) == (25, 50, 0)
    assert offer["per_member_limit"] == 2 and offer["voucher_valid_days"] == 14

    me = bearer(member_token(client, app, "amira@example.org"))
    offers = client.get("/v1/offers", headers=me)
    assert offers.status_code == 200
    assert [(o["id"], o["title"], o["stock_left"]) for o in offers.json] == [
        (offer["id"], "Flat white", 50)]
    assert offers.json[0]["partner"] == {"id": partner["id"], "name": "Laynes Espresso"}
    assert client.get(f"/v1/offers/{offer['id']}", headers=me).status_code == 200
    listed = client.get("/v1/admin/offers", headers=manager).json
    assert [o["id"] for o in listed] == [offer["id"]]


def test_offer_defaults(client: FlaskClient, manager: dict[str, str]) -> None:
    partner = create(client, "/v1/admin/partners", {"name": "Cafe", "kind": "business"}, manager)
    offer = create(client, "/v1/admin/offers",
                   {"partner_id": partner["id"], "title": "Tea", "cost_points": 10}, manager)
    assert offer["stock"] is None and offer["per_member_limit"] is None
    assert offer["voucher_valid_days"] == 30


def test_offer_unknown_or_charity_partner_is_422(client: FlaskClient,
                                                 manager: dict[str, str]) -> None:
    unknown = client.post("/v1/admin/offers",
                          json={"partner_id": "00000000-0000-4000-8000-000000000000",
                                "title": "Flat white", "cost_points": 25},
                          headers=manager)
    assert unknown.status_code == 422
    assert list(unknown.json["errors"]) == ["partner_id"]
    charity = create(client, "/v1/admin/partners", {"name": "Food Bank", "kind": "charity"},
                     manager)
    refused = client.post("/v1/admin/offers",
                          json={"partner_id": charity["id"], "title": "Tin", "cost_points": 5},
                          headers=manager)
    assert refused.status_code == 422
    assert list(refused.json["errors"]) == ["partner_id"]
    assert "charity" in refused.json["errors"]["partner_id"][0]
    assert count(client, "/v1/admin/offers", manager) == 0


@pytest.mark.parametrize("change", [
    {"cost_points": 0},
    {"cost_points": -5},
    {"cost_points": "lots"},
    {"stock": -1},
    {"per_member_limit": 0},
    {"voucher_valid_days": 0},
    {"title": ""},
    {"partner_id": "not-a-uuid"},
])
def test_offer_bad_fields_are_422(client: FlaskClient, manager: dict[str, str],
                                  change: dict[str, Any]) -> None:
    partner = create(client, "/v1/admin/partners", {"name": "Cafe", "kind": "business"}, manager)
    body = {"partner_id": partner["id"], "title": "Flat white", "cost_points": 25, **change}
    response = client.post("/v1/admin/offers", json=body, headers=manager)
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) == set(change)
    assert count(client, "/v1/admin/offers", manager) == 0


def test_offer_ends_before_it_starts_is_422(client: FlaskClient,
                                            manager: dict[str, str]) -> None:
    partner = create(client, "/v1/admin/partners", {"name": "Cafe", "kind": "business"}, manager)
    now = datetime.now(UTC)
    response = client.post("/v1/admin/offers",
                           json={"partner_id": partner["id"], "title": "Tea", "cost_points": 5,
                                 "starts_at": iso(now + timedelta(days=2)),
                                 "ends_at": iso(now + timedelta(days=1))},
                           headers=manager)
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["ends_at"]


# -- roles ------------------------------------------------------------------------

def _posts(partner_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/v1/admin/action-types", {"code": "walk", "name": "Walk", "category": "health"}),
        ("/v1/admin/rules", rule_body()),
        ("/v1/admin/sources", {"name": "First Bus", "action_types": ["bus_journey"]}),
        ("/v1/admin/partners", {"name": "Cafe", "kind": "business"}),
        ("/v1/admin/offers", {"partner_id": partner_id or "00000000-0000-4000-8000-000000000000",
                              "title": "Tea", "cost_points": 5}),
    ]


def test_scheme_manager_can_create_everything(client: FlaskClient,
                                              manager: dict[str, str]) -> None:
    action_type(client, manager)
    partner = create(client, "/v1/admin/partners", {"name": "Laynes", "kind": "business"},
                     manager)
    for path, body in _posts(partner["id"]):
        assert client.post(path, json=body, headers=manager).status_code == 201, path


@pytest.mark.parametrize("role", ["analyst", "reviewer", "partner"])
def test_other_staff_cannot_create(client: FlaskClient, app: Flask, admin: dict[str, str],
                                   role: str) -> None:
    action_type(client, admin)
    partner = create(client, "/v1/admin/partners", {"name": "Laynes", "kind": "business"}, admin)
    if role == "partner":
        with app.app_context():
            db.session.add(StaffUser(email="till@laynes.example", role="partner",
                                     partner_id=db.session.get(Partner, _uuid(partner["id"])).id,
                                     password_hash=generate_password_hash("correct horse")))
            db.session.commit()
        login = client.post("/v1/auth/login",
                            json={"email": "till@laynes.example", "password": "correct horse"})
        assert login.status_code == 200, login.json
        headers = bearer(login.json["access_token"])
    else:
        headers = bearer(staff_token(client, app, role))
    before = audit_entries(client, admin)
    for path, body in _posts(partner["id"]):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 403, (path, response.json)
        assert response.json["code"] == 403
    rule = create(client, "/v1/admin/rules", rule_body(), admin)
    assert client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": "1"},
                        headers=headers).status_code == 403
    assert len(audit_entries(client, admin)) == len(before) + 1  # only the admin's rule


def test_resident_is_403_and_no_token_is_401(client: FlaskClient, app: Flask) -> None:
    resident = bearer(member_token(client, app, "amira@example.org"))
    for path, body in _posts():
        response = client.post(path, json=body, headers=resident)
        assert response.status_code == 403, path
        assert client.get(path, headers=resident).status_code == 403, path
        anonymous = client.post(path, json=body)
        assert anonymous.status_code == 401, path
        assert anonymous.json["code"] == 401
        assert client.get(path).status_code == 401, path
        assert client.post(path, json=body,
                           headers=bearer("not-a-token")).status_code == 401, path
    assert client.get("/v1/admin/audit-log", headers=resident).status_code == 403
    assert client.get("/v1/admin/audit-log").status_code == 401


@pytest.mark.parametrize(("role", "path", "status"), [
    ("analyst", "/v1/admin/rules", 200),
    ("reviewer", "/v1/admin/rules", 200),
    ("analyst", "/v1/admin/sources", 403),
    ("reviewer", "/v1/admin/partners", 403),
    ("analyst", "/v1/admin/offers", 403),
    ("scheme_manager", "/v1/admin/sources", 200),
])
def test_who_may_read(client: FlaskClient, app: Flask, role: str, path: str,
                      status: int) -> None:
    headers = bearer(staff_token(client, app, role))
    assert client.get(path, headers=headers).status_code == status


# -- audit ------------------------------------------------------------------------

def test_every_change_is_audited(client: FlaskClient, app: Flask, admin: dict[str, str],
                                 manager: dict[str, str]) -> None:
    kind = action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(), manager)
    patched = client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": "12"},
                           headers=manager)
    assert patched.status_code == 200
    retired = client.patch(f"/v1/admin/rules/{rule['id']}", json={"status": "retired"},
                           headers=admin)
    assert retired.status_code == 200
    source = create(client, "/v1/admin/sources",
                    {"name": "First Bus", "action_types": ["bus_journey"]}, manager)
    partner = create(client, "/v1/admin/partners", {"name": "Laynes", "kind": "business"},
                     manager)
    offer = create(client, "/v1/admin/offers",
                   {"partner_id": partner["id"], "title": "Flat white", "cost_points": 25},
                   manager)
    # Refused requests change nothing and write nothing.
    assert client.post("/v1/admin/rules", json=rule_body(points="1 +"),
                       headers=manager).status_code == 422
    assert client.post("/v1/admin/action-types",
                       json={"code": "bus_journey", "name": "X", "category": "travel"},
                       headers=manager).status_code == 409

    entries = audit_entries(client, admin)
    seen = [(e["actor_role"], e["action"], e["target_type"], e["target_id"])
            for e in reversed(entries)]  # the log is newest first
    assert seen == [
        ("scheme_manager", "create", "action_type", kind["id"]),
        ("scheme_manager", "create", "rule", rule["id"]),
        ("scheme_manager", "update", "rule", rule["id"]),
        ("admin", "update", "rule", rule["id"]),
        ("scheme_manager", "create", "source", source["id"]),
        ("scheme_manager", "create", "partner", partner["id"]),
        ("scheme_manager", "create", "offer", offer["id"]),
    ]
    by_target = {(e["target_type"], e["action"], e["actor_role"]): e for e in entries}
    assert by_target[("rule", "update", "scheme_manager")]["details"]["version"] == 2
    assert by_target[("rule", "update", "scheme_manager")]["details"]["changed"] == ["points"]
    assert by_target[("rule", "update", "admin")]["details"]["version"] == 3
    assert by_target[("action_type", "create", "scheme_manager")]["details"] == {
        "code": "bus_journey"}
    assert all(e["actor_id"] and e["created_at"] for e in entries)
    # No secret ever reaches the log.
    raw = json.dumps(entries)
    assert source["api_key"] not in raw and source["signing_secret"] not in raw
    assert partner["api_key"] not in raw


@pytest.mark.parametrize("role", ["scheme_manager", "analyst", "reviewer"])
def test_audit_log_is_for_admins_only(client: FlaskClient, app: Flask, role: str) -> None:
    response = client.get("/v1/admin/audit-log", headers=bearer(staff_token(client, app, role)))
    assert response.status_code == 403
    assert response.json["code"] == 403


def test_audit_log_is_paginated(client: FlaskClient, admin: dict[str, str]) -> None:
    for code in ("walk", "run", "swim"):
        action_type(client, admin, code, "health")
    page = client.get("/v1/admin/audit-log?page_size=2", headers=admin)
    assert page.status_code == 200 and len(page.json) == 2
    assert json.loads(page.headers["X-Pagination"])["total"] == 3
    assert [e["details"]["code"] for e in page.json] == ["swim", "run"]


def _uuid(value: str):
    import uuid

    return uuid.UUID(value)


# -- at the same time -------------------------------------------------------------

def _at_once(app: Flask, calls: list[Any]) -> list[Any]:
    return at_once(app, len(calls), lambda client, index: calls[index](client))


def test_concurrent_rule_edits_each_make_a_version(client: FlaskClient, app: Flask,
                                                   manager: dict[str, str]) -> None:
    action_type(client, manager)
    rule = create(client, "/v1/admin/rules", rule_body(), manager)
    path = f"/v1/admin/rules/{rule['id']}"
    results = _at_once(app, [
        lambda c, points=points: c.patch(path, json={"points": points}, headers=manager)
        for points in ("11", "12", "13")
    ])
    assert sorted(r.status_code for r in results) == [200, 200, 200], [r.json for r in results]
    assert sorted(r.json["version"] for r in results) == [2, 3, 4]
    versions = client.get(f"{path}/versions", headers=manager).json
    assert [v["version"] for v in versions] == [1, 2, 3, 4]
    last = max(results, key=lambda r: r.json["version"])
    assert client.get(path, headers=manager).json["points"] == last.json["points"]


def test_same_action_type_added_at_once_is_one_201_and_409s(client: FlaskClient, app: Flask,
                                                            manager: dict[str, str]) -> None:
    body = {"code": "bus_journey", "name": "Bus journey", "category": "travel"}
    results = _at_once(app, [
        lambda c: c.post("/v1/admin/action-types", json=body, headers=manager)
        for _ in range(3)
    ])
    assert sorted(r.status_code for r in results) == [201, 409, 409], [r.json for r in results]
    assert count(client, "/v1/admin/action-types", manager) == 1
