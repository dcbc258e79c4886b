"""Server-rendered pages (no build step)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, render_template
from sqlalchemy import func, select

from ..extensions import db
from ..models import Offer, Partner

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


@bp.app_template_filter("local_time")
def local_time(moment: datetime | None, fmt: str = "%d %B %Y %H:%M %Z") -> str:
    """A stored (UTC) time as the scheme's people read it: in SCHEME_TIMEZONE, with the
    zone's abbreviation (GMT or BST for Europe/London) unless `fmt` leaves it out."""
    if moment is None:
        return ""
    zone = ZoneInfo(current_app.config["SCHEME_TIMEZONE"])
    return moment.astimezone(zone).strftime(fmt)


@bp.route("/")
def index():
    # Only what the public catalogue shows anyway. Exact, live counts of members,
    # actions or vouchers, to anyone and with no small-cell rule, would tell a watcher
    # when one resident joined or acted (the staff dashboard shows such figures, to
    # staff, suppressed); and counting the actions table on every anonymous request
    # is a cheap way to load the database.
    counts = {
        "partners": db.session.scalar(
            select(func.count(Partner.id)).where(Partner.active.is_(True))) or 0,
        "offers": db.session.scalar(
            select(func.count(Offer.id)).where(Offer.status == "live")) or 0,
    }
    return render_template("index.html", scheme=current_app.config["SCHEME_NAME"],
                           counts=counts)
