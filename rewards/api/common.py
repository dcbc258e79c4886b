"""Helpers shared by the API blueprints: pagination, idempotent POSTs, audit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Response, g, jsonify, request
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..jobs import discard_pending
from ..models import AuditEntry, IdempotencyRecord

# The largest number an INTEGER column holds (PostgreSQL's, 32 bits): every whole
# number a client sends is bounded by it at most, so none reaches the database as a 500.
DB_INT_MAX = 2**31 - 1


def counted(minimum: int = 0, maximum: int = DB_INT_MAX) -> validate.Range:
    """The bounds of a count, limit or budget a client sends."""
    return validate.Range(min=minimum, max=maximum)


# Moments a client sends: from 2000 to 2999 (UTC). Outside that, converting to UTC or
# adding a window can overflow Python's datetime (a 500), and no scheme needs them.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)


class Moment(fields.AwareDateTime):
    """An RFC 3339 moment with its offset, between EARLIEST and LATEST."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            in_utc = moment.astimezone(UTC)
        except OverflowError:
            in_utc = None
        if in_utc is None or not EARLIEST <= in_utc <= LATEST:
            raise ValidationError(f"Must be between {EARLIEST:%Y-%m-%d} and "
                                  f"{LATEST:%Y-%m-%d} (UTC).")
        return moment


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=lambda n: n >= 1)
    page_size = fields.Integer(load_default=20, validate=lambda n: 1 <= n <= 100)


def paginate(stmt: Select[Any], pagination_parameters: Any) -> list[Any]:
    """Run a select for one page and tell flask-smorest the total for X-Pagination."""
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    pagination_parameters.item_count = int(total or 0)
    page, size = pagination_parameters.page, pagination_parameters.page_size
    return list(db.session.scalars(stmt.limit(size).offset((page - 1) * size)))


def audit(action: str, target_type: str, target_id: Any, **details: Any) -> None:
    caller = g.caller
    db.session.add(
        AuditEntry(
            actor_id=caller.id,
            actor_role=caller.role,
            action=action,
            target_type=target_type,
            target_id=str(target_id) if target_id is not None else None,
            details=json.loads(json.dumps(details, default=str)),
        )
    )


def idempotent(scope: str, produce: Callable[[], tuple[dict[str, Any], int]]) -> Response:
    """Run a POST that moves points at most once per Idempotency-Key.

    `produce` does the work in the open transaction and returns (body, status)
    without committing (on a refusal it may roll back and abort). The key is taken
    first, by inserting its row before `produce` runs, and the answer is stored in
    that row with the change, in one transaction. A retry with the same key and body
    gets the first answer back; with another body it is 422. Two concurrent first
    tries: on PostgreSQL the second insert waits on the unique key until the first
    commits, then fails, so the loser never runs `produce` against the winner's new
    state (it would see the points already spent); it rolls back and replays the
    winner's answer. SQLite serialises the two requests whole."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200):
        abort(422, message="Idempotency-Key must be 1 to 200 characters.")
    if not key:
        body, status = produce()
        db.session.commit()
        return _respond(body, status)
    digest = _request_digest()
    replay = _replay(scope, key, digest)
    if replay is not None:
        return replay
    record = IdempotencyRecord(scope=scope, key=key, request_hash=digest,
                               status_code=0, response={})
    db.session.add(record)
    try:
        db.session.flush()
    except IntegrityError as error:
        return _replay_winner(scope, key, digest, error)
    body, status = produce()
    record.status_code = status
    record.response = body
    try:
        db.session.commit()
    except IntegrityError as error:  # the key is ours already; something else clashed
        return _replay_winner(scope, key, digest, error)
    return _respond(body, status)


def _request_digest() -> str:
    """The body's fingerprint: JSON compared by content, not by spacing or key order."""
    data = request.get_json(silent=True, cache=True)
    if data is None:
        raw = request.get_data(cache=True)
    else:
        raw = json.dumps(data, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode()
    return hashlib.sha256(raw).hexdigest()


def _respond(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _replay_winner(scope: str, key: str, digest: str, error: IntegrityError) -> Response:
    """Another request with this key committed first: undo ours (and the jobs it
    queued), answer with theirs. Any other clash is a real error."""
    db.session.rollback()
    discard_pending()
    replay = _replay(scope, key, digest)
    if replay is None:
        raise error
    return replay


def _replay(scope: str, key: str, digest: str) -> Response | None:
    record = db.session.scalar(
        select(IdempotencyRecord).where(IdempotencyRecord.scope == scope,
                                        IdempotencyRecord.key == key)
    )
    if record is None:
        return None
    same_body, body, status = record.request_hash == digest, record.response, record.status_code
    db.session.rollback()  # end the transaction; read before, as rollback expires the row
    if not same_body:
        abort(422, message="This Idempotency-Key was used with a different request body.")
    response = _respond(body, status)
    response.headers["Idempotent-Replayed"] = "true"
    return response


Row = TypeVar("Row")


def found_or_404(model: type[Row], key: Any, message: str, *, lock: bool = False) -> Row:
    """The row of `model` with primary key `key` (locked FOR UPDATE with `lock`), or a
    404 saying `message`."""
    row = db.session.get(model, key, with_for_update=lock or None)
    if row is None:
        abort(404, message=message)
    return row
