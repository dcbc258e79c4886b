"""Server-rendered pages (no build step)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from sqlalchemy import func, select

from ..extensions import db
from ..models import Action, Member, Offer, Partner, Reward

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


@bp.route("/")
def index():
    counts = {
        "members": db.session.scalar(select(func.count(Member.id))) or 0,
        "actions": db.session.scalar(select(func.count(Action.id))) or 0,
        "partners": db.session.scalar(select(func.count(Partner.id))) or 0,
        "offers": db.session.scalar(select(func.count(Offer.id))) or 0,
        "vouchers": db.session.scalar(
            select(func.count(Reward.id)).where(Reward.status.in_(("issued", "redeemed")))
        ) or 0,
    }
    return render_template("index.html", scheme=current_app.config["SCHEME_NAME"],
                           counts=counts)
