"""The resident's own account: profile, cards, points, actions, rewards."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from functools import cache
from typing import Any

import segno
from flask import Response, current_app, g, has_request_context, request, url_for
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import Select, bindparam, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from ..erasure import erase_member
from ..extensions import Blueprint, db
from ..i18n import localise, preferences
from ..ledger import balance_expiring
from ..linking import LinkRefused, link_proven_card
from ..models import (
    Account,
    Action,
    ActionType,
    Award,
    Identifier,
    Posting,
    PostingLine,
    Reward,
    utcnow,
)
from ..models.action import ACTION_STATUSES
from ..models.ledger import POSTING_KINDS
from ..models.partner import FULFILMENTS
from ..models.reward import REWARD_STATUSES
from ..reasons import Reason
from ..vouchers import Claimed, ClaimRefused, claim_offer, voucher_state
from ..wards import ward_for_postcode, ward_named
from .auth import BEARER, current_member, current_resident, member_required, resident_read
from .catalogue import PartnerBrief
from .common import idempotent, keyset_page, paginate, reads_only
from .contract import IDEMPOTENCY_KEY
from .fastdump import json_answer, json_body
from .language import check_scheme_language, reason_of, rule_name_of, type_name_of
from .me_pages import actions_answer, award_json, said_as_text, statement_answer
from .pages import keyset_page_view

blp = Blueprint("me", __name__, url_prefix="/v1/me", description="A resident's own account")

IDENTIFIER_KINDS = ("travel_card", "leisure_card", "library_card", "resident_card")


def _birth_year(year: int) -> None:
    if not 1900 <= year <= utcnow().year:
        raise ValidationError("A year from 1900 to this year.")


class MemberSchema(Schema):
    id = fields.UUID(dump_only=True)
    email = fields.String(dump_only=True)
    display_name = fields.String(allow_none=True, validate=validate.Length(max=100))
    ward = fields.String(allow_none=True, validate=validate.Length(max=100), metadata={
        "description": "One of GET /v1/wards (its code or name); null to clear it."})
    locale = fields.String(validate=check_scheme_language, metadata={
        "description": "One of the scheme's languages (SCHEME_LANGUAGES), e.g. en or cy."})
    # Optional; the staff dashboard shows it only as an age band, in aggregate.
    birth_year = fields.Integer(allow_none=True,
                                validate=[validate.Range(min=1900, max=2999), _birth_year],
                                metadata={"description": "Optional; 1900 to this year."})
    joined_at = fields.DateTime(dump_only=True)


class ProfilePatch(MemberSchema):
    """Fields a resident may change."""

    postcode = fields.String(load_only=True, validate=validate.Length(max=10), metadata={
        "description": "Sets the ward from the council's postcode lookup; not stored."})


class IdentifierIn(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(IDENTIFIER_KINDS))
    number = fields.String(required=True, load_only=True,
                           validate=validate.Regexp(r"^[0-9A-Za-z \-]{6,32}$",
                                                    error="6 to 32 letters and digits."))
    link_code = fields.String(required=True, load_only=True, validate=validate.Length(max=16),
                              metadata={"description": "The 8-digit code the card's operator "
                                                       "shows its holder (docs/security.md)."})


class IdentifierOut(Schema):
    id = fields.UUID()
    kind = fields.String(metadata={"enum": list(IDENTIFIER_KINDS)})
    last4 = fields.String()
    created_at = fields.DateTime()


class ExpiringSchema(Schema):
    points = fields.Integer()
    expires_at = fields.DateTime()


class BalanceSchema(Schema):
    available = fields.Integer()
    pending = fields.Integer(metadata={"description": "Earned, spendable once its hold ends."})
    lifetime_earned = fields.Integer(
        metadata={"description": "Awarded since joining, less awards later reversed."})
    expiring = fields.List(fields.Nested(ExpiringSchema), metadata={
        "description": "Available points that expire within the next 30 days (the "
                       "scheme's setting), soonest first; the oldest are spent first."})


SAID = ("In the answer's language (Content-Language) where the scheme wrote it; what "
        "staff typed stays as typed.")


class LedgerLineSchema(Schema):
    id = fields.UUID()
    points = fields.Integer()
    kind = fields.String(metadata={"enum": list(POSTING_KINDS)})
    reason = fields.Function(reason_of("reason"),
                             metadata={"type": "string", "description": SAID})
    created_at = fields.DateTime()


class AwardSchema(Schema):
    rule_id = fields.UUID()
    rule_name = fields.Function(rule_name_of, metadata={
        "type": "string", "description": "The rule's name, in the answer's language."})
    rule_version = fields.Integer()
    points = fields.Integer()
    capped_by = fields.String(allow_none=True)


class ActionSchema(Schema):
    id = fields.UUID()
    type = fields.String(attribute="type_code")
    type_name = fields.Function(type_name_of, metadata={
        "type": "string", "description": "The action type's name to show, in the answer's "
                                         "language."})
    occurred_at = fields.DateTime()
    status = fields.String(metadata={"enum": list(ACTION_STATUSES)})
    points = fields.Integer()
    attributes = fields.Dict()
    reason = fields.Function(reason_of("flag_reason"), allow_none=True,
                             metadata={"type": "string", "nullable": True, "description": SAID})
    awards = fields.List(fields.Nested(AwardSchema))
    created_at = fields.DateTime()


class ClaimIn(Schema):
    offer_id = fields.UUID(required=True)


def _title(reward: Reward) -> str:
    offer = reward.offer
    member = g.get("member") if has_request_context() else None
    locale = member.locale if member is not None else reward.member.locale
    wanted = preferences(request.headers.get("Accept-Language") if has_request_context()
                         else None, locale)
    return localise(offer.title, offer.description, offer.translations, wanted)[0]


class RewardSchema(Schema):
    id = fields.UUID()
    offer_id = fields.UUID()
    title = fields.Function(_title, metadata={"type": "string"})
    partner = fields.Nested(PartnerBrief, attribute="offer.partner")
    status = fields.Function(voucher_state, metadata={"type": "string",
                                                      "enum": list(REWARD_STATUSES)})
    cost_points = fields.Integer()
    fulfilment = fields.Function(lambda r: r.offer.fulfilment, metadata={
        "type": "string", "enum": list(FULFILMENTS),
        "description": "internal: show the code at the till; webhook: a pass from the "
                       "partner's own booking system."})
    code = fields.Function(lambda r: r.code or r.partner_code, allow_none=True,
                           metadata={"type": "string"})
    partner_reference = fields.String(allow_none=True)
    qr_svg_url = fields.Method("qr_url", allow_none=True, metadata={"type": "string"})
    issued_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    redeemed_at = fields.DateTime(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    created_at = fields.DateTime()

    def qr_url(self, reward: Reward) -> str | None:
        if not (reward.code or reward.partner_code):
            return None
        return url_for("me.RewardQr", reward_id=reward.id, _external=False)


@blp.route("")
class Me(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, MemberSchema)
    @member_required
    def get(self):
        """The resident's profile."""
        return current_member()

    @blp.doc(security=BEARER)
    @member_required
    @blp.arguments(ProfilePatch(partial=True))
    @blp.response(200, MemberSchema)
    def patch(self, args):
        """Change display name, ward, language or (optional) birth year."""
        member = current_member()
        args = _ward_from_list(args)
        for key, value in args.items():
            setattr(member, key, value)
        db.session.commit()
        return member

    @blp.doc(security=BEARER)
    @blp.response(204)
    @member_required
    def delete(self):
        """Erase the account's personal data (docs/security.md lists it): cards, login
        codes, self-report text and photos, action details; vouchers not yet redeemed
        are cancelled. Ledger sums stay, under an id that no longer leads to a person."""
        erase_member(db.session, current_member(), utcnow())
        db.session.commit()


def _ward_from_list(args: dict) -> dict:
    """The ward as the scheme names it, from its code or name or the postcode; 422 for
    anything else (a ward unlocks ward-only offers, so it is never free text)."""
    args = dict(args)
    postcode = args.pop("postcode", None)
    if postcode is not None:
        found = ward_for_postcode(db.session, postcode)
        if found is None:
            abort(422, reason=Reason.UNKNOWN_WARD,
                  message="That postcode is not in the scheme's area.",
                  errors={"postcode": ["Not a postcode of the scheme's wards."]})
        args["ward"] = found.name
    elif args.get("ward") is not None:
        found = ward_named(db.session, args["ward"])
        if found is None:
            abort(422, reason=Reason.UNKNOWN_WARD, message="That is not one of the scheme's wards.",
                  errors={"ward": ["Not one of GET /v1/wards."]})
        args["ward"] = found.name
    return args


@blp.route("/identifiers")
class Identifiers(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, IdentifierOut(many=True))
    @member_required
    def get(self):
        """Linked cards: only the kind and last 4 digits are ever shown."""
        return db.session.scalars(
            select(Identifier).where(Identifier.member_id == current_member().id)
            .order_by(Identifier.created_at)
        ).all()

    @blp.doc(security=BEARER)
    @member_required
    @blp.arguments(IdentifierIn)
    @blp.response(201, IdentifierOut)
    @blp.alt_response(409, description="Too many cards, or this card cannot be linked here")
    @blp.alt_response(422, description="No link code, or a wrong or expired one")
    def post(self, args):
        """Link a card so a source's taps reach this account, with the link code its
        operator gave the holder (proof of holding the card)."""
        config = current_app.config
        try:
            identifier = link_proven_card(
                db.session, current_member(), args["kind"], args["number"], args["link_code"],
                now=utcnow(), valid_days=config["LINK_CODE_VALID_DAYS"],
                most=config["IDENTIFIERS_PER_MEMBER"])
        except LinkRefused as refused:
            db.session.rollback()
            abort(refused.status, message=refused.message, errors=refused.errors,
                  reason=refused.reason)
        db.session.commit()
        return identifier


@blp.route("/identifiers/<uuid:identifier_id>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@member_required
def unlink(identifier_id: uuid.UUID):
    """Unlink a card."""
    removed = db.session.execute(
        delete(Identifier).where(
            Identifier.id == identifier_id, Identifier.member_id == current_member().id
        )
    )
    if removed.rowcount != 1:
        abort(404, message="No such card on this account.")
    db.session.commit()


@blp.route("/balance")
@blp.doc(security=BEARER)
@blp.response(200, BalanceSchema)
@reads_only
@resident_read
def balance():
    """Points to spend, points on hold, all ever earned, and what expires soon.

    Spending takes the points that expire first; `expiring` lists what is left of the
    points expiring in the next 30 days, soonest first."""
    soon = utcnow() + timedelta(days=current_app.config["POINTS_EXPIRING_SOON_DAYS"])
    balances, expiring = balance_expiring(db.session, g.caller.id, soon)
    return json_answer(BalanceSchema, {
        "available": balances.available,
        "pending": balances.pending,
        "lifetime_earned": balances.lifetime_earned,
        "expiring": [{"points": lot.points, "expires_at": lot.expires_at} for lot in expiring],
    }, many=False)


@cache
def _statement_lines(dialect: str) -> Select[Any]:
    """The available account's lines, newest first (built once: every statement page
    runs it). The account by its code, in the page's own statement: one round trip.
    PostgreSQL says the ids and times as text, as the answer has them (`created_at`
    stays a datetime, for the next page's cursor)."""
    account = (select(Account.id).where(Account.code == bindparam("code"))
               .scalar_subquery())
    line_id, when = said_as_text(dialect, PostingLine.id, PostingLine.created_at)
    return (
        select(line_id, PostingLine.points, Posting.kind, Posting.reason,
               PostingLine.created_at, when.label("created_at_iso"))
        .join(Posting, Posting.id == PostingLine.posting_id)
        .where(PostingLine.account_id == account)
        .order_by(PostingLine.created_at.desc(), PostingLine.id)
    )


@cache
def _action_rows(dialect: str) -> Select[Any]:
    """The member's actions, latest first, with their type's names (built once). On
    PostgreSQL each row brings its awards as a JSON list (`awards`, in the order they
    were made): one statement for the page; elsewhere `_page_awards` reads them.
    PostgreSQL says the ids and times as text, as the answer has them (`occurred_at`
    stays a datetime, for the next page's cursor)."""
    action_id, occurred, created = said_as_text(dialect, Action.id, Action.occurred_at,
                                                Action.created_at)
    stmt = (
        select(action_id, Action.type_code, Action.occurred_at,
               occurred.label("occurred_at_iso"), Action.status, Action.points,
               Action.attributes, Action.flag_reason, created.label("created_at_iso"),
               ActionType.name.label("type_default_name"),
               ActionType.translations.label("type_translations"))
        .join(ActionType, ActionType.id == Action.action_type_id)
        .where(Action.member_id == bindparam("member", type_=Action.member_id.type))
        .order_by(Action.occurred_at.desc(), Action.id)
    )
    if dialect != "postgresql":
        return stmt
    awards = Award.__table__.alias("page_awards")
    # The keys written into the statement, not sent as parameters with every page.
    one = func.json_build_object(*(part for column in ("rule_id", "rule_name", "rule_version",
                                                       "points", "capped_by")
                                   for part in (literal_column(f"'{column}'"),
                                                awards.c[column])))
    listed = (select(func.coalesce(
                  func.json_agg(aggregate_order_by(one, awards.c.created_at, awards.c.id)),
                  literal_column("'[]'::json")))
              .where(awards.c.action_id == Action.id)
              .scalar_subquery())
    return stmt.add_columns(listed.label("awards"))


@cache
def _page_awards() -> Select[Any]:
    """The awards of a page's actions, in the order they were made (built once)."""
    return (select(Award.action_id, Award.rule_id, Award.rule_name, Award.rule_version,
                   Award.points, Award.capped_by)
            .where(Award.action_id.in_(bindparam("ids", expanding=True)))
            .order_by(Award.created_at, Award.id))


@blp.route("/ledger")
@blp.doc(security=BEARER)
@keyset_page_view(blp, LedgerLineSchema(many=True))
@reads_only
@resident_read
def ledger(cursor, pagination_parameters):
    """Statement of the available account, newest first; the lines add up to `available`.
    Follow X-Next-Cursor (`cursor`) for stable pages; `page` works too."""
    rows, headers = keyset_page(_statement_lines(db.dialect), PostingLine.created_at,
                                PostingLine.id, cursor, pagination_parameters, scalars=False,
                                params={"code": f"member:{g.caller.id}:available"})
    return json_body(statement_answer(rows)), headers


@blp.route("/actions")
@blp.doc(security=BEARER)
@keyset_page_view(blp, ActionSchema(many=True))
@reads_only
@resident_read
def actions(cursor, pagination_parameters):
    """Actions with their status, points, and the rule behind each award, latest first.
    Follow X-Next-Cursor (`cursor`) for stable pages; `page` works too."""
    # Rows, not entities: what the page shows with its awards.
    rows, headers = keyset_page(_action_rows(db.dialect), Action.occurred_at, Action.id,
                                cursor, pagination_parameters, scalars=False,
                                params={"member": g.caller.id})
    if db.dialect == "postgresql":  # the awards came in each row
        return json_body(actions_answer(rows)), headers
    awards: dict[Any, list[dict[str, Any]]] = {row.id: [] for row in rows}
    if awards:
        for award in db.session.execute(_page_awards(), {"ids": list(awards)}):
            awards[award.action_id].append(award_json(award))
    return json_body(actions_answer(rows, awards)), headers


@blp.route("/rewards")
class Rewards(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, RewardSchema(many=True))
    @blp.paginate()
    @reads_only
    @member_required
    def get(self, pagination_parameters):
        """The resident's rewards, newest first."""
        stmt = (
            select(Reward)
            .where(Reward.member_id == current_member().id)
            .order_by(Reward.created_at.desc(), Reward.id)
        )
        return paginate(stmt, pagination_parameters)

    @blp.doc(
        security=BEARER,
        parameters=[IDEMPOTENCY_KEY],
    )
    @resident_read
    @blp.arguments(ClaimIn)
    @blp.response(202, RewardSchema)
    @blp.alt_response(404, description="No such offer, or not live")
    @blp.alt_response(409, description="Not enough points, sold out, limit reached, not "
                                       "eligible, or not open yet")
    @blp.alt_response(410, description="The offer has ended")
    def post(self, args):
        """Claim an offer: the points are held now and a job issues the voucher."""
        member = current_resident()  # a row: id, ward, joined_at and locale are enough

        def produce():
            try:
                claimed = claim_offer(db.session, member, args["offer_id"])
            except ClaimRefused as refused:
                db.session.rollback()
                abort(refused.status, message=refused.message, reason=refused.reason)
            return claim_answer(claimed, member.locale), 202

        return idempotent(f"member:{member.id}:rewards", produce)


def claim_answer(claimed: Claimed, locale: str | None) -> dict:
    """RewardSchema's answer for a reward just claimed, from what the claim read and
    wrote (a pending reward: no code, nothing issued yet), without entities or a
    schema's dump on the hottest write. tests/test_rewards.py holds it to the schema's."""
    offer = claimed.offer
    # The environ, not request.headers: a missing header is None there, where werkzeug's
    # headers raise and catch an error (most claims send none).
    wanted = preferences(request.environ.get("HTTP_ACCEPT_LANGUAGE"), locale)
    return {
        "id": str(claimed.id),
        "offer_id": str(offer.id),
        "title": localise(offer.title, offer.description, offer.translations, wanted)[0],
        "partner": {"id": str(offer.partner_id), "name": offer.partner_name},
        "status": "pending",
        "cost_points": claimed.cost_points,
        "fulfilment": offer.fulfilment,
        "code": None,
        "partner_reference": None,
        "qr_svg_url": None,
        "issued_at": None,
        "expires_at": None,
        "redeemed_at": None,
        "failure_reason": None,
        "created_at": claimed.created_at.isoformat(),
    }


def _own_reward(reward_id: uuid.UUID) -> Reward:
    reward = db.session.scalar(
        select(Reward).where(Reward.id == reward_id, Reward.member_id == current_member().id)
    )
    if reward is None:
        abort(404, message="No such reward.")
    return reward


@blp.route("/rewards/<uuid:reward_id>")
@blp.doc(security=BEARER)
@blp.response(200, RewardSchema)
@member_required
def reward(reward_id: uuid.UUID):
    """One reward; the voucher code once issued."""
    return _own_reward(reward_id)


@blp.route("/rewards/<uuid:reward_id>/qr.svg", endpoint="RewardQr")
@blp.doc(security=BEARER)
@blp.response(200, content_type="image/svg+xml", description="The voucher code as a QR code")
@member_required
def reward_qr(reward_id: uuid.UUID):
    """The voucher as a QR code to show at the till."""
    item = _own_reward(reward_id)
    code = item.code or item.partner_code
    if not code:
        abort(409, message="The voucher has not been issued yet.",
              reason=Reason.VOUCHER_NOT_ISSUED)
    buffer = io.BytesIO()
    segno.make(code, error="m").save(buffer, kind="svg", scale=8, border=2)
    return Response(buffer.getvalue(), mimetype="image/svg+xml")


__all__ = ["blp"]
