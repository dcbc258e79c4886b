"""Council staff dashboard: aggregate figures as JSON or CSV, the open-data export, and
the settings behind the figures (value per point, impact factors, ward facts)."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from ..dashboard import FIGURES, Filters, compute, min_cell
from ..dashboard import settings as dashboard_settings
from ..dashboard.opendata import PUBLISHED, archive, default_filters, dictionary, tables
from ..dashboard.refresh import refresh_if_stale
from ..extensions import Blueprint, db
from ..models import ActionType
from ..reasons import Reason
from ..wards import ward_named
from .auth import BEARER, staff_required
from .common import audit

blp = Blueprint("dashboard", __name__, url_prefix="/v1/admin/dashboard",
                description="Council staff dashboard: aggregates only, small cells suppressed")

READ = ("analyst", "scheme_manager")
MANAGE = ("scheme_manager",)
CSV_DOC = {"200": {"description": "JSON; CSV with Accept: text/csv or the .csv path.",
                   "content": {"application/json": {"schema": {"type": "object"}},
                               "text/csv": {"schema": {"type": "string"}}}}}


def _filters() -> Filters:
    try:
        return Filters.from_args(request.args)
    except ValueError as error:
        abort(422, message=str(error))


def _fresh() -> None:
    """Without a cron (the embedded default) a request brings the rollups up to date,
    at most once every DASHBOARD_REFRESH_SECONDS (0: never on a request)."""
    seconds = current_app.config["DASHBOARD_REFRESH_SECONDS"]
    if current_app.config.get("REDIS_URL") or seconds <= 0:  # the cron job keeps them
        return
    refresh_if_stale(db.session, seconds)


def _wants_csv() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return best == "text/csv" and "application/json" not in request.accept_mimetypes.values()


def _csv(body: str, filename: str) -> Response:
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _figure(name: str, as_csv: bool) -> Any:
    if name not in FIGURES:
        abort(404, message=f"No figure {name!r}; GET /v1/admin/dashboard lists them.")
    filters = _filters()
    _fresh()
    table = compute(name, filters)
    if as_csv:
        return _csv(table.to_csv(), f"{name}-{filters.date_from}-{filters.date_to}.csv")
    return table.to_json()


@blp.route("")
@blp.doc(security=BEARER)
@staff_required(*READ)
def figures():
    """Every figure: name, titles (English, Welsh), description, chart, axes."""
    return {"figures": [spec.to_json() for spec in FIGURES.values()],
            "min_cell": min_cell()}


@blp.route("/<string:name>")
@blp.doc(security=BEARER, responses=CSV_DOC)
@staff_required(*READ)
def figure(name: str):
    """One figure for ?from=&to=&ward=&category=&action_type= (JSON or CSV)."""
    return _figure(name, _wants_csv())


@blp.route("/<string:name>.csv")
@blp.doc(security=BEARER, responses=CSV_DOC)
@staff_required(*READ)
def figure_csv(name: str):
    """One figure as CSV; suppressed cells read "suppressed"."""
    return _figure(name, True)


def _open_filters() -> Filters:
    return _filters() if request.args.get("from") or request.args.get("to") else \
        default_filters()


@blp.route("/open-data.zip")
@blp.doc(security=BEARER)
@staff_required(*READ)
def open_data_zip():
    """The published figures (last 12 months unless from/to) as CSV files with a data
    dictionary, in one zip."""
    filters = _open_filters()
    _fresh()
    body = archive(filters, min_cell())
    return Response(body, mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="open-data-{filters.date_to}.zip"'})


@blp.route("/open-data/dictionary.csv")
@blp.doc(security=BEARER)
@staff_required(*READ)
def open_data_dictionary():
    """What every column of the open-data files means, its unit and suppression rule."""
    filters = _open_filters()
    _fresh()
    return _csv(dictionary(tables(filters), min_cell()), "dictionary.csv")


@blp.route("/open-data/<string:name>.csv")
@blp.doc(security=BEARER)
@staff_required(*READ)
def open_data_file(name: str):
    """One published figure as an open-data CSV."""
    if name not in PUBLISHED:
        abort(404, message=f"{name!r} is not published; published: {', '.join(PUBLISHED)}.")
    filters = _open_filters()
    _fresh()
    return _csv(compute(name, filters).to_csv(), f"{name}.csv")


# -- settings -----------------------------------------------------------------------

class PointValueIn(Schema):
    pence = fields.Float(required=True, validate=validate.Range(min=0, max=10_000))


class ImpactIn(Schema):
    co2_kg = fields.Float(load_default=0, validate=validate.Range(min=0, max=100_000))
    co2_kg_per_km = fields.Float(load_default=0, validate=validate.Range(min=0, max=100))
    car_km = fields.Float(load_default=0, validate=validate.Range(min=0, max=100_000))
    car_km_per_km = fields.Float(load_default=0, validate=validate.Range(min=0, max=10))


class WardIn(Schema):
    adult_population = fields.Integer(required=True,
                                      validate=validate.Range(min=1, max=10_000_000))
    imd_decile = fields.Integer(allow_none=True, load_default=None,
                                validate=validate.Range(min=1, max=10))
    illustrative = fields.Boolean(load_default=False)


def _save(key: str, value: dict[str, Any], what: str, target: str) -> dict[str, Any]:
    change = dashboard_settings.put(db.session, key, value, g.caller.id)
    audit("update", what, target, **change)
    db.session.commit()
    return dashboard_settings.all_settings(db.session)


@blp.route("/settings")
@blp.doc(security=BEARER)
@staff_required(*READ)
def get_settings():
    """Value per point, impact factors per action type, ward population and decile."""
    return dashboard_settings.all_settings(db.session)


@blp.route("/settings/value-per-point", methods=["PUT"])
@blp.doc(security=BEARER)
@staff_required(*MANAGE)
@blp.arguments(PointValueIn)
def put_point_value(args):
    """What one point is worth to the council, in pence (audited)."""
    return _save(dashboard_settings.VALUE_PER_POINT, args, "dashboard_setting",
                 "value_per_point")


@blp.route("/settings/impact/<string:type_code>", methods=["PUT"])
@blp.doc(security=BEARER)
@staff_required(*MANAGE)
@blp.arguments(ImpactIn)
def put_impact(args, type_code: str):
    """Impact factors for an action type: kg CO2 and car km per action and per km
    reported in attributes.distance_km (audited)."""
    if db.session.scalar(select(ActionType.id).where(ActionType.code == type_code)) is None:
        abort(404, message=f"No action type {type_code!r}.")
    return _save(f"impact:{type_code}", args, "dashboard_setting", f"impact:{type_code}")


@blp.route("/settings/wards/<string:ward>", methods=["PUT"])
@blp.doc(security=BEARER)
@staff_required(*MANAGE)
@blp.arguments(WardIn)
def put_ward(args, ward: str):
    """A ward's adult population and Index of Multiple Deprivation decile (audited). The
    ward is one of GET /v1/wards (its code or name); the figures are kept under its name,
    as members' wards are."""
    found = ward_named(db.session, ward) if 0 < len(ward) <= 100 else None
    if found is None:
        abort(404, reason=Reason.UNKNOWN_WARD, message="Not one of the scheme's wards.")
    return _save(f"ward:{found.name}", args, "dashboard_setting", f"ward:{found.name}")
