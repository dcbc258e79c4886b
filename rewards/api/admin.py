"""Council staff: define the scheme (action types, rules, sources). Partners and offers
are managed in catalogue.py."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from flask import current_app, g
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..actions.simulate import simulate, suppress_small_cells
from ..extensions import Blueprint, db
from ..models import (
    ActionType,
    AuditEntry,
    Rule,
    RuleVersion,
    Source,
    utcnow,
)
from ..models.scheme import CATEGORIES
from ..reasons import Reason
from ..rules import PERIODS, ExpressionError, validate_expression
from ..security import api_key_hash, new_api_key
from .auth import BEARER, staff_required
from .common import Moment, audit, counted, found_or_404, paginate

blp = Blueprint("admin", __name__, url_prefix="/v1/admin", description="Scheme management")

MANAGE = ("scheme_manager",)
CODE = validate.Regexp(r"^[a-z][a-z0-9_]{1,63}$",
                       error="Lower-case letters, digits and _; starting with a letter.")


# -- action types -----------------------------------------------------------------

class ActionTypeTranslation(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))


class ActionTypeSchema(Schema):
    id = fields.UUID(dump_only=True)
    code = fields.String(required=True, validate=CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    description = fields.String(allow_none=True)
    translations = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[a-z]{2,3}$")),
        values=fields.Nested(ActionTypeTranslation), load_default=dict,
        metadata={"description": 'Other languages: {"cy": {"name": .., "description": ..}}.'})
    created_at = fields.DateTime(dump_only=True)


@blp.route("/action-types")
class ActionTypes(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, ActionTypeSchema(many=True))
    @blp.paginate()
    @staff_required(*MANAGE, "reviewer", "analyst")
    def get(self, pagination_parameters):
        """Action types the scheme recognises."""
        return paginate(select(ActionType).order_by(ActionType.code), pagination_parameters)

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(ActionTypeSchema)
    @blp.response(201, ActionTypeSchema)
    @blp.alt_response(409, description="The code is taken")
    def post(self, args):
        """Add an action type."""
        if db.session.scalar(select(ActionType.id).where(ActionType.code == args["code"])):
            abort(409, message=f"Action type {args['code']!r} exists already.",
                  reason=Reason.ALREADY_EXISTS)
        action_type = ActionType(**args)
        db.session.add(action_type)
        try:
            db.session.flush()
        except IntegrityError:  # the same code added at the same moment
            db.session.rollback()
            abort(409, message=f"Action type {args['code']!r} exists already.",
                  reason=Reason.ALREADY_EXISTS)
        audit("create", "action_type", action_type.id, code=action_type.code)
        db.session.commit()
        return action_type


class ActionTypePatchSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    translations = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[a-z]{2,3}$")),
        values=fields.Nested(ActionTypeTranslation),
        metadata={"description": "Replaces the type's translations."})


@blp.route("/action-types/<string:code>")
class ActionTypeByCode(MethodView):
    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(ActionTypePatchSchema)
    @blp.response(200, ActionTypeSchema)
    def patch(self, args, code):
        """Rename an action type, or set its names in other languages. Its code and
        category stay: rules, sources and the dashboard's figures are keyed by them."""
        action_type = db.session.scalar(select(ActionType).where(ActionType.code == code))
        if action_type is None:
            abort(404, message=f"No action type {code!r}.", reason=Reason.NOT_FOUND)
        for field, value in args.items():
            setattr(action_type, field, value)
        audit("update", "action_type", action_type.id, code=code, fields=sorted(args))
        db.session.commit()
        return action_type


# -- rules ------------------------------------------------------------------------

class CapsSchema(Schema):
    per_day = fields.Integer(allow_none=True, validate=counted())
    per_week = fields.Integer(allow_none=True, validate=counted())
    per_month = fields.Integer(allow_none=True, validate=counted())
    lifetime = fields.Integer(allow_none=True, validate=counted())


RULE_STATUSES = ("draft", "active", "retired")


class RuleTranslation(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


RULE_TRANSLATIONS_DOC = {"description": 'The name in other languages, as members read it on '
                                        'their statement: {"cy": {"name": ..}}. Belongs to '
                                        'the rule, not a version.'}


EXPRESSION_DOC = {"description": "A zen-engine expression (docs/security.md). At most "
                                 "RULE_EXPRESSION_MAX_CHARS characters (2000) and 32 levels of "
                                 "brackets; a range only after `in`; no closure function "
                                 "(map, filter, count, ...) inside another's callback; "
                                 "counted repetitions ({9}) in its strings totalling at "
                                 "most 256."}


class RuleIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    translations = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[a-z]{2,3}$")),
        values=fields.Nested(RuleTranslation), load_default=dict, metadata=RULE_TRANSLATIONS_DOC)
    description = fields.String(allow_none=True)
    action_types = fields.List(fields.String(), required=True,
                               validate=validate.Length(min=1))
    condition = fields.String(load_default="true", metadata=EXPRESSION_DOC)
    points = fields.String(required=True, metadata=EXPRESSION_DOC)
    status = fields.String(load_default="active", validate=validate.OneOf(RULE_STATUSES))
    caps = fields.Nested(CapsSchema, load_default=dict)
    points_caps = fields.Nested(CapsSchema, load_default=dict)
    starts_at = Moment(allow_none=True)
    ends_at = Moment(allow_none=True)
    budget_points = fields.Integer(allow_none=True, validate=counted(1))
    priority = fields.Integer(load_default=0, validate=counted(-1_000_000, 1_000_000))
    stackable = fields.Boolean(load_default=True)
    hold_days = fields.Integer(load_default=0, validate=validate.Range(min=0, max=365))

    @validates_schema
    def check(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[str]] = {}
        most = int(current_app.config["RULE_EXPRESSION_MAX_CHARS"])
        for name, want in (("condition", "boolean"), ("points", "number")):
            if name in data:
                try:
                    validate_expression(data[name], want, max_chars=most)
                except ExpressionError as error:
                    errors[name] = [str(error)]
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            errors["ends_at"] = ["ends_at must be after starts_at."]
        if errors:
            raise ValidationError(errors)


class RulePatch(RuleIn):
    """Any rule field; the result is a new version."""


class RuleVersionSchema(Schema):
    id = fields.UUID()
    version = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    action_types = fields.List(fields.String())
    condition = fields.String()
    points = fields.String()
    status = fields.String(metadata={"enum": list(RULE_STATUSES)})
    caps = fields.Nested(CapsSchema)
    points_caps = fields.Nested(CapsSchema)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime(allow_none=True)
    budget_points = fields.Integer(allow_none=True)
    priority = fields.Integer()
    stackable = fields.Boolean()
    hold_days = fields.Integer()
    created_at = fields.DateTime()


class RuleOut(RuleVersionSchema):
    id = fields.UUID(attribute="rule_id")
    translations = fields.Dict(keys=fields.String(), values=fields.Nested(RuleTranslation),
                               attribute="rule.translations", metadata=RULE_TRANSLATIONS_DOC)
    version_id = fields.UUID(attribute="id")
    points_awarded = fields.Integer(
        attribute="rule.points_awarded",
        metadata={"description": "Points awarded under the rule so far, all versions, less "
                                 "what revocations took back (points a member had spent "
                                 "before a revocation stay counted): what its budget is "
                                 "spent by."})
    budget_left = fields.Method(
        "_budget_left", allow_none=True,
        metadata={"type": "integer", "nullable": True,
                  "description": "budget_points less points_awarded (not below 0); null "
                                 "without a budget. At 0 the rule awards nothing more."})

    def _budget_left(self, version: RuleVersion) -> int | None:
        if version.budget_points is None:
            return None
        return max(version.budget_points - version.rule.points_awarded, 0)


def _check_types(codes: list[str]) -> None:
    known = set(db.session.scalars(select(ActionType.code).where(ActionType.code.in_(codes))))
    missing = sorted(set(codes) - known)
    if missing:
        abort(422, message="Unknown action types.",
              errors={"action_types": [f"unknown action type {c!r}" for c in missing]})


def _check_window(starts_at: datetime, ends_at: datetime | None) -> None:
    """The window as it will be stored: starts_at may be a default or carried over."""
    if ends_at is not None and ends_at <= starts_at:
        abort(422, message="The rule would end before it starts.",
              errors={"ends_at": [f"ends_at must be after starts_at ({starts_at.isoformat()})."]})


def _clean_caps(caps: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in caps.items() if k in PERIODS and v is not None}


def _current_version(rule_id: uuid.UUID) -> RuleVersion:
    rule = found_or_404(Rule, rule_id, "No such rule.")
    version = db.session.scalar(
        select(RuleVersion).where(RuleVersion.rule_id == rule.id,
                                  RuleVersion.version == rule.current_version)
    )
    assert version is not None
    return version


_RULE_COLUMNS = ("name", "description", "action_types", "condition", "points", "caps",
                 "points_caps", "starts_at", "ends_at", "budget_points", "priority", "stackable",
                 "hold_days", "status")


@blp.route("/rules")
class Rules(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, RuleOut(many=True))
    @blp.paginate()
    @staff_required(*MANAGE, "reviewer", "analyst")
    def get(self, pagination_parameters):
        """Rules, each at its current version."""
        stmt = (
            select(RuleVersion)
            .join(Rule, Rule.id == RuleVersion.rule_id)
            .where(RuleVersion.version == Rule.current_version)
            .order_by(RuleVersion.priority.desc(), RuleVersion.name)
        )
        return paginate(stmt, pagination_parameters)

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(RuleIn)
    @blp.response(201, RuleOut)
    def post(self, args):
        """Create an earning rule. Expressions are checked by the engine before saving."""
        _check_types(args["action_types"])
        starts_at = args.get("starts_at") or utcnow()
        _check_window(starts_at, args.get("ends_at"))
        rule = Rule(id=uuid.uuid4(), name=args["name"], current_version=1,
                    translations=args["translations"])
        db.session.add(rule)
        version = RuleVersion(
            rule_id=rule.id,
            version=1,
            name=args["name"],
            description=args.get("description"),
            action_types=args["action_types"],
            condition=args["condition"],
            points=args["points"],
            caps=_clean_caps(args["caps"]),
            points_caps=_clean_caps(args["points_caps"]),
            starts_at=starts_at,
            ends_at=args.get("ends_at"),
            budget_points=args.get("budget_points"),
            priority=args["priority"],
            stackable=args["stackable"],
            hold_days=args["hold_days"],
            status=args["status"],
            created_by=g.caller.id,
        )
        db.session.add(version)
        db.session.flush()
        audit("create", "rule", rule.id, version=1, name=rule.name)
        db.session.commit()
        return version


@blp.route("/rules/<uuid:rule_id>")
class RuleItem(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, RuleOut)
    @staff_required(*MANAGE, "reviewer", "analyst")
    def get(self, rule_id: uuid.UUID):
        """A rule at its current version."""
        return _current_version(rule_id)

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(RulePatch(partial=True))
    @blp.response(200, RuleOut)
    @blp.alt_response(409, description="Another edit of this rule was saved at the same moment")
    def patch(self, args, rule_id: uuid.UUID):
        """Edit a rule: the change becomes a new version; awards keep the old one."""
        # Lock the rule so two edits at once cannot both take the next version number.
        rule = found_or_404(Rule, rule_id, "No such rule.", lock=True)
        current = _current_version(rule_id)
        if "translations" in args:  # the rule's, not a version's
            rule.translations = args.pop("translations")
            if not args:
                audit("translate", "rule", rule.id, translations=rule.translations)
                db.session.commit()
                return current
        if "action_types" in args:
            _check_types(args["action_types"])
        fields_ = {column: getattr(current, column) for column in _RULE_COLUMNS}
        for key, value in args.items():
            fields_[key] = _clean_caps(value) if key in ("caps", "points_caps") else value
        if fields_.get("starts_at") is None:
            fields_["starts_at"] = current.starts_at
        _check_window(fields_["starts_at"], fields_["ends_at"])
        rule.name = fields_["name"]
        return _save_version(rule, fields_, "update", changed=sorted(args))


def _change_status(rule_id: uuid.UUID, status: str, verb: str) -> RuleVersion:
    """A new version of the rule, the same but for its status (versions are immutable,
    and every award names the version that made it)."""
    rule = found_or_404(Rule, rule_id, "No such rule.", lock=True)
    current = _current_version(rule_id)
    if current.status == status:
        abort(409, message=f"The rule is already {status} (version {current.version}).",
              reason=Reason.WRONG_STATE)
    fields_ = {column: getattr(current, column) for column in _RULE_COLUMNS}
    fields_["status"] = status
    return _save_version(rule, fields_, verb, status=status, previous_status=current.status)


def _save_version(rule: Rule, fields_: dict[str, Any], verb: str,
                  **details: Any) -> RuleVersion:
    """Store `fields_` as the rule's next version (the rule's row is locked), audit it
    with `details`, and commit; 409 if another change took the number first."""
    rule.current_version += 1
    version = RuleVersion(rule_id=rule.id, version=rule.current_version,
                          created_by=g.caller.id, **fields_)
    db.session.add(version)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        abort(409, message="The rule was edited at the same time; fetch it and try again.",
              reason=Reason.EDIT_CONFLICT)
    audit(verb, "rule", rule.id, version=rule.current_version, **details)
    db.session.commit()
    return version


@blp.route("/rules/<uuid:rule_id>/activate", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, RuleOut)
@blp.alt_response(409, description="The rule is active already, or was edited at the same time")
@staff_required(*MANAGE)
def activate_rule(rule_id: uuid.UUID):
    """Make a draft or retired rule award points: a new version with status active."""
    return _change_status(rule_id, "active", "activate")


@blp.route("/rules/<uuid:rule_id>/retire", methods=["POST"])
@blp.doc(security=BEARER)
@blp.response(200, RuleOut)
@blp.alt_response(409, description="The rule is retired already, or was edited at the same time")
@staff_required(*MANAGE)
def retire_rule(rule_id: uuid.UUID):
    """Stop a rule awarding points: a new version with status retired. Past awards keep
    the version that made them."""
    return _change_status(rule_id, "retired", "retire")


@blp.route("/rules/<uuid:rule_id>/versions")
@blp.doc(security=BEARER)
@blp.response(200, RuleVersionSchema(many=True))
@blp.paginate()
@staff_required(*MANAGE, "reviewer", "analyst")
def rule_versions(rule_id: uuid.UUID, pagination_parameters):
    """Every version of a rule, oldest first."""
    _current_version(rule_id)
    return paginate(
        select(RuleVersion).where(RuleVersion.rule_id == rule_id).order_by(RuleVersion.version),
        pagination_parameters)


# -- simulation -------------------------------------------------------------------

class DraftRuleIn(RuleIn):
    """A rule as for POST /v1/admin/rules; its status is ignored."""

    status = fields.String(allow_none=True, metadata={"description": "Ignored."})


class SimulateIn(Schema):
    rules = fields.List(fields.Nested(DraftRuleIn), required=True,
                        validate=validate.Length(min=1, max=50))
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=90))
    include_live = fields.Boolean(
        load_default=True,
        metadata={"description": "Evaluate the drafts together with the live rules, so "
                                 "stacking, exclusivity and caps interact as they would."})


class RuleFiguresOut(Schema):
    name = fields.String()
    points = fields.Integer(allow_none=True)
    actions = fields.Integer(allow_none=True,
                             metadata={"description": "Actions it awarded points for."})
    capped = fields.Integer(allow_none=True,
                            metadata={"description": "Actions it matched but a cap stopped."})
    suppressed = fields.Boolean(metadata={
        "description": "True: it matched fewer members than DASHBOARD_MIN_CELL, so its "
                       "figures are hidden (null)."})


class SimulationErrorOut(Schema):
    rule = fields.String()
    draft = fields.Boolean()
    message = fields.String()
    count = fields.Integer(allow_none=True, metadata={
        "description": "Null when under DASHBOARD_MIN_CELL."})


class SimulationOut(Schema):
    days = fields.Integer()
    include_live = fields.Boolean()
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    actions_considered = fields.Integer(
        metadata={"description": "Accepted actions replayed, in the order they happened."})
    actions_matched = fields.Integer(
        allow_none=True,
        metadata={"description": "Actions the drafts would have awarded points for."})
    members_touched = fields.Integer(allow_none=True)
    points = fields.Integer(allow_none=True,
                            metadata={"description": "Points the drafts would have awarded."})
    points_by_rule = fields.List(fields.Nested(RuleFiguresOut))
    live_points = fields.Integer(
        allow_none=True,
        metadata={"description": "Points the live rules award beside the drafts."})
    baseline_points = fields.Integer(
        metadata={"description": "Points the live rules alone award over the same actions."})
    cost_change = fields.Integer(
        allow_none=True,
        metadata={"description": "points + live_points - baseline_points (with include_live)."})
    errors = fields.List(fields.Nested(SimulationErrorOut))
    suppressed = fields.Boolean(metadata={
        "description": "True: some figures concern fewer members than DASHBOARD_MIN_CELL "
                       "and are hidden, with every total that would reveal them."})


@blp.route("/rules/simulate", methods=["POST"])
@blp.doc(security=BEARER)
@staff_required(*MANAGE)
@blp.arguments(SimulateIn)
@blp.response(200, SimulationOut)
def simulate_rules(args):
    """What draft rules would have awarded over the last `days` of real accepted actions,
    with caps and budgets counted from the start of that window. Writes nothing.
    Scheme managers only; figures about fewer members than DASHBOARD_MIN_CELL are hidden."""
    for index, body in enumerate(args["rules"]):
        missing = sorted(set(body["action_types"]) - set(db.session.scalars(
            select(ActionType.code).where(ActionType.code.in_(body["action_types"])))))
        if missing:
            abort(422, message="Unknown action types.", errors={"rules": {str(index): {
                "action_types": [f"unknown action type {c!r}" for c in missing]}}})
    try:
        result = simulate(db.session, args["rules"], days=args["days"],
                          include_live=args["include_live"],
                          tz=current_app.config["SCHEME_TIMEZONE"], now=utcnow())
        return suppress_small_cells(result, int(current_app.config["DASHBOARD_MIN_CELL"]))
    finally:
        db.session.rollback()  # nothing to keep: say so to the database too


# -- sources ----------------------------------------------------------------------

class SourceIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    action_types = fields.List(fields.String(), required=True, validate=validate.Length(min=1))


class SourceOut(Schema):
    id = fields.UUID()
    name = fields.String()
    action_types = fields.List(fields.String())
    active = fields.Boolean()
    created_at = fields.DateTime()


class SourceCreated(SourceOut):
    api_key = fields.String()
    signing_secret = fields.String()


@blp.route("/sources")
class Sources(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, SourceOut(many=True))
    @blp.paginate()
    @staff_required(*MANAGE)
    def get(self, pagination_parameters):
        """Action sources (their secrets are never shown again)."""
        return paginate(select(Source).order_by(Source.name), pagination_parameters)

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(SourceIn)
    @blp.response(201, SourceCreated)
    def post(self, args):
        """Register a source. The API key and signing secret are shown only in this answer."""
        _check_types(args["action_types"])
        key = new_api_key("src")
        secret = secrets.token_hex(32)
        source = Source(name=args["name"], action_types=args["action_types"],
                        api_key_hash=api_key_hash(key), signing_secret=secret)
        db.session.add(source)
        db.session.flush()
        audit("create", "source", source.id, name=source.name)
        db.session.commit()
        source.api_key = key  # shown in this answer only, never stored
        return source


# -- audit ------------------------------------------------------------------------

class AuditOut(Schema):
    id = fields.UUID()
    actor_id = fields.UUID(allow_none=True)
    actor_role = fields.String()
    action = fields.String()
    target_type = fields.String()
    target_id = fields.String(allow_none=True)
    details = fields.Dict()
    created_at = fields.DateTime()


@blp.route("/audit-log")
@blp.doc(security=BEARER)
@blp.response(200, AuditOut(many=True))
@blp.paginate()
@staff_required()
def audit_log(pagination_parameters):
    """Who did what, when; newest first."""
    return paginate(select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id),
                    pagination_parameters)
