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
from ..dashboard.filters import MAX_DAYS, FilterError
from ..dashboard.opendata import PUBLISHED, archive, default_filters, dictionary, tables
from ..dashboard.refresh import refresh_if_stale
from ..dashboard.spec import CHARTS
from ..dashboard.table import KINDS, SUPPRESSED
from ..extensions import Blueprint, db
from ..models import ActionType
from ..models.scheme import CATEGORIES
from ..reasons import Reason
from ..wards import ward_named
from .auth import BEARER, staff_required
from .common import audit

blp = Blueprint("dashboard", __name__, url_prefix="/v1/admin/dashboard",
                description="Council staff dashboard: aggregates only, small cells suppressed")

READ = ("analyst", "scheme_manager")
MANAGE = ("scheme_manager",)


# -- what is asked for and what comes back ----------------------------------------------
# The query schemas document the filters and hand them on as they came: every field is
# plain text, so nothing is refused here. Filters.from_args decides what a filter may
# be, and _filters() answers its refusal as a 422 keyed by the argument at fault.

def _date_doc(text: str) -> dict[str, Any]:
    return {"format": "date", "description": text}


class OpenDataQuery(Schema):
    date_from = fields.String(data_key="from", attribute="from", metadata=_date_doc(
        "The first day, YYYY-MM-DD, in the scheme's time zone. Without `from` and "
        "`to`: the last twelve whole months."))
    to = fields.String(metadata=_date_doc("The last day, YYYY-MM-DD (by default today)."))


class FigureQuery(OpenDataQuery):
    date_from = fields.String(data_key="from", attribute="from", metadata=_date_doc(
        "The first day, YYYY-MM-DD, in the scheme's time zone (by default 89 days before "
        f"`to`); not after `to`, and at most {MAX_DAYS} days before it."))
    ward = fields.String(metadata={"maxLength": 100, "description": "Only members of this "
                                   "ward (its name, as members' wards are kept)."})
    category = fields.String(metadata={"enum": list(CATEGORIES),
                                       "description": "Only actions of this category."})
    action_type = fields.String(metadata={"maxLength": 64, "description": "Only actions "
                                          "of this type (its code)."})


class DashboardFigureOut(Schema):
    name = fields.String()
    title = fields.String()
    title_cy = fields.String(metadata={"description": "The title in Welsh."})
    description = fields.String()
    chart = fields.String(metadata={"enum": list(CHARTS)})
    x = fields.String(metadata={"description": "The column along the x axis."})
    y = fields.List(fields.String(), metadata={"description": "The columns plotted."})


class DashboardFiguresOut(Schema):
    figures = fields.List(fields.Nested(DashboardFigureOut))
    min_cell = fields.Integer(metadata={"description": "Cells counting fewer members than "
                                                       "this are suppressed."})


class DashboardFiltersOut(Schema):
    date_from = fields.String(data_key="from", attribute="from", metadata={"format": "date"})
    to = fields.String(metadata={"format": "date"})
    ward = fields.String(allow_none=True)
    category = fields.String(allow_none=True)
    action_type = fields.String(allow_none=True)


class DashboardColumnOut(Schema):
    key = fields.String(metadata={"description": "The row's key for this column."})
    label = fields.String()
    label_cy = fields.String(metadata={"description": "The label in Welsh."})
    kind = fields.String(metadata={"enum": list(KINDS)})


class DashboardTableOut(Schema):
    name = fields.String()
    title = fields.String()
    filters = fields.Nested(DashboardFiltersOut, metadata={
        "description": "The filters the figure was computed for, defaults filled in."})
    columns = fields.List(fields.Nested(DashboardColumnOut))
    rows = fields.List(fields.Dict(keys=fields.String()), metadata={"description": (
        "One object per row: each column's key with its value (text, number, or a date "
        "as YYYY-MM-DD), null where suppressed; a row with suppressed cells also has "
        f"`_suppressed`, the keys suppressed (the CSV says \"{SUPPRESSED}\" there).")})
    notes = fields.List(fields.String())


class ImpactFactorsOut(Schema):
    co2_kg = fields.Float()
    co2_kg_per_km = fields.Float()
    car_km = fields.Float()
    car_km_per_km = fields.Float()


class WardFactsOut(Schema):
    adult_population = fields.Integer(allow_none=True)
    imd_decile = fields.Integer(allow_none=True)
    illustrative = fields.Boolean()


class DashboardSettingsOut(Schema):
    pence_per_point = fields.Float(metadata={"description": "What one point is worth to "
                                                            "the council, in pence."})
    impact = fields.Dict(keys=fields.String(), values=fields.Nested(ImpactFactorsOut),
                         metadata={"description": "By action type code."})
    wards = fields.Dict(keys=fields.String(), values=fields.Nested(WardFactsOut),
                        metadata={"description": "By ward name."})


FIGURE_DOC = {"200": {
    "description": "JSON; CSV when Accept asks for text/csv and not application/json.",
    "content": {"application/json": {"schema": DashboardTableOut},
                "text/csv": {"schema": {"type": "string"}}}}}


def _filters(args: Any) -> Filters:
    try:
        return Filters.from_args(args)
    except ValueError as error:
        field = error.field if isinstance(error, FilterError) else "_schema"
        abort(422, message=str(error), errors={field: [str(error)]})


def _fresh() -> None:
    """Without a cron (the embedded default) a request brings the rollups up to date,
    at most once every DASHBOARD_REFRESH_SECONDS (0: never on a request)."""
    seconds = current_app.config["DASHBOARD_REFRESH_SECONDS"]
    if current_app.config.get("REDIS_URL") or seconds <= 0:  # the cron job keeps them
        return
    refresh_if_stale(db.session, seconds)


def _wants_csv() -> bool:
    accept = request.accept_mimetypes
    best = accept.best_match(["application/json", "text/csv"])
    # JSON unless CSV is preferred: asked for, and JSON not equally welcome (q=0 is
    # "not acceptable", not "mentioned").
    return best == "text/csv" and accept.quality("application/json") < accept.quality("text/csv")


def _csv(body: str, filename: str) -> Response:
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _figure(name: str, args: dict[str, Any], as_csv: bool) -> Any:
    if name not in FIGURES:
        abort(404, message=f"No figure {name!r}; GET /v1/admin/dashboard lists them.")
    filters = _filters(args)
    _fresh()
    table = compute(name, filters)
    if as_csv:
        return _csv(table.to_csv(), f"{name}-{filters.date_from}-{filters.date_to}.csv")
    return table.to_json()


@blp.route("")
@blp.doc(security=BEARER)
@staff_required(*READ)
@blp.response(200, DashboardFiguresOut)
def figures():
    """Every figure: name, titles (English, Welsh), description, chart, axes."""
    return {"figures": [spec.to_json() for spec in FIGURES.values()],
            "min_cell": min_cell()}


@blp.route("/<string:name>")
@blp.doc(security=BEARER, responses=FIGURE_DOC)
@staff_required(*READ)
@blp.arguments(FigureQuery, location="query")
@blp.response(200, DashboardTableOut)
def figure(args, name: str):
    """One figure for ?from=&to=&ward=&category=&action_type= (JSON or CSV)."""
    return _figure(name, args, _wants_csv())


@blp.route("/<string:name>.csv")
@blp.doc(security=BEARER)
@staff_required(*READ)
@blp.arguments(FigureQuery, location="query")
@blp.response(200, content_type="text/csv",
              description="A header row of labels, then the rows.")
def figure_csv(args, name: str):
    """One figure as CSV; suppressed cells read "suppressed"."""
    return _figure(name, args, True)


def _open_filters(args: dict[str, Any]) -> Filters:
    # Given from or to, every filter of the query applies, as it always has.
    return _filters(request.args) if args.get("from") or args.get("to") else \
        default_filters()


@blp.route("/open-data.zip")
@blp.doc(security=BEARER)
@staff_required(*READ)
@blp.arguments(OpenDataQuery, location="query")
@blp.response(200, content_type="application/zip", description="A CSV file per published "
              "figure, dictionary.csv and README.txt.")
def open_data_zip(args):
    """The published figures (last 12 months unless from/to) as CSV files with a data
    dictionary, in one zip."""
    filters = _open_filters(args)
    _fresh()
    body = archive(filters, min_cell())
    return Response(body, mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="open-data-{filters.date_to}.zip"'})


@blp.route("/open-data/dictionary.csv")
@blp.doc(security=BEARER)
@staff_required(*READ)
@blp.arguments(OpenDataQuery, location="query")
@blp.response(200, content_type="text/csv",
              description="file, column, meaning, meaning_cy, unit, suppression")
def open_data_dictionary(args):
    """What every column of the open-data files means, its unit and suppression rule."""
    filters = _open_filters(args)
    _fresh()
    return _csv(dictionary(tables(filters), min_cell()), "dictionary.csv")


@blp.route("/open-data/<string:name>.csv")
@blp.doc(security=BEARER)
@staff_required(*READ)
@blp.arguments(OpenDataQuery, location="query")
@blp.response(200, content_type="text/csv",
              description="A header row of labels, then the rows.")
def open_data_file(args, name: str):
    """One published figure as an open-data CSV."""
    if name not in PUBLISHED:
        abort(404, message=f"{name!r} is not published; published: {', '.join(PUBLISHED)}.")
    filters = _open_filters(args)
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
@blp.response(200, DashboardSettingsOut)
def get_settings():
    """Value per point, impact factors per action type, ward population and decile."""
    return dashboard_settings.all_settings(db.session)


@blp.route("/settings/value-per-point", methods=["PUT"])
@blp.doc(security=BEARER)
@staff_required(*MANAGE)
@blp.arguments(PointValueIn)
@blp.response(200, DashboardSettingsOut)
def put_point_value(args):
    """What one point is worth to the council, in pence (audited)."""
    return _save(dashboard_settings.VALUE_PER_POINT, args, "dashboard_setting",
                 "value_per_point")


@blp.route("/settings/impact/<string:type_code>", methods=["PUT"])
@blp.doc(security=BEARER)
@staff_required(*MANAGE)
@blp.arguments(ImpactIn)
@blp.response(200, DashboardSettingsOut)
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
@blp.response(200, DashboardSettingsOut)
def put_ward(args, ward: str):
    """A ward's adult population and Index of Multiple Deprivation decile (audited). The
    ward is one of GET /v1/wards (its code or name); the figures are kept under its name,
    as members' wards are."""
    found = ward_named(db.session, ward) if 0 < len(ward) <= 100 else None
    if found is None:
        abort(404, reason=Reason.UNKNOWN_WARD, message="Not one of the scheme's wards.")
    return _save(f"ward:{found.name}", args, "dashboard_setting", f"ward:{found.name}")
