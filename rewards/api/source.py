"""Machine-to-machine: sources report actions in signed batches."""

from __future__ import annotations

from flask import current_app, g, request
from flask_smorest import abort
from marshmallow import Schema, fields

from ..actions.ingest import ingest_batch
from ..extensions import Blueprint, db
from .auth import source_required

blp = Blueprint("source", __name__, url_prefix="/v1/source",
                description="Action sources: transport operators, leisure centres")

SIGNED = [{"apiKey": []}]
SIGNATURE_HEADER = {
    "in": "header",
    "name": "X-Signature",
    "required": True,
    "schema": {"type": "string"},
    "description": 't=<unix seconds>,v1=<hex HMAC-SHA256(signing_secret, "<t>.<raw body>")>',
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
    reason = fields.String(allow_none=True)
    points = fields.Integer()


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
    `duplicate` (same external_ref seen before) or `rejected` with the reason."""
    # Items are validated one by one (a bad item must not sink the batch), so the
    # body is read here rather than through a strict schema.
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the JSON parser goes
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        abort(422, message='The body must be {"items": [...]}.',
              errors={"items": ["A list of actions is required."]})
    items = body["items"]
    limit = current_app.config["MAX_BATCH_ITEMS"]
    if len(items) > limit:
        abort(413, message=f"A batch carries at most {limit} items; this one has {len(items)}.")
    outcome = ingest_batch(db.session, g.source, items)
    return {"results": outcome.results}
