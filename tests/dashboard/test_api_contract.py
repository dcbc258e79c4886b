"""The dashboard's published contract: every operation declares its success answer with
the media types it really sends, real answers validate against what is declared, and
the figure filters are declared query parameters whose refusal names the argument."""

from __future__ import annotations

import random
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from rewards.dashboard.settings import put
from rewards.extensions import db
from rewards.models.scheme import CATEGORIES

from ..helpers import bearer, staff_token
from ..reward_support import add_ward
from .scheme import WARDS, make_world, now_utc, random_round

BASE = "/v1/admin/dashboard"
FILTERS = {"from", "to", "ward", "category", "action_type"}
JSON = "application/json"
CSV = "text/csv"
# operationId -> (method, path, the media types of its 200)
OPERATIONS = {
    "listDashboardFigures": ("get", BASE, {JSON}),
    "getDashboardFigure": ("get", BASE + "/{name}", {JSON, CSV}),
    "getDashboardFigureCsv": ("get", BASE + "/{name}.csv", {CSV}),
    "getDashboardSettings": ("get", BASE + "/settings", {JSON}),
    "getOpenDataZip": ("get", BASE + "/open-data.zip", {"application/zip"}),
    "getOpenDataDictionary": ("get", BASE + "/open-data/dictionary.csv", {CSV}),
    "getOpenDataFigureCsv": ("get", BASE + "/open-data/{name}.csv", {CSV}),
    "setValuePerPoint": ("put", BASE + "/settings/value-per-point", {JSON}),
    "setImpactFactors": ("put", BASE + "/settings/impact/{type_code}", {JSON}),
    "setWardFigures": ("put", BASE + "/settings/wards/{ward}", {JSON}),
}


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    return client.get("/openapi.json").json


def _operation(spec: dict[str, Any], operation_id: str) -> dict[str, Any]:
    method, path, _ = OPERATIONS[operation_id]
    operation = spec["paths"][path][method]
    assert operation["operationId"] == operation_id
    return operation


def _schema(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else node


def test_every_dashboard_operation_declares_its_200_and_media_types(
        spec: dict[str, Any]) -> None:
    for operation_id, (_, _, media) in OPERATIONS.items():
        responses = _operation(spec, operation_id)["responses"]
        assert "200" in responses, operation_id
        content = responses["200"]["content"]
        assert set(content) == media, operation_id
        if CSV in content:
            assert content[CSV]["schema"] == {"type": "string"}, operation_id
        if JSON in content:
            schema = _schema(spec, content[JSON]["schema"])
            assert schema["type"] == "object" and schema["properties"], operation_id
            assert set(schema["required"]) == set(schema["properties"]), operation_id
    zipped = _operation(spec, "getOpenDataZip")["responses"]["200"]["content"]
    assert zipped["application/zip"]["schema"] == {"type": "string", "format": "binary"}


def test_the_figure_filters_are_declared_query_parameters_with_a_422(
        spec: dict[str, Any]) -> None:
    for operation_id, names in (("getDashboardFigure", FILTERS),
                                ("getDashboardFigureCsv", FILTERS),
                                ("getOpenDataZip", {"from", "to"}),
                                ("getOpenDataDictionary", {"from", "to"}),
                                ("getOpenDataFigureCsv", {"from", "to"})):
        operation = _operation(spec, operation_id)
        query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert set(query) == names, operation_id
        assert not any(p["required"] for p in query.values()), operation_id
        assert query["from"]["schema"] == {"type": "string", "format": "date"}, operation_id
        assert "422" in operation["responses"], operation_id
    query = {p["name"]: p for p in _operation(spec, "getDashboardFigure")["parameters"]}
    assert query["category"]["schema"]["enum"] == list(CATEGORIES)


def _world(app: Flask) -> None:
    with app.app_context():
        world = make_world(db.session)
        for ward in WARDS:
            put(db.session, f"ward:{ward}", {"adult_population": 1000, "imd_decile": 3}, None)
        db.session.commit()
        random_round(db.session, world, random.Random(7), now_utc(), actions=300, members=30)


def _conforms(api: Any, method: str, path: str, response: TestResponse) -> None:
    """`response` is declared for its status and media type, and its body validates."""
    operation = api[path][method.upper()]
    declared = operation.definition.raw["responses"]
    assert str(response.status_code) in declared, (path, response.status_code)
    if response.status_code < 400:
        assert response.mimetype in declared[str(response.status_code)]["content"], path
    operation.validate_response(response)  # raises on a body its schema does not allow


def test_real_answers_validate_against_their_declared_schemas(
        client: FlaskClient, app: Flask, spec: dict[str, Any]) -> None:
    _world(app)
    add_ward(app, "Armley")
    api = schemathesis.openapi.from_dict(spec)
    analyst = bearer(staff_token(client, app, "analyst"))
    manager = bearer(staff_token(client, app, "scheme_manager"))
    checked = set()

    def get(path: str, template: str, headers: dict[str, str] = analyst) -> TestResponse:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.get_data(as_text=True))
        _conforms(api, "get", template, response)
        checked.add(("get", template))
        return response

    listed = get(BASE, BASE).json
    assert listed["figures"] and listed["min_cell"] == 10
    for figure in listed["figures"]:
        name = figure["name"]
        get(f"{BASE}/{name}?from=2020-01-01", BASE + "/{name}")
        get(f"{BASE}/{name}?from=2020-01-01&ward=Armley", BASE + "/{name}")
    suppressed = get(f"{BASE}/reach_wards?from=2020-01-01", BASE + "/{name}").json
    assert any(row.get("_suppressed") for row in suppressed["rows"])
    as_csv = get(f"{BASE}/actions?category=travel", BASE + "/{name}",
                 {**analyst, "Accept": CSV})
    assert as_csv.mimetype == CSV
    get(f"{BASE}/actions.csv?from=2020-01-01", BASE + "/{name}.csv")
    get(f"{BASE}/settings", BASE + "/settings")
    get(f"{BASE}/open-data.zip", BASE + "/open-data.zip")
    get(f"{BASE}/open-data/dictionary.csv?from=2020-01-01", BASE + "/open-data/dictionary.csv")
    get(f"{BASE}/open-data/actions.csv", BASE + "/open-data/{name}.csv")
    for path, template, body in (
            ("/settings/value-per-point", "/settings/value-per-point", {"pence": 2.5}),
            ("/settings/impact/bus_journey", "/settings/impact/{type_code}",
             {"co2_kg_per_km": 0.1}),
            ("/settings/wards/Armley", "/settings/wards/{ward}",
             {"adult_population": 18000, "imd_decile": None})):
        response = client.put(BASE + path, json=body, headers=manager)
        assert response.status_code == 200, response.json
        _conforms(api, "put", BASE + template, response)
        checked.add(("put", BASE + template))
    assert response.json["wards"]["Armley"]["imd_decile"] is None
    assert response.json["impact"]["bus_journey"]["co2_kg_per_km"] == 0.1
    assert checked == {(method, path) for method, path, _ in OPERATIONS.values()}


@pytest.mark.parametrize(("query", "field"), [
    ("from=garbage", "from"), ("to=2026-02-30", "to"), ("from=2026-03-01&to=2026-01-01", "from"),
    ("from=1900-01-01", "from"), ("category=nope", "category"), ("ward=" + "x" * 101, "ward"),
    ("action_type=" + "y" * 65, "action_type"), ("ward=a%01b", "ward"),
])
def test_a_bad_filter_is_a_declared_422_naming_the_argument(
        client: FlaskClient, app: Flask, spec: dict[str, Any], query: str, field: str) -> None:
    api = schemathesis.openapi.from_dict(spec)
    analyst = bearer(staff_token(client, app, "analyst"))
    for path, template in ((f"{BASE}/actions?{query}", BASE + "/{name}"),
                           (f"{BASE}/actions.csv?{query}", BASE + "/{name}.csv")):
        response = client.get(path, headers=analyst)
        assert response.status_code == 422, path
        assert list(response.json["errors"]) == [field], response.json
        (message,) = response.json["errors"][field]
        assert response.json["message"] == message  # the words as before, now by field
        assert response.json["reason"] == "invalid_request"
        _conforms(api, "get", template, response)
    if field in ("from", "to"):
        response = client.get(f"{BASE}/open-data.zip?{query}", headers=analyst)
        assert response.status_code == 422 and list(response.json["errors"]) == [field]
        _conforms(api, "get", BASE + "/open-data.zip", response)


def test_the_filters_accept_what_they_did(client: FlaskClient, app: Flask) -> None:
    """Declaring the filters refuses nothing new: blanks are defaults, text is trimmed,
    the first of a repeated argument counts, unknown arguments are ignored, and an
    unknown figure is a 404 whatever its filters."""
    analyst = bearer(staff_token(client, app, "analyst"))
    for query in ("from=&to=&category=&ward=", "category=%20travel%20", "junk=1",
                  "from=2025-01-01&from=garbage", "ward=%20Armley%20"):
        response = client.get(f"{BASE}/actions?{query}", headers=analyst)
        assert response.status_code == 200, (query, response.json)
    trimmed = client.get(f"{BASE}/actions?category=%20travel%20&ward=%20Armley%20",
                         headers=analyst).json["filters"]
    assert trimmed["category"] == "travel" and trimmed["ward"] == "Armley"
    assert client.get(f"{BASE}/nothing?from=garbage", headers=analyst).status_code == 404
    assert client.get(f"{BASE}/open-data/forecast.csv?from=garbage",
                      headers=analyst).status_code == 404
