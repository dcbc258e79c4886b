"""A printable sheet of an event's claim codes as QR codes (inline SVG, no scripts)."""

from __future__ import annotations

import uuid

import segno
from flask import Blueprint, abort, render_template, request
from markupsafe import Markup
from sqlalchemy import select

from ..actions.claims import display_code, sheet_token_opens
from ..extensions import db
from ..models.event import Event, EventCode
from ..security import read_token
from ..sessions import staff_for_token
from ..staff import needs_enrolment

bp = Blueprint("event_pages", __name__, url_prefix="/staff/events", template_folder="templates")

SHEET_ROLES = ("admin", "scheme_manager")


def _staff_may_see() -> bool:
    """A scheme manager's bearer token (for scripts); browsers use the signed link."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    payload = read_token(token.strip())
    if payload is None or payload.get("role") not in SHEET_ROLES:
        return False
    user = staff_for_token(db.session, payload)
    return user is not None and not needs_enrolment(user)


def _qr(code: str, scale: int) -> Markup:
    # segno writes the SVG from the code's characters alone (an unambiguous alphabet).
    return Markup(segno.make(code, error="m").svg_inline(scale=scale, border=2))


@bp.route("/<uuid:event_id>/sheet")
def sheet(event_id: uuid.UUID):
    token = request.args.get("token", "")
    if not (token and sheet_token_opens(db.session, token, event_id, SHEET_ROLES)) \
            and not _staff_may_see():
        abort(401, description="This sheet needs the signed link from the event "
                               "(GET /v1/admin/events/{id}: sheet_url) or a scheme "
                               "manager's bearer token.")
    event = db.session.get(Event, event_id)
    if event is None:
        abort(404, description="No such event.")
    codes = list(db.session.scalars(select(EventCode).where(EventCode.event_id == event.id)
                                    .order_by(EventCode.created_at, EventCode.code)))
    single = event.mode == "single_use"
    cards = [{"code": display_code(c.code), "qr": _qr(c.code, 4 if single else 10),
              "used": c.claimed_at is not None} for c in codes]
    page = render_template("event_sheet.html", event=event, cards=cards, single=single)
    return page, 200, {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the signed link must not leak onwards
        "X-Robots-Tag": "noindex",
        # No scripts, no framing (as every page: X-Frame-Options alone is the older
        # browsers' header), no <base> or form to send the codes anywhere.
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "frame-ancestors 'none'; base-uri 'none'; "
                                   "form-action 'none'",
    }
