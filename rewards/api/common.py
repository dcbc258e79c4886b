"""Helpers shared by the API blueprints: pagination, idempotent POSTs, audit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from flask import Response, g, jsonify, request
from flask_smorest import abort
from marshmallow import Schema, fields
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import AuditEntry, IdempotencyRecord


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
    without committing. The first answer is stored with the change, in the same
    transaction; a retry with the same key and body gets it back, a retry with
    another body is 422. Two concurrent first tries: one commits, the other
    fails on the unique key, rolls back its change and replays the winner."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200):
        abort(422, message="Idempotency-Key must be 1 to 200 characters.")
    digest = hashlib.sha256(request.get_data(cache=True)).hexdigest()
    if key:
        replay = _replay(scope, key, digest)
        if replay is not None:
            return replay
    body, status = produce()
    if key:
        db.session.add(
            IdempotencyRecord(scope=scope, key=key, request_hash=digest,
                              status_code=status, response=body)
        )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if key:
            replay = _replay(scope, key, digest)
            if replay is not None:
                return replay
        raise
    response = jsonify(body)
    response.status_code = status
    return response


def _replay(scope: str, key: str, digest: str) -> Response | None:
    record = db.session.scalar(
        select(IdempotencyRecord).where(IdempotencyRecord.scope == scope,
                                        IdempotencyRecord.key == key)
    )
    if record is None:
        return None
    if record.request_hash != digest:
        db.session.rollback()
        abort(422, message="This Idempotency-Key was used with a different request body.")
    db.session.rollback()
    response = jsonify(record.response)
    response.status_code = record.status_code
    response.headers["Idempotent-Replayed"] = "true"
    return response
