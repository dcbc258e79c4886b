"""The partner's redemption page: a till without an integration types or scans a
code and sees, in large words, whether to hand over the reward. A member without a
phone gives their card number and PIN instead; a mistaken redemption can be undone
within ten minutes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..i18n import STAFF_TEXT
from ..members import PinRefused, check_card_pin
from ..models import Offer, Partner, Redemption, Reward, StaffUser, utcnow
from ..models.login import LoginSession
from ..sessions import live, revoke, start_session
from ..staff import LoginRefused, authenticate
from ..vouchers import (
    UNDO_WINDOW,
    ClaimRefused,
    find_voucher,
    redeem,
    redeem_by_card,
    undo_redemption,
    voucher_state,
)
from .csrf import cookie_lost_over_http, csrf_ok, csrf_token

bp = Blueprint("partner_pages", __name__, url_prefix="/partner", template_folder="templates")

# What the till sees for each state: headline, colour class, whether to hand over.
VERDICTS = {
    "issued": ("VALID", "ok", "Check the details, then press Redeem."),
    "redeemed": ("ALREADY USED", "bad", "Do not hand over the reward."),
    "expired": ("EXPIRED", "bad", "Do not hand over the reward."),
    "cancelled": ("CANCELLED", "bad", "Do not hand over the reward."),
    "unknown": ("NOT FOUND", "bad", "No such voucher for this business. Check the code."),
}


def _current_user() -> tuple[StaffUser, Partner] | None:
    # The cookie holds only the id of a server-side session: logging out (or a password
    # change, or "sign out everywhere") revokes the row and the cookie is worth nothing.
    try:
        login_id = uuid.UUID(session.get("partner_login", ""))
    except ValueError:
        return None
    row = db.session.execute(
        select(StaffUser, LoginSession).join(LoginSession,
                                             LoginSession.staff_user_id == StaffUser.id)
        .where(LoginSession.id == login_id, LoginSession.kind == "partner_page")).first()
    if row is None or not live(row.LoginSession):
        return None
    user = row.StaffUser
    if not user.active or user.role != "partner" or user.partner_id is None:
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
            session.pop("partner_login", None)
            return redirect(url_for("partner_pages.login"))
        g.partner_user_id = found[0].id
        return view(found[1], *args, **kwargs)

    return wrapper


@bp.after_request
def _not_kept(response: Response) -> Response:
    # The pages answer a logged-in till by its cookie, not a header the security
    # middleware sees as a credential: what they show (vouchers checked, redemptions,
    # the form's CSRF token) must not stay in a browser's or a proxy's cache on a
    # shared till, to come back with the Back button after logging out.
    response.headers.setdefault("Cache-Control", "no-store")
    response.vary.add("Cookie")
    return response


@bp.app_context_processor
def _inject_csrf() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


@bp.route("/")
def home():
    return redirect(url_for("partner_pages.redeem_page"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        if not csrf_ok():
            error = STAFF_TEXT["needs_https" if cookie_lost_over_http() else "form_expired"][0]
            return render_template("partner_login.html", error=error), 400
        try:
            user = authenticate(db.session, request.form.get("email", ""),
                                request.form.get("password", ""))
        except LoginRefused as refused:
            if refused.retry_after:
                return (render_template("partner_login.html", error=refused.message), 429,
                        {"Retry-After": str(refused.retry_after)})
            user = None
        if user is not None and user.role == "partner" and user.partner_id is not None:
            login_row = start_session(db.session, "partner_page",
                                      current_app.config["PARTNER_SESSION_TTL"],
                                      staff_user_id=user.id)
            db.session.commit()
            session.clear()
            session["partner_login"] = str(login_row.id)
            return redirect(url_for("partner_pages.redeem_page"))
        error = "Email or password is not right, or the account is not a partner's."
    return render_template("partner_login.html", error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    if not csrf_ok():
        return redirect(url_for("partner_pages.redeem_page"))
    try:
        revoke(db.session, uuid.UUID(session.get("partner_login", "")), "logout")
        db.session.commit()
    except ValueError:
        pass  # no session to end
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


def _recent(partner: Partner) -> list[Redemption]:
    """This partner's redemptions still in their undo window, newest first."""
    return list(db.session.scalars(
        select(Redemption)
        .options(joinedload(Redemption.reward).joinedload(Reward.offer))
        .where(Redemption.partner_id == partner.id, Redemption.undone_at.is_(None),
               Redemption.created_at > utcnow() - UNDO_WINDOW)
        .order_by(Redemption.created_at.desc()).limit(10)
    ))


def _page(partner: Partner, result: dict[str, Any] | None = None, error: str | None = None,
          status: int = 200) -> tuple[str, int]:
    return render_template("partner_redeem.html", partner=partner, result=result, error=error,
                           recent=_recent(partner), undo_minutes=_undo_minutes()), status


def _undo_minutes() -> int:
    return int(UNDO_WINDOW.total_seconds() // 60)


def _user_id() -> uuid.UUID | None:
    return g.get("partner_user_id")


@bp.route("/redeem", methods=["GET"])
@login_required
def redeem_page(partner: Partner):
    # A voucher code never travels in a URL (access logs, browser history, Referer):
    # checking one is a POST to /partner/check; a ?code= here is ignored.
    return _page(partner)


@bp.route("/check", methods=["POST"])
@login_required
def check_submit(partner: Partner):
    if not csrf_ok():
        return _page(partner, error="The form expired; try again.", status=400)
    code = request.form.get("code", "").strip()
    if not code:
        return _page(partner, error="Type or scan a voucher code.", status=422)
    return _page(partner, _verdict(partner, code))


@bp.route("/redeem", methods=["POST"])
@login_required
def redeem_submit(partner: Partner):
    if not csrf_ok():
        return _page(partner, error="The form expired; try again.", status=400)
    code = request.form.get("code", "").strip()
    if not code:
        return _page(partner, error="Type or scan a voucher code.", status=422)
    outcome = redeem(db.session, partner.id, code, redeemed_by=_user_id())
    if outcome.status == 201:
        result = {"state": "done", "headline": "REDEEMED", "tone": "ok",
                  "advice": "Hand over the reward.", "code": code,
                  "reward": find_voucher(db.session, partner.id, code),
                  "receipt": outcome.receipt}
        return _page(partner, result, status=201)
    return _page(partner, _verdict(partner, code), status=outcome.status)


@bp.route("/redemptions/<uuid:redemption_id>/undo", methods=["POST"])
@login_required
def undo_submit(partner: Partner, redemption_id: uuid.UUID):
    if not csrf_ok():
        return _page(partner, error="The form expired; try again.", status=400)
    outcome = undo_redemption(db.session, partner.id, redemption_id, undone_by=_user_id())
    if outcome.status != 200:
        db.session.rollback()
        result = {"state": "refused", "headline": "NOT UNDONE", "tone": "bad",
                  "advice": outcome.message, "reward": None, "code": ""}
        return _page(partner, result, status=outcome.status)
    db.session.commit()
    assert outcome.reward is not None
    advice = ("The member's points have been returned." if outcome.reward.status == "cancelled"
              else "The voucher is valid again.")
    result = {"state": "undone", "headline": "UNDONE", "tone": "ok", "advice": advice,
              "reward": outcome.reward, "code": outcome.reward.code or ""}
    return _page(partner, result)


# -- card and PIN (members without a phone) ---------------------------------------------------

CARD_KINDS = (("travel_card", "Travel card"), ("leisure_card", "Leisure card"),
              ("library_card", "Library card"), ("resident_card", "Resident card"))


def _card_offers(partner: Partner) -> list[Offer]:
    now = utcnow()
    return list(db.session.scalars(
        select(Offer).where(
            Offer.partner_id == partner.id, Offer.status == "live",
            Offer.fulfilment == "internal",
            (Offer.starts_at.is_(None)) | (Offer.starts_at <= now),
            (Offer.ends_at.is_(None)) | (Offer.ends_at > now),
        ).order_by(Offer.cost_points, Offer.title)
    ))


def _card_page(partner: Partner, result: dict[str, Any] | None = None,
               error: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template("partner_card.html", partner=partner, result=result, error=error,
                           offers=_card_offers(partner), kinds=CARD_KINDS,
                           undo_minutes=_undo_minutes()), status


def _refused(message: str, headline: str, status: int) -> tuple[dict[str, Any], int]:
    return {"state": "refused", "headline": headline, "tone": "bad", "advice": message,
            "reward": None}, status


@bp.route("/card", methods=["GET"])
@login_required
def card_page(partner: Partner):
    return _card_page(partner)


@bp.route("/card", methods=["POST"])
@login_required
def card_submit(partner: Partner):
    if not csrf_ok():
        return _card_page(partner, error="The form expired; try again.", status=400)
    form = request.form
    kind, number, pin = form.get("kind", ""), form.get("number", "").strip(), form.get("pin", "")
    try:
        offer_id = uuid.UUID(form.get("offer_id", ""))
    except ValueError:
        return _card_page(partner, error="Choose the reward.", status=422)
    if kind not in dict(CARD_KINDS) or not number or not (pin.isascii() and pin.isdigit()):
        return _card_page(partner, error="Choose the card type, and type the card number and "
                                         "the member's PIN.", status=422)
    try:
        member = check_card_pin(db.session, kind, number, pin)
    except PinRefused as refused:
        db.session.commit()  # wrong tries are kept: five lock the card's PIN
        locked = refused.message.startswith("Too many")
        result, status = _refused(refused.message, "PIN LOCKED" if locked else "NOT RECOGNISED",
                                  403 if locked else 401)
        return _card_page(partner, result, status=status)
    db.session.commit()
    try:
        outcome = redeem_by_card(db.session, partner.id, member, offer_id,
                                 redeemed_by=_user_id())
    except ClaimRefused as refused:
        db.session.rollback()
        result, status = _refused(refused.message, "NOT REDEEMED", refused.status)
        return _card_page(partner, result, status=status)
    db.session.commit()
    result = {"state": "done", "headline": "REDEEMED", "tone": "ok",
              "advice": "Hand over the reward.", "reward": outcome.reward,
              "receipt": outcome.receipt}
    return _card_page(partner, result, status=201)
