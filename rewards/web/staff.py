"""The council staff dashboard: server-rendered pages an analyst opens every morning.

Every figure is computed by `rewards.dashboard.compute`, the call behind
/v1/admin/dashboard, so the page, the API and the CSV download carry the same numbers.
Each chart has its data table (the accessible alternative); suppressed cells are said
in words. English and Welsh (?lang=cy, remembered for the session, else the browser's
Accept-Language)."""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import select

from .. import languages
from ..dashboard.filters import today as scheme_today
from ..extensions import db
from ..i18n import staff_language, staff_languages, staff_text
from ..models import ActionType, Member
from ..models.scheme import CATEGORIES
from ..models.ward import Ward
from .csrf import cookie_lost_over_http, csrf_ok, csrf_token
from .staff_auth import (
    current_staff,
    dashboard_login_required,
    log_in,
    log_out,
    safe_next,
)
from .staff_figures import GROUPS, REPORT_FIGURES, FigureView, figure_view, headlines

# Own static route (/staff/static/...): the app's /static route would shadow the web one.
bp = Blueprint("staff_pages", __name__, url_prefix="/staff", template_folder="templates",
               static_folder="static", static_url_path="/static")

FILTER_ARGS = ("from", "to", "ward", "category", "action_type")
MONTH = re.compile(r"^(\d{4})-(\d{2})$")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _dashboard() -> Any:
    from .. import dashboard  # imported late: the pages' module loads without the figures

    return dashboard


def _fresh() -> None:
    """As the API does: without a cron (no Redis, the embedded default) a request brings
    the rollups up to date, at most once every DASHBOARD_REFRESH_SECONDS."""
    if current_app.config.get("REDIS_URL"):
        return
    from ..dashboard.refresh import refresh_if_stale

    refresh_if_stale(db.session, current_app.config["DASHBOARD_REFRESH_SECONDS"])


def min_cell() -> int:
    return int(current_app.config.get("DASHBOARD_MIN_CELL", 10))


def t(key: str, **values: Any) -> str:
    return staff_text(key, g.get("lang", "en"), **values)


@bp.before_request
def _choose_language() -> None:
    requested = request.args.get("lang")
    offered = staff_languages(current_app.config.get("SCHEME_LANGUAGES", ("en", "cy")))
    g.lang = staff_language(requested, session.get("lang"),
                            request.headers.get("Accept-Language"), offered)
    g.staff_languages = offered
    if requested in offered:
        session["lang"] = requested


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # as every answer (docs/security.md)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Content-Language"] = g.get("lang", "en")
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response


def _switch_language_url(other: str | None = None) -> str:
    """This page in language `other` (by default the first one it is not in)."""
    if other is None:
        other = next((code for code in g.get("staff_languages", ("en", "cy"))
                      if code != g.get("lang")), "en")
    # Only the arguments the pages read: anything else could clash with url_for's own.
    args = {k: request.args[k] for k in (*FILTER_ARGS, "month", "next") if k in request.args}
    return url_for(request.endpoint or "staff_pages.overview", **(request.view_args or {}),
                   **args, lang=other)


def _other_languages() -> list[dict[str, str]]:
    """The languages this page can also be read in, each named in itself."""
    return [{"code": code, "name": languages.own_name(code), "dir": languages.direction(code)}
            for code in g.get("staff_languages", ("en", "cy")) if code != g.get("lang")]


@bp.context_processor
def _inject() -> dict[str, Any]:
    return {"t": t, "lang": g.get("lang", "en"), "staff_csrf": csrf_token,
            "dir": languages.direction(g.get("lang", "en")),
            "switch_language_url": _switch_language_url, "other_languages": _other_languages,
            "groups": list(GROUPS),
            "staff_user": g.get("staff_user"), "min_cell": min_cell()}


def _error(status: int, message: str) -> tuple[str, int]:
    return render_template("staff/error.html", message=message, status=status), status


@bp.errorhandler(404)
def _not_found(_: Exception) -> tuple[str, int]:
    return _error(404, t("not_found"))


# -- logging in -------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    status = 200
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET" and current_staff() is not None:
        return redirect(next_url or url_for("staff_pages.overview"))
    if request.method == "POST":
        if not csrf_ok():
            error = t("needs_https") if cookie_lost_over_http() else t("form_expired")
            status = 400
        else:
            result = log_in(request.form.get("email", ""), request.form.get("password", ""),
                            request.form.get("code", "").strip() or None)
            if result.user is not None:
                return redirect(next_url or url_for("staff_pages.overview"))
            error = {"role": t("login_role"), "enrol": t("login_enrol")}.get(
                result.problem or "", t("login_failed"))
            status = {"role": 403, "enrol": 403, "locked": 429}.get(result.problem or "", 401)
            if result.retry_after:
                return (render_template("staff/login.html", error=error, next_url=next_url),
                        status, {"Retry-After": str(result.retry_after)})
    return render_template("staff/login.html", error=error, next_url=next_url), status


@bp.route("/logout", methods=["POST"])
def logout():
    if csrf_ok():
        log_out()
    return redirect(url_for("staff_pages.login"))


# -- figures ----------------------------------------------------------------------------------

def _filter_args() -> dict[str, str]:
    return {key: request.args[key].strip() for key in FILTER_ARGS
            if request.args.get(key, "").strip()}


def _filters() -> tuple[Any | None, str | None]:
    try:
        return _dashboard().Filters.from_args(_filter_args()), None
    except ValueError as problem:
        return None, str(problem)


def _figure(name: str, filters: Any) -> FigureView | None:
    dashboard = _dashboard()
    spec = dashboard.FIGURES.get(name)
    if spec is None:
        return None
    table = dashboard.compute(name, filters)
    return figure_view(table, spec, g.lang, t("suppressed", n=min_cell()))


def _choices() -> dict[str, list[tuple[str, str]]]:
    # The council's list of wards: the wards members gave would tell which have anyone.
    wards = list(db.session.scalars(select(Ward.name).order_by(Ward.name))) or list(
        db.session.scalars(select(Member.ward).where(Member.ward.is_not(None)).distinct()
                           .order_by(Member.ward)))
    types = db.session.execute(select(ActionType.code, ActionType.name).order_by(ActionType.name))
    return {"ward": [(w, w) for w in wards if w],
            "category": [(c, c) for c in CATEGORIES],
            "action_type": [(code, name) for code, name in types]}


def _filter_form(filters: Any | None) -> dict[str, str]:
    """What the filter form shows: the filters in force, or what was typed if they are bad."""
    if filters is None:
        return {key: request.args.get(key, "") for key in FILTER_ARGS}
    return {"from": filters.date_from.isoformat(), "to": filters.date_to.isoformat(),
            "ward": filters.ward or "", "category": filters.category or "",
            "action_type": filters.action_type or ""}


def _render_group(group: str, names: tuple[str, ...], template: str = "staff/group.html",
                  **extra: Any) -> tuple[str, int]:
    filters, problem = _filters()
    figures = []
    if filters is not None:
        _fresh()
        figures = [view for view in (_figure(name, filters) for name in names) if view]
    form = _filter_form(filters)
    return render_template(
        template, group=group, figures=figures, problem=problem, form=form,
        choices=_choices(), query={k: v for k, v in form.items() if v}, **extra,
    ), (400 if problem else 200)


@bp.route("/")
@dashboard_login_required
def overview():
    filters, problem = _filters()
    views: dict[str, FigureView] = {}
    if filters is not None:
        _fresh()
        for name in ("active", "actions", "money"):
            view = _figure(name, filters)
            if view is not None:
                views[name] = view
    found = headlines(views)
    form = _filter_form(filters)
    suppressed = sum(view.suppressed_count for view in views.values())
    return render_template(
        "staff/overview.html", group="overview", figures=list(views.values()),
        headlines=found, suppressed=suppressed, problem=problem, form=form,
        choices=_choices(), query={k: v for k, v in form.items() if v},
    ), (400 if problem else 200)


@bp.route("/<group>")
@dashboard_login_required
def group_page(group: str):
    if group not in GROUPS:
        abort(404)
    return _render_group(group, GROUPS[group])


@bp.route("/figures/<name>.csv")
@dashboard_login_required
def figure_csv(name: str):
    dashboard = _dashboard()
    if name not in dashboard.FIGURES:
        abort(404)
    filters, problem = _filters()
    if filters is None:
        return _error(400, f"{t('bad_filters')}: {problem}")
    _fresh()
    # The page's language: a Welsh page downloads Welsh headers and row labels.
    body = dashboard.compute(name, filters).to_csv(g.lang)
    stamp = f"{filters.date_from.isoformat()}_{filters.date_to.isoformat()}"
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}_{stamp}.csv"'})


def _month(text: str | None) -> tuple[date, date] | None:
    if not text:
        first_this = scheme_today().replace(day=1)  # the scheme's month, not the server's
        last = first_this - timedelta(days=1)
        return last.replace(day=1), last
    match = MONTH.match(text)
    if not match:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    if not (1 <= month <= 12 and 2000 <= year <= 2100):
        return None
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


@bp.route("/report")
@dashboard_login_required
def report():
    span = _month(request.args.get("month"))
    if span is None:
        return _error(400, t("bad_month"))
    start, end = span
    dashboard = _dashboard()
    filters = dashboard.Filters(date_from=start, date_to=end)
    _fresh()
    figures = [view for view in (_figure(name, filters) for name in REPORT_FIGURES) if view]
    found = headlines({view.name: view for view in figures})
    return render_template("staff/report.html", group="report", figures=figures,
                           headlines=found,
                           suppressed=sum(view.suppressed_count for view in figures),
                           month=start.strftime("%Y-%m"), start=start, end=end,
                           query={"from": start.isoformat(), "to": end.isoformat()})


@bp.route("/open-data.zip")
@dashboard_login_required
def open_data():
    """The open-data export: the published figures' suppressed aggregates as CSV files
    with a data dictionary, in one zip (the last 12 months unless from/to are given)."""
    from ..dashboard.opendata import archive, default_filters

    filters, problem = _filters() if request.args.get("from") or request.args.get("to") \
        else (default_filters(), None)
    if filters is None:
        return _error(400, f"{t('bad_filters')}: {problem}")
    _fresh()
    return Response(archive(filters, min_cell()), mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="open-data-{filters.date_to}.zip"'})


@bp.route("/open-data/dictionary.csv")
@dashboard_login_required
def open_data_dictionary():
    from ..dashboard.opendata import default_filters, dictionary, tables

    _fresh()
    return Response(dictionary(tables(default_filters()), min_cell()), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="dictionary.csv"'})
