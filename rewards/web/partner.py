"""The partner's redemption page: a till without an integration types or scans a
code and sees, in large words, whether to hand over the reward."""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.security import check_password_hash

from ..extensions import db
from ..models import Partner, StaffUser
from ..vouchers import find_voucher, redeem, voucher_state

bp = Blueprint("partner_pages", __name__, url_prefix="/partner", template_folder="templates")

# What the till sees for each state: headline, colour class, whether to hand over.
VERDICTS = {
    "issued": ("VALID", "ok", "Check the details, then press Redeem."),
    "redeemed": ("ALREADY USED", "bad", "Do not hand over the reward."),
    "expired": ("EXPIRED", "bad", "Do not hand over the reward."),
    "cancelled": ("CANCELLED", "bad", "Do not hand over the reward."),
    "unknown": ("NOT FOUND", "bad", "No such voucher for this business. Check the code."),
}


def _csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    given = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(given, expected)


def _current_user() -> tuple[StaffUser, Partner] | None:
    user_id = session.get("partner_user_id")
    if not user_id:
        return None
    user = db.session.get(StaffUser, uuid.UUID(user_id))
    if user is None or not user.active or user.role != "partner" or user.partner_id is None:
        return None
    partner = db.session.get(Partner, user.partner_id)
    if partner is None or not partner.active:
        return None
    return user, partner


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        found = _current_user()
        if found is None:
            session.pop("partner_user_id", None)
            return redirect(url_for("partner_pages.login"))
        return view(found[1], *args, **kwargs)

    return wrapper


@bp.app_context_processor
def _inject_csrf() -> dict[str, Any]:
    return {"csrf_token": _csrf_token}


@bp.route("/")
def home():
    return redirect(url_for("partner_pages.redeem_page"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        if not _csrf_ok():
            return render_template("partner_login.html", error="The form expired; try again."), 400
        email = request.form.get("email", "").strip().lower()
        user = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
        password = request.form.get("password", "")
        if (user is not None and user.active and user.role == "partner"
                and check_password_hash(user.password_hash, password)):
            session.clear()
            session["partner_user_id"] = str(user.id)
            return redirect(url_for("partner_pages.redeem_page"))
        error = "Email or password is not right, or the account is not a partner's."
    return render_template("partner_login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    if not _csrf_ok():
        return redirect(url_for("partner_pages.redeem_page"))
    session.clear()
    return redirect(url_for("partner_pages.login"))


def _verdict(partner: Partner, code: str) -> dict[str, Any]:
    reward = find_voucher(db.session, partner.id, code)
    if reward is None or reward.status in ("pending", "failed"):
        state = "unknown"
    else:
        state = voucher_state(reward)
    headline, tone, advice = VERDICTS.get(state, VERDICTS["unknown"])
    return {"state": state, "headline": headline, "tone": tone, "advice": advice,
            "reward": reward if state != "unknown" else None, "code": code}


@bp.route("/redeem", methods=["GET"])
@login_required
def redeem_page(partner: Partner):
    code = request.args.get("code", "").strip()
    result = _verdict(partner, code) if code else None
    return render_template("partner_redeem.html", partner=partner, result=result)


@bp.route("/redeem", methods=["POST"])
@login_required
def redeem_submit(partner: Partner):
    if not _csrf_ok():
        return render_template("partner_redeem.html", partner=partner, result=None,
                               error="The form expired; try again."), 400
    code = request.form.get("code", "").strip()
    if not code:
        return render_template("partner_redeem.html", partner=partner, result=None,
                               error="Type or scan a voucher code."), 422
    outcome = redeem(db.session, partner.id, code)
    if outcome.status == 201:
        result = {"state": "done", "headline": "REDEEMED", "tone": "ok",
                  "advice": "Hand over the reward.", "reward": outcome.reward, "code": code}
        return render_template("partner_redeem.html", partner=partner, result=result), 201
    result = _verdict(partner, code)
    return render_template("partner_redeem.html", partner=partner, result=result), outcome.status
