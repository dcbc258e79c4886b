"""Council staff managing a source: its settings, API keys (rotation with an overlap) and
CSV uploads for operators without an API. Listing and registering sources is in admin.py."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, g
from flask.views import MethodView
from flask_smorest import abort
from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from ..actions.csv_import import (
    EXAMPLE_HEADER,
    UploadRefused,
    check_upload,
    report_csv,
    report_rows,
)
from ..actions.sources import SOURCE_KEYS, issue_key
from ..extensions import db
from ..jobs import enqueue
from ..models import ActionType, Source
from ..models.source import SourceImport
from . import key_rings
from .auth import BEARER, staff_required
from .checks import clean_text, storable_text
from .common import audit, found_or_404, page_of, paginate
from .uploads import UploadBlueprint, body_limit, read_upload

blp = UploadBlueprint("admin_sources", __name__, url_prefix="/v1/admin/sources",
                      description="A source's settings, API keys and CSV uploads")

MANAGE = ("scheme_manager",)


def _source(source_id: uuid.UUID) -> Source:
    return found_or_404(Source, source_id, "No such source.")


# -- the source ---------------------------------------------------------------------

class SourceDetail(Schema):
    id = fields.UUID()
    name = fields.String()
    action_types = fields.List(fields.String(), metadata={
        "description": "The action types this source may report; items of any other "
                       "type are rejected, saying which types it may send."})
    active = fields.Boolean()
    max_age_days = fields.Integer(allow_none=True, metadata={
        "description": "How old an item it may send, in days (null: the scheme's "
                       "ACTION_MAX_AGE_DAYS)."})
    created_at = fields.DateTime()


class SourcePatch(Schema):
    name = fields.String(validate=[validate.Length(min=1, max=200), storable_text])
    action_types = fields.List(fields.String(validate=storable_text),
                               validate=validate.Length(min=1))
    active = fields.Boolean(metadata={"description": "false: every key of the source stops "
                                                     "working until it is true again."})
    max_age_days = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=365))


@blp.route("/<uuid:source_id>")
class SourceItem(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, SourceDetail)
    @blp.alt_response(404, description="No such source")
    @staff_required(*MANAGE)
    def get(self, source_id: uuid.UUID):
        """A source's settings (never its keys or secrets)."""
        return _source(source_id)

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(SourcePatch)
    @blp.response(200, SourceDetail)
    @blp.alt_response(404, description="No such source")
    def patch(self, args: dict[str, Any], source_id: uuid.UUID):
        """Change a source's name, allowed action types, window or whether it is active."""
        source = _source(source_id)
        if "action_types" in args:
            codes = args["action_types"]
            known = set(db.session.scalars(select(ActionType.code)
                                           .where(ActionType.code.in_(codes))))
            missing = sorted(set(codes) - known)
            if missing:
                abort(422, message="Unknown action types.",
                      errors={"action_types": [f"unknown action type {c!r}" for c in missing]})
        for key, value in args.items():
            setattr(source, key, value)
        audit("update", "source", source.id, changed=sorted(args),
              **{k: v for k, v in args.items() if k != "name"})
        db.session.commit()
        return source


# -- keys ---------------------------------------------------------------------------

class SourceKeyOut(key_rings.KeyOut):
    key_prefix = key_rings.key_prefix_field("source")


class SourceKeyIssued(SourceKeyOut):
    api_key = fields.String(metadata={"description": "Shown in this answer only."})
    signing_secret = fields.String(metadata={"description": "Shown in this answer only."})
    previous_keys_end_at = fields.DateTime(allow_none=True, metadata={
        "description": "When the keys that worked until now stop (null: there were none)."})


class SourceKeyIn(Schema):
    overlap_days = key_rings.overlap_days_field(
        "How long the keys working now keep working beside the new one (0: they stop at "
        "once).")


@blp.route("/<uuid:source_id>/keys")
class Keys(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, SourceKeyOut(many=True))
    @blp.alt_response(404, description="No such source")
    @blp.paginate()
    @staff_required(*MANAGE)
    def get(self, source_id: uuid.UUID, pagination_parameters):
        """The source's API keys, newest first: prefix, state and times, never secrets."""
        return page_of(key_rings.listed(SOURCE_KEYS, _source(source_id)),
                       pagination_parameters)

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @blp.arguments(SourceKeyIn, required=False)
    @blp.response(201, SourceKeyIssued)
    @blp.alt_response(404, description="No such source")
    def post(self, args: dict[str, Any], source_id: uuid.UUID):
        """Rotate: issue a new API key and signing secret (shown only in this answer).

        The keys working now go on working for `overlap_days` (default 7), each with its
        own secret, so the source can switch over without a gap; then they stop."""
        source = _source(source_id)
        overlap = key_rings.overlap_of(args)
        issued = issue_key(db.session, source, overlap, created_by=g.caller.id)
        audit("rotate_key", "source", source.id, key_id=issued.key.id,
              key_prefix=issued.key.key_prefix, overlap_days=overlap.days)
        db.session.commit()
        return key_rings.issued_out(issued, signing_secret=issued.key.signing_secret)


@blp.route("/<uuid:source_id>/keys/<uuid:key_id>", methods=["DELETE"])
@blp.doc(security=BEARER)
@blp.response(204)
@blp.alt_response(404, description="No such source, or no such key of it")
@staff_required(*MANAGE)
def retire(source_id: uuid.UUID, key_id: uuid.UUID):
    """Retire a key at once (a leaked key): requests with it are 401 from now on. Retiring
    the only working key locks the source out until a new key is issued."""
    key_rings.retire_or_404(SOURCE_KEYS, _source(source_id), key_id, target_type="source",
                            action="retire_key", missing="The source has no such key.")


# -- CSV uploads --------------------------------------------------------------------

class SourceImportFile(Schema):
    file = Upload(required=True, metadata={
        "description": f"UTF-8 CSV with the header {EXAMPLE_HEADER} (attributes optional, "
                       "a JSON object per row); at most CSV_IMPORT_MAX_BYTES (5 MB) and "
                       "CSV_IMPORT_MAX_ROWS (50,000) rows."})


class SourceImportOut(Schema):
    id = fields.UUID()
    source_id = fields.UUID()
    filename = fields.String()
    size = fields.Integer()
    status = fields.String(metadata={"enum": ["queued", "running", "done", "failed"]})
    rows = fields.Integer(metadata={"description": "Data rows in the file."})
    rows_done = fields.Integer(metadata={"description": "Rows imported and reported so far."})
    accepted = fields.Integer(metadata={"description": "Recorded (held ones included)."})
    held = fields.Integer(metadata={"description": "Recorded but held for review by a "
                                                   "control; they award nothing until then."})
    duplicate = fields.Integer()
    rejected = fields.Integer(metadata={"description": "Malformed or refused; see the report."})
    points = fields.Integer()
    error = fields.String(allow_none=True)
    report_url = fields.Function(
        lambda upload: f"/v1/admin/sources/{upload.source_id}/imports/{upload.id}/report.csv",
        metadata={"type": "string"})
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


def _import(source_id: uuid.UUID, import_id: uuid.UUID) -> SourceImport:
    upload = db.session.scalar(select(SourceImport).where(SourceImport.id == import_id,
                                                          SourceImport.source_id == source_id))
    if upload is None:
        abort(404, message="No such import for this source.")
    return upload


@blp.route("/<uuid:source_id>/imports")
class Imports(MethodView):
    @blp.doc(security=BEARER)
    @blp.response(200, SourceImportOut(many=True))
    @blp.paginate()
    @staff_required(*MANAGE)
    def get(self, pagination_parameters, source_id: uuid.UUID):
        """The source's uploads, newest first."""
        _source(source_id)
        return paginate(select(SourceImport).where(SourceImport.source_id == source_id)
                        .order_by(SourceImport.created_at.desc(), SourceImport.id),
                        pagination_parameters)

    @blp.doc(security=BEARER)
    @staff_required(*MANAGE)
    @body_limit("CSV_IMPORT_MAX_BYTES")
    @blp.arguments(SourceImportFile, location="files")
    @blp.response(202, SourceImportOut)
    @blp.alt_response(404, description="No such source")
    @blp.alt_response(409, description="The source is not active")
    @blp.alt_response(413, description="The file is over the size or row limit")
    def post(self, args: dict[str, Any], source_id: uuid.UUID):
        """Upload a CSV of actions for a source without an API; a job imports it.

        The file is checked as a whole first (UTF-8, the header, the row limit: 422 or
        413, nothing imported). Then a job imports it through the same path as a signed
        batch, 1,000 rows at a time; each row's outcome (accepted, duplicate, rejected
        with the reason) is in the report. A malformed row changes nothing."""
        source = _source(source_id)
        if not source.active:
            abort(409, message="The source is not active; activate it before importing.")
        config = current_app.config
        storage = args["file"]
        content = read_upload(storage, config["CSV_IMPORT_MAX_BYTES"], "file")
        try:
            rows = check_upload(content, config["CSV_IMPORT_MAX_ROWS"])
        except UploadRefused as refused:
            abort(refused.status, message=refused.message, reason=refused.reason)
        filename = clean_text((storage.filename or "upload.csv").replace("\\", "/")
                              .rsplit("/", 1)[-1]) or "upload.csv"
        upload = SourceImport(id=uuid.uuid4(), source_id=source.id, filename=filename[:200],
                              size=len(content), content=content, status="queued",
                              uploaded_by=g.caller.id, rows=rows, rows_done=0, accepted=0,
                              held=0, duplicate=0, rejected=0, points=0)
        db.session.add(upload)
        enqueue("workers.imports.import_csv", import_id=str(upload.id))
        db.session.flush()
        audit("import_csv", "source", source.id, import_id=upload.id, rows=rows,
              filename=upload.filename)
        db.session.commit()
        return upload


@blp.route("/<uuid:source_id>/imports/<uuid:import_id>")
@blp.doc(security=BEARER)
@blp.response(200, SourceImportOut)
@blp.alt_response(404, description="No such import for this source")
@staff_required(*MANAGE)
def get_import(source_id: uuid.UUID, import_id: uuid.UUID):
    """An upload's status and counts."""
    return _import(source_id, import_id)


@blp.route("/<uuid:source_id>/imports/<uuid:import_id>/report.csv")
@blp.doc(security=BEARER)
@blp.response(200, content_type="text/csv",
              description="row,external_ref,status,reason,action_id: one line per data row")
@blp.alt_response(404, description="No such import for this source")
@staff_required(*MANAGE)
def import_report(source_id: uuid.UUID, import_id: uuid.UUID):
    """The per-row report: row (as a spreadsheet numbers it, the header is 1),
    external_ref, status (accepted, duplicate or rejected), reason and action_id. Rows
    appear as they are imported; cells a spreadsheet would run as formulas start with '."""
    upload = _import(source_id, import_id)
    body = report_csv(report_rows(db.session, upload.id))
    stem = upload.filename.rsplit(".", 1)[0] or "upload"
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:80]
    return Response(body, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{safe}-report.csv"'})
