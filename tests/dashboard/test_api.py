"""The dashboard over HTTP: who may see it, JSON and CSV agreeing, the open-data export,
and the staff settings with their audit trail."""

from __future__ import annotations

import csv
import io
import random
import zipfile
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.dashboard import FIGURES, Filters, Raw, compute
from rewards.dashboard.filters import today
from rewards.dashboard.settings import put
from rewards.extensions import db
from rewards.models import AuditEntry

from ..helpers import bearer, staff_token
from ..reward_support import add_ward
from .scheme import WARDS, make_world, now_utc, random_round


def _world(app: Flask, rounds: int = 2) -> None:
    rng = random.Random(11)
    with app.app_context():
        world = make_world(db.session)
        for ward in WARDS:
            put(db.session, f"ward:{ward}", {"adult_population": 1000, "imd_decile": 3}, None)
        db.session.commit()
        for _ in range(rounds):
            random_round(db.session, world, rng, now_utc(), actions=300, members=30)


def test_figures_are_listed_for_an_analyst(client: FlaskClient, app: Flask) -> None:
    token = staff_token(client, app, "analyst")
    response = client.get("/v1/admin/dashboard", headers=bearer(token))
    assert response.status_code == 200
    names = [figure["name"] for figure in response.json["figures"]]
    assert names == list(FIGURES)
    first = response.json["figures"][0]
    assert set(first) == {"name", "title", "title_cy", "description", "chart", "x", "y"}
    assert response.json["min_cell"] == 10


def test_roles_without_dashboards_are_refused(client: FlaskClient, app: Flask) -> None:
    assert client.get("/v1/admin/dashboard/actions").status_code == 401
    for role in ("reviewer", "desk"):
        token = staff_token(client, app, role)
        response = client.get("/v1/admin/dashboard/actions", headers=bearer(token))
        assert response.status_code == 403, role
        assert "roles" in response.json["message"]


def test_a_figure_as_json_and_csv_gives_the_same_numbers(client: FlaskClient,
                                                         app: Flask) -> None:
    _world(app)
    token = staff_token(client, app, "analyst")
    end = today()
    query = f"?from={end - timedelta(days=150)}&to={end}"
    body = client.get(f"/v1/admin/dashboard/actions_by_ward{query}", headers=bearer(token))
    assert body.status_code == 200, body.json
    data = body.json
    assert data["name"] == "actions_by_ward"
    assert data["filters"]["from"] == str(end - timedelta(days=150))
    assert [c["key"] for c in data["columns"]] == ["ward", "members", "actions", "points",
                                                   "actions_per_member"]
    # The request brought the rollups up to date: the figures equal the raw tables'.
    with app.app_context():
        raw = compute("actions_by_ward", Filters.from_args(
            {"from": str(end - timedelta(days=150)), "to": str(end)}), source=Raw())
    assert data["rows"] == raw.to_json()["rows"]
    shown = [row for row in data["rows"] if row["members"] is not None]
    assert shown and all(row["members"] >= 10 for row in shown)
    for path, headers in ((f"/v1/admin/dashboard/actions_by_ward.csv{query}", {}),
                          (f"/v1/admin/dashboard/actions_by_ward{query}",
                           {"Accept": "text/csv"}),
                          (f"/v1/admin/dashboard/actions_by_ward{query}",
                           {"Accept": "text/csv, application/json;q=0"}),
                          (f"/v1/admin/dashboard/actions_by_ward{query}",
                           {"Accept": "application/json;q=0.5, text/csv"})):
        response = client.get(path, headers={**bearer(token), **headers})
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert rows[0] == ["Ward", "Members", "Actions", "Points", "Actions per member"]
        for line, row in zip(rows[1:], data["rows"], strict=True):
            assert line[0] == row["ward"]
            assert line[2] == ("suppressed" if row["actions"] is None else str(row["actions"]))
    for accept in ("application/json, text/csv", "*/*", "text/csv;q=0.5, application/json"):
        answer = client.get(f"/v1/admin/dashboard/actions_by_ward{query}",
                            headers={**bearer(token), "Accept": accept})
        assert answer.mimetype == "application/json", accept


def test_small_cells_are_suppressed_in_json_and_csv(client: FlaskClient, app: Flask) -> None:
    _world(app, rounds=1)
    token = staff_token(client, app, "analyst")
    response = client.get("/v1/admin/dashboard/reach_wards?from=2020-01-01",
                          headers=bearer(token))
    assert response.status_code == 200
    hidden = [row for row in response.json["rows"] if row.get("_suppressed")]
    assert hidden, response.json["rows"]
    assert all(row["joined"] is None and "joined" in row["_suppressed"] for row in hidden)
    text = client.get("/v1/admin/dashboard/reach_wards.csv?from=2020-01-01",
                      headers=bearer(token)).get_data(as_text=True)
    assert text.count("suppressed") >= len(hidden)


def test_bad_requests_get_clear_errors(client: FlaskClient, app: Flask) -> None:
    token = staff_token(client, app, "analyst")
    response = client.get("/v1/admin/dashboard/actions?from=2026-02-30", headers=bearer(token))
    assert response.status_code == 422
    assert "from must be a date" in response.json["message"]
    response = client.get("/v1/admin/dashboard/nothing", headers=bearer(token))
    assert response.status_code == 404
    assert "GET /v1/admin/dashboard" in response.json["message"]
    response = client.get("/v1/admin/dashboard/open-data/forecast.csv", headers=bearer(token))
    assert response.status_code == 404


def test_open_data_zip_has_each_file_and_a_dictionary(client: FlaskClient, app: Flask) -> None:
    _world(app, rounds=1)
    token = staff_token(client, app, "analyst")
    response = client.get("/v1/admin/dashboard/open-data.zip", headers=bearer(token))
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    bundle = zipfile.ZipFile(io.BytesIO(response.data))
    names = set(bundle.namelist())
    assert {"dictionary.csv", "actions.csv", "reach_wards.csv", "README.txt"} <= names
    assert "owed_partners.csv" not in names and "forecast.csv" not in names
    dictionary = list(csv.DictReader(io.StringIO(bundle.read("dictionary.csv").decode())))
    members = [row for row in dictionary if row["file"] == "actions.csv"
               and row["column"] == "members"]
    assert members[0]["unit"] == "count"
    assert "fewer than 10 distinct members" in members[0]["suppression"]
    single = client.get("/v1/admin/dashboard/open-data/actions.csv", headers=bearer(token))
    assert single.get_data(as_text=True) == bundle.read("actions.csv").decode()
    assert client.get("/v1/admin/dashboard/open-data/dictionary.csv",
                      headers=bearer(token)).status_code == 200


def test_settings_change_figures_and_are_audited(client: FlaskClient, app: Flask) -> None:
    _world(app, rounds=1)
    manager = staff_token(client, app, "scheme_manager")
    analyst = staff_token(client, app, "analyst")
    refused = client.put("/v1/admin/dashboard/settings/value-per-point", json={"pence": 2},
                         headers=bearer(analyst))
    assert refused.status_code == 403
    bad = client.put("/v1/admin/dashboard/settings/value-per-point", json={"pence": -1},
                     headers=bearer(manager))
    assert bad.status_code == 422
    assert client.put("/v1/admin/dashboard/settings/impact/unknown_type", json={"co2_kg": 1},
                      headers=bearer(manager)).status_code == 404
    before = client.get("/v1/admin/dashboard/money?from=2020-01-01", headers=bearer(analyst))
    issued = next(row for row in before.json["rows"] if row["measure"] == "issued")
    ok = client.put("/v1/admin/dashboard/settings/value-per-point", json={"pence": 2.5},
                    headers=bearer(manager))
    assert ok.status_code == 200 and ok.json["pence_per_point"] == 2.5
    after = client.get("/v1/admin/dashboard/money?from=2020-01-01", headers=bearer(analyst))
    issued_after = next(row for row in after.json["rows"] if row["measure"] == "issued")
    assert issued_after["pounds"] == round(issued["points"] * 2.5 / 100, 2)
    response = client.put("/v1/admin/dashboard/settings/impact/bus_journey",
                          json={"co2_kg_per_km": 0.1, "car_km_per_km": 1},
                          headers=bearer(manager))
    assert response.status_code == 200
    impact = client.get("/v1/admin/dashboard/impact?from=2020-01-01", headers=bearer(analyst))
    bus = next(row for row in impact.json["rows"] if row["type_code"] == "bus_journey")
    assert bus["km"] and bus["co2_kg"] == round(bus["km"] * 0.1, 1)
    assert bus["car_km"] == bus["km"]
    # A ward's figures belong to a ward of the scheme's list, kept under its name.
    nowhere = client.put("/v1/admin/dashboard/settings/wards/Atlantis",
                         json={"adult_population": 18000}, headers=bearer(manager))
    assert nowhere.status_code == 404 and nowhere.json["reason"] == "unknown_ward"
    add_ward(app, "Armley")
    ward = client.put("/v1/admin/dashboard/settings/wards/ARMLEY",
                      json={"adult_population": 18000, "imd_decile": 2},
                      headers=bearer(manager))
    assert ward.json["wards"]["Armley"] == {"adult_population": 18000, "imd_decile": 2,
                                            "illustrative": False}
    with app.app_context():
        entries = db.session.scalars(select(AuditEntry).where(
            AuditEntry.target_type == "dashboard_setting")).all()
    targets = sorted(entry.target_id for entry in entries)
    assert targets == ["impact:bus_journey", "value_per_point", "ward:Armley"]
    point = next(entry for entry in entries if entry.target_id == "value_per_point")
    assert point.details == {"before": None, "after": {"pence": 2.5}}
    assert point.actor_role == "scheme_manager"


def test_a_member_may_give_a_birth_year_and_it_shows_only_as_a_band(client: FlaskClient,
                                                                    app: Flask) -> None:
    from ..helpers import member_token

    token = member_token(client, app, "aisha@example.org")
    bad = client.patch("/v1/me", json={"birth_year": 1850}, headers=bearer(token))
    assert bad.status_code == 422
    ok = client.patch("/v1/me", json={"birth_year": 1990}, headers=bearer(token))
    assert ok.status_code == 200 and ok.json["birth_year"] == 1990
    with app.app_context():
        from rewards.models import Member

        member = db.session.scalar(select(Member).where(Member.email == "aisha@example.org"))
        assert member.birth_year == 1990
    assert client.delete("/v1/me", headers=bearer(token)).status_code == 204
    with app.app_context():
        assert db.session.get(Member, member.id).birth_year is None
