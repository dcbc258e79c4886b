"""Machine-to-machine: sources report actions in signed batches."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import current_app, g, request
from flask_smorest import abort
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from ..actions.ingest import ingest_batch
from ..awarding import lock_for_reversals
from ..extensions import Blueprint, db
from ..ledger import add_points_awarded, lock_member, reverse_action
from ..models import Action
from ..notify import earned_by_member, enqueue_points_earned
from .auth import source_required

blp = Blueprint("source", __name__, url_prefix="/v1/source",
                description="Action sources: transport operators, leisure centres")

SIGNED = [{"apiKey": []}]
# Text PostgreSQL cannot hold (NUL, half a surrogate pair): no stored ref contains it.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
SIGNATURE_HEADER = {
    "in": "header",
    "name": "X-Signature",
    "required": True,
    "schema": {"type": "string"},
    "description": ('t=<unix seconds>,v1=<hex HMAC-SHA256(signing_secret, "<t>.<raw body>")>; '
                    "during a key rotation up to 5 v1= entries, one per secret: the header "
                    "passes when any of them is right under the secret of any of the "
                    "source's keys still working. t within SIGNATURE_TOLERANCE (300 s) of "
                    "the server's clock, either way."),
}


class BatchMember(Schema):
    kind = fields.String()
    number = fields.String()
    member_id = fields.UUID()


class BatchItem(Schema):
    external_ref = fields.String(required=True)
    member = fields.Nested(BatchMember, required=True)
    type = fields.String(required=True)
    occurred_at = fields.DateTime(required=True)
    attributes = fields.Dict()


class BatchIn(Schema):
    items = fields.List(fields.Nested(BatchItem), required=True)


class ItemResult(Schema):
    external_ref = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["accepted", "duplicate", "rejected"]})
    action_id = fields.UUID(allow_none=True)
    reason = fields.String(allow_none=True, metadata={
        "description": "Why an item was rejected or is a duplicate. On an accepted item, "
                       "\"held for review: ...\" when a control (too many actions of a type "
                       "in an hour, implausible travel between located actions) held it: it "
                       "is recorded but earns nothing until a reviewer approves it."})
    points = fields.Integer(allow_none=True, metadata={
        "description": "Points awarded now: 0 for a duplicate or rejected item; null for an "
                       "accepted item not awarded yet (where the scheme awards in the "
                       "background, AWARDING=deferred: the member's actions list shows "
                       "it `pending` until then)."})


class BatchOut(Schema):
    results = fields.List(fields.Nested(ItemResult))


@blp.route("/actions", methods=["POST"])
@blp.doc(security=SIGNED, parameters=[SIGNATURE_HEADER],
         requestBody={"required": True,
                      "content": {"application/json": {"schema": BatchIn}}})
@blp.response(200, BatchOut)
@blp.alt_response(401, description="Missing, wrong or stale signature; nothing recorded")
@blp.alt_response(413, description="More items than a batch may carry")
@source_required
def post_actions():
    """Report a batch of actions. Each item is judged on its own: `accepted`,
    `duplicate` (same external_ref seen before) or `rejected` with the reason.

    Sign with any of the source's keys still working (see /v1/admin/sources/{id}/keys:
    after a rotation the old key works until its overlap ends). An accepted item a control
    holds for review says so in `reason` ("held for review: ...") and earns 0 points until
    approved. Items of the batch count towards each other's controls in time order."""
    # Items are validated one by one (a bad item must not sink the batch), so the
    # body is read here rather than through a strict schema.
    items = _listed_body("items", "A list of actions is required.", "A batch", "items")
    outcome = ingest_batch(db.session, g.source, items)
    # The batch has committed: tell each member who earned points, once for the batch.
    # A notice that cannot be queued must not turn the recorded batch into an error.
    try:
        earned = earned_by_member(db.session, outcome.results)
        if earned:
            enqueue_points_earned(db.session, earned)
            db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        current_app.logger.exception("could not queue the points notices of a batch")
    # The results are plain JSON values already, in BatchOut's shape (tests hold them to
    # it): written straight out, not dumped field by field through the schema for up to
    # 1,000 items. A Response passes through @blp.response unchanged.
    return current_app.json.response({"results": outcome.results})


# -- revocations --------------------------------------------------------------------

class RevocationsIn(Schema):
    external_refs = fields.List(fields.String(validate=validate.Length(min=1, max=200)),
                                required=True)


class RevocationResult(Schema):
    external_ref = fields.String()
    status = fields.String(metadata={"enum": ["revoked", "already_revoked", "not_found"]})
    action_id = fields.UUID(allow_none=True)
    points_reversed = fields.Integer(metadata={
        "description": "Taken back from the member (pending points first, then available)."})
    points_written_off = fields.Integer(metadata={
        "description": "Already spent by the member, so not taken back: the scheme bears "
                       "them. For already_revoked, the figures of the first revocation."})


class RevocationsOut(Schema):
    results = fields.List(fields.Nested(RevocationResult))


def _listed_body(key: str, required: str, what: str, noun: str) -> list[Any]:
    """The list under `key` of a JSON body {key: [...]}, or a 422 (no such list; the
    error under `key` says `required`) or a 413 (`what` carries more than the
    scheme's MAX_BATCH_ITEMS `noun`)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the JSON parser goes
        body = None
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        abort(422, message=f'The body must be {{"{key}": [...]}}.', errors={key: [required]})
    listed: list[Any] = body[key]
    limit = current_app.config["MAX_BATCH_ITEMS"]
    if len(listed) > limit:
        abort(413, message=f"{what} carries at most {limit} {noun}; "
                           f"this one has {len(listed)}.")
    return listed


def _refs_from_body() -> list[str]:
    """The body's external_refs, or a 413/422 that says what is wrong."""
    refs = _listed_body("external_refs", "A list of external_ref strings is required.",
                        "A revocation", "external_refs")
    bad = {str(n): ["Each external_ref must be a non-empty string of at most 200 characters, "
                    "without NUL characters or lone UTF-16 surrogates."]
           for n, ref in enumerate(refs)
           if not isinstance(ref, str) or not ref.strip() or len(ref) > 200
           or _UNSTORABLE.search(ref)}
    if bad:
        abort(422, message="Some external_refs are not valid; nothing was revoked.",
              errors={"external_refs": bad})
    return refs


@blp.route("/actions/revocations", methods=["POST"])
@blp.doc(security=SIGNED, parameters=[SIGNATURE_HEADER],
         requestBody={"required": True,
                      "content": {"application/json": {"schema": RevocationsIn}}})
@blp.response(200, RevocationsOut)
@blp.alt_response(401, description="Missing, wrong or stale signature; nothing revoked")
@blp.alt_response(413, description="More external_refs than one request may carry")
@blp.alt_response(422, description="Not {\"external_refs\": [strings]}; nothing revoked")
@source_required
def post_revocations():
    """Revoke actions this source reported; their points are reversed.

    For a tap found to be fraudulent, a visit that did not happen. One result per
    external_ref, in order: `revoked`, `already_revoked` or `not_found` (never sent by
    this source). Points still pending are taken from pending; points a member has
    spent already are not taken below zero but written off, and the result says so.
    Sending the same refs again is safe."""
    refs = _refs_from_body()
    session = db.session
    actions: dict[str, Action] = {}
    unique = sorted(set(refs))
    for start in range(0, len(unique), 500):
        for action in session.scalars(
            select(Action).where(Action.source_id == g.source.id,
                                 Action.external_ref.in_(unique[start:start + 500]))
        ):
            actions[action.external_ref] = action
    # Take every member's lock up front, in one order, so two requests revoking
    # actions of the same members cannot wait on each other in a cycle.
    member_ids = sorted({action.member_id for action in actions.values()})
    for member_id in member_ids:
        lock_member(session, member_id)
    # Then the members' rows and their awards' rules, in the order batches take them.
    lock_for_reversals(session, member_ids, [action.id for action in actions.values()])
    results: list[dict[str, Any]] = []
    # The rules' running totals move once, in rule id order, after every reversal.
    rule_totals: dict[uuid.UUID, int] = {}
    for ref in refs:
        action = actions.get(ref)
        if action is None:
            results.append({"external_ref": ref, "status": "not_found", "action_id": None,
                            "points_reversed": 0, "points_written_off": 0})
            continue
        reversal = reverse_action(session, action, f"Revoked by {g.source.name}",
                                  rule_totals=rule_totals)
        results.append({
            "external_ref": ref,
            "status": "already_revoked" if reversal.already else "revoked",
            "action_id": action.id,
            "points_reversed": reversal.points_reversed,
            "points_written_off": reversal.points_written_off,
        })
        session.flush()
    add_points_awarded(session, rule_totals)
    session.commit()
    return {"results": results}
