"""The resident's own account: profile, cards, points, actions, rewards."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from functools import cache
from typing import Any

from flask import current_app, g, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import Select, bindparam, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from werkzeug.http import generate_etag, parse_etags, quote_etag

from ..erasure import erase_member
from ..extensions import Blueprint, db
from ..ledger import balance_expiring
from ..linking import LinkRefused, link_proven_card
from ..models import (
    Account,
    Action,
    ActionType,
    Award,
    Identifier,
    Member,
    Posting,
    PostingLine,
    utcnow,
)
from ..models.action import ACTION_STATUSES
from ..models.ledger import POSTING_KINDS
from ..reasons import Reason
from ..wards import ward_for_postcode, ward_named
from .auth import BEARER, MEMBER_ENDED, current_member, member_required, resident_read
from .common import keyset_page, paginate, reads_only
from .fastdump import json_answer, json_body
from .language import check_scheme_language, reason_of, rule_name_of, type_name_of
from .me_pages import actions_answer, award_json, said_as_text, statement_answer
from .pages import keyset_page_view

blp = Blueprint("me", __name__, url_prefix="/v1/me", description="A resident's own account")

IDENTIFIER_KINDS = ("travel_card", "leisure_card", "library_card", "resident_card")


def _birth_year(year: int) -> None:
    """Not after this year (the Range beside it, which the spec shows, says the rest:
    one message a mistake)."""
    if utcnow().year < year <= 2999:
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
    capped_by = fields.String(allow_none=True, metadata={
        "description": "The cap (per_day ... lifetime, points_per_day ... points_lifetime) "
                       "or `budget` that stopped this award (points 0) or cut it to what "
                       "was left of it; null when the rule gave its full points."})


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



_PROFILE = MemberSchema()


def profile_tag(member: Member) -> str:
    """The profile's strong ETag (unquoted): a digest of what GET /v1/me answers, the
    same whatever the JSON's spacing or key order."""
    data = json.dumps(_PROFILE.dump(member), sort_keys=True, separators=(",", ":"),
                      default=str)
    return generate_etag(data.encode())


@blp.route("")
class Me(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, MemberSchema)
    @member_required
    def get(self):
        """The resident's profile.

        Its ETag goes back as If-Match with a PATCH, so that a change made meanwhile
        (on another device) is not overwritten."""
        member = current_member()
        return member, 200, {"ETag": quote_etag(profile_tag(member))}

    @blp.doc(security=BEARER)
    @member_required
    @blp.arguments(ProfilePatch(partial=True))
    @blp.response(200, MemberSchema)
    @blp.alt_response(409, description="The ward changed less than WARD_CHANGE_DAYS ago")
    def patch(self, args):
        """Change display name, ward, language or (optional) birth year. Where the
        scheme sets WARD_CHANGE_DAYS, the ward changes at most once in that many days:
        it unlocks ward-only offers and ward rules. With If-Match (the ETag of GET
        /v1/me), the change is made only if the profile is still that one, else 412.

        Concurrent changes take turns on the member's row, each reading the profile
        as the one before left it: If-Match compares against what is stored at that
        moment, and an account closed meanwhile is not written to again."""
        member = _locked_profile(current_member().id)
        if_match = request.headers.get("If-Match")
        if if_match and not parse_etags(if_match).contains(profile_tag(member)):
            db.session.rollback()
            abort(412, message="The profile has changed since that ETag was read; read it "
                               "again (GET /v1/me) and retry.")
        args = _ward_from_list(args)
        if "ward" in args and args["ward"] != member.ward:
            _may_change_ward(member)
            member.ward_changed_at = utcnow()
        for key, value in args.items():
            setattr(member, key, value)
        db.session.commit()
        return member, 200, {"ETag": quote_etag(profile_tag(member))}

    @blp.doc(security=BEARER)
    @blp.response(204)
    @member_required
    def delete(self):
        """Erase the account's personal data (docs/security.md lists it): cards, login
        codes, self-report text and photos, action details; vouchers not yet redeemed
        are cancelled. Ledger sums stay, under an id that no longer leads to a person."""
        erase_member(db.session, current_member(), utcnow())
        db.session.commit()


def _locked_profile(member_id: uuid.UUID) -> Member:
    """The member's row, locked and read afresh; 401 if the account was closed."""
    # NO KEY UPDATE: a profile edit changes no key, so it need not wait for claims and
    # donations writing rows that reference the member; erasures and batches it waits for.
    member = db.session.scalar(select(Member).where(Member.id == member_id)
                               .with_for_update(key_share=True)
                               .execution_options(populate_existing=True))
    if member is None or member.erased_at is not None:
        db.session.rollback()
        abort(401, message=MEMBER_ENDED, reason=Reason.SESSION_ENDED)
    return member


def _may_change_ward(member: Member) -> None:
    """409 while the member's last change of ward is under WARD_CHANGE_DAYS old. The
    first ward a member gives (or one given before changes were recorded) is free."""
    days = current_app.config["WARD_CHANGE_DAYS"]
    if days <= 0 or member.ward is None or member.ward_changed_at is None:
        return
    next_change = member.ward_changed_at + timedelta(days=days)
    if utcnow() < next_change:
        abort(409, reason=Reason.WARD_CHANGED_RECENTLY,
              message=f"Your ward changed on {member.ward_changed_at:%d %B %Y}; it can "
                      f"change again from {next_change:%d %B %Y}.")


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
    @blp.paginate()
    @member_required
    def get(self, pagination_parameters):
        """Linked cards, oldest first: only the kind and last 4 digits are ever shown."""
        return paginate(
            select(Identifier).where(Identifier.member_id == current_member().id)
            .order_by(Identifier.created_at, Identifier.id), pagination_parameters)

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
            headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
            abort(refused.status, message=refused.message, errors=refused.errors,
                  reason=refused.reason, headers=headers)
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


# The rewards routes join this blueprint (a module of their own for its size).
from . import me_rewards  # noqa: E402,F401

__all__ = ["blp"]
