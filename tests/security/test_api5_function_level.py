"""API5:2023 Broken function level authorisation: who may call what (the role matrix in
docs/security.md), and simulation, which replays individual residents' actions: scheme
managers only, and every figure about fewer than DASHBOARD_MIN_CELL members hidden."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ..helpers import bearer, build_scheme, iso, member_token, signed_post, staff_token
from ..reward_support import resident

# Staff routes and the roles allowed (admin always is): the matrix in docs/security.md.
MATRIX: list[tuple[str, str, set[str]]] = [
    ("POST", "/v1/admin/rules/simulate", {"scheme_manager"}),
    ("GET", "/v1/admin/rules", {"scheme_manager", "reviewer", "analyst"}),
    ("POST", "/v1/admin/rules", {"scheme_manager"}),
    ("GET", "/v1/admin/donations", {"scheme_manager", "analyst"}),
    ("GET", "/v1/admin/audit-log", set()),
    ("POST", "/v1/admin/partners", {"scheme_manager"}),
    ("POST", "/v1/admin/sources", {"scheme_manager"}),
    ("GET", "/v1/admin/reviews", {"reviewer"}),
]
ROLES = ("admin", "scheme_manager", "reviewer", "analyst")


def _trip(ref: str, member_id: str, distance: float, hours_ago: int) -> dict[str, Any]:
    return {"external_ref": ref, "member": {"member_id": member_id}, "type": "bus_journey",
            "occurred_at": iso(datetime.now(UTC) - timedelta(hours=hours_ago)),
            "attributes": {"distance_km": distance}}


def _one_resident_query() -> dict[str, Any]:
    # The attack: a condition only one resident's trip meets.
    return {"rules": [{"name": "Probe", "action_types": ["bus_journey"],
                       "condition": "action.attributes.distance_km == 7.31",
                       "points": "1"}]}


def test_the_role_matrix_holds(client: FlaskClient, app: Flask) -> None:
    tokens = {role: bearer(staff_token(client, app, role)) for role in ROLES}
    member = bearer(member_token(client, app, "probe@example.org"))
    for method, path, allowed in MATRIX:
        for role in ROLES:
            answer = client.open(path, method=method, json={}, headers=tokens[role])
            permitted = role == "admin" or role in allowed
            assert (answer.status_code != 403) == permitted, (method, path, role,
                                                              answer.status_code)
        assert client.open(path, method=method, json={}, headers=member).status_code == 403
        assert client.open(path, method=method, json={}).status_code == 401


def test_an_analyst_cannot_simulate(client: FlaskClient, app: Flask) -> None:
    build_scheme(client, app)
    analyst = bearer(staff_token(client, app, "analyst"))
    answer = client.post("/v1/admin/rules/simulate", json=_one_resident_query(),
                         headers=analyst)
    assert answer.status_code == 403


def test_simulation_hides_what_one_residents_travel_would_show(client: FlaskClient,
                                                               app: Flask) -> None:
    scheme = build_scheme(client, app)
    manager = bearer(staff_token(client, app, "scheme_manager"))
    crowd = [resident(client, app) for _ in range(12)]
    items = [_trip(f"c{i}", person.id, 3.0, 2 + i) for i, person in enumerate(crowd)]
    items.append(_trip("target", crowd[0].id, 7.31, 30))
    sent = signed_post(client, scheme.source, {"items": items})
    assert [r["status"] for r in sent.json["results"]] == ["accepted"] * len(items)

    probe = client.post("/v1/admin/rules/simulate", json=_one_resident_query(),
                        headers=manager)
    assert probe.status_code == 200, probe.json
    body = probe.json
    assert body["suppressed"] is True
    assert body["members_touched"] is None
    assert (body["points"], body["actions_matched"], body["live_points"],
            body["cost_change"]) == (None, None, None, None)
    [rule] = body["points_by_rule"]
    assert (rule["points"], rule["actions"], rule["capped"], rule["suppressed"]) == (
        None, None, None, True)
    # What does not depend on the draft stays.
    assert body["actions_considered"] == len(items) and body["baseline_points"] > 0

    # A draft and a broad companion: the small one hides, and so does every total.
    pair = {"rules": [_one_resident_query()["rules"][0],
                      {"name": "Everyone", "action_types": ["bus_journey"], "points": "2"}]}
    both = client.post("/v1/admin/rules/simulate", json=pair, headers=manager).json
    small, broad = both["points_by_rule"]
    assert small["points"] is None and broad["points"] == 2 * len(items)
    assert both["points"] is None and both["cost_change"] is None

    # A draft that matches many members shows its figures.
    wide = {"rules": [{"name": "Everyone", "action_types": ["bus_journey"], "points": "2"}]}
    shown = client.post("/v1/admin/rules/simulate", json=wide, headers=manager).json
    assert shown["suppressed"] is False
    assert (shown["members_touched"], shown["points"]) == (12, 2 * len(items))


@pytest.mark.parametrize("threshold", [1, 2])
def test_the_threshold_is_a_setting(client: FlaskClient, app: Flask, threshold: int,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "DASHBOARD_MIN_CELL", threshold)
    scheme = build_scheme(client, app)
    person = resident(client, app)
    signed_post(client, scheme.source, {"items": [_trip("t", person.id, 7.31, 3)]})
    body = client.post("/v1/admin/rules/simulate", json=_one_resident_query(),
                       headers=bearer(scheme.admin)).json
    assert (body["members_touched"] is None) == (threshold > 1)
