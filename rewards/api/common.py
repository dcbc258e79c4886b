"""Helpers shared by the API blueprints: pagination, idempotent POSTs, audit."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache, wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Response, g, jsonify, request
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError

from .. import reads
from ..extensions import db, reading_only
from ..jobs import discard_pending
from ..models import AuditEntry, IdempotencyRecord
from ..reasons import Reason

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
    page = fields.Integer(load_default=1, validate=lambda n: 1 <= n <= 1_000_000)
    page_size = fields.Integer(load_default=20, validate=lambda n: 1 <= n <= 100)


def paginate(stmt: Select[Any], pagination_parameters: Any) -> list[Any]:
    """Run a select of one entity for one page and tell flask-smorest the total for
    X-Pagination."""
    return [row[0] for row in page_rows(stmt, pagination_parameters)]


def page_of(items: list[Any], pagination_parameters: Any) -> list[Any]:
    """One page of a short list already in memory (a few keys), with its total for
    X-Pagination."""
    pagination_parameters.item_count = len(items)
    start = (pagination_parameters.page - 1) * pagination_parameters.page_size
    return items[start:start + pagination_parameters.page_size]


def page_rows(stmt: Select[Any], pagination_parameters: Any) -> list[Any]:
    """One page of `stmt`'s rows, with the total for X-Pagination counted in the same
    query (a window over the whole result, before LIMIT); a separate count only for a
    page past the end. The rows carry the total as a last extra column."""
    page, size = pagination_parameters.page, pagination_parameters.page_size
    rows = db.session.execute(stmt.add_columns(func.count().over().label("_total"))
                              .limit(size).offset((page - 1) * size)).all()
    if rows:
        total = rows[0][-1]
    else:
        total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None)
                                                                   .subquery()))
    pagination_parameters.item_count = int(total or 0)
    return rows


def reads_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """For views that only read, each answer from one statement or from statements that
    need not agree to the instant: on PostgreSQL their statements run in autocommit, so
    the request spends no round trip on BEGIN or ROLLBACK, those run by `reads` on the
    process's own read connection without a session (rewards/reads.py). Put it above
    the authentication decorator, so the caller's lookup runs so too."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = reading_only.set(True)
        try:
            return view(*args, **kwargs)
        finally:
            reading_only.reset(token)

    return wrapper


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
        abort(422, message="Idempotency-Key must be 1 to 200 characters.",
              errors={"Idempotency-Key": ["1 to 200 characters."]})
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
        abort(422, message="This Idempotency-Key was used with a different request body.",
              reason=Reason.IDEMPOTENCY_KEY_REUSED)
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


# -- keyset pages: a cursor names the last row seen, so new rows never shift a page ----------

class CursorArgs(Schema):
    cursor = fields.String(validate=validate.Length(min=1, max=200), metadata={
        "description": "From X-Next-Cursor of the previous page. With a cursor, `page` is "
                       "ignored and rows added since do not shift what follows."})


def _encode_cursor(moment: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([moment.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, row_id = json.loads(raw)
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None:
            raise ValueError("naive")
        # In UTC here, as the column binds it: an offset that takes year 1 or 9999
        # past datetime's range fails now (a 422), not while the query is built.
        return when.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        abort(422, message="The cursor is not one this API gave out.",
              errors={"cursor": ["Not a valid cursor."]})
        raise  # unreachable: abort raises


def _count(stmt: Select[Any], params: dict[str, Any] | None = None) -> int:
    return int(db.session.scalar(select(func.count()).select_from(stmt.order_by(None)
                                                                   .subquery()),
                                 params or {}) or 0)


@cache
def _numbered(stmt: Select[Any]) -> Select[Any]:
    """`stmt` with its total as a window and the page as parameters, built once for a
    statement built once."""
    return (stmt.add_columns(func.count().over().label("_total"))
            .offset(bindparam("_offset")).limit(bindparam("_limit")))


def keyset_page(stmt: Select[Any], moment: Any, row_id: Any, cursor: str | None,
                pagination_parameters: Any, scalars: bool = True,
                params: dict[str, Any] | None = None) -> tuple[list[Any], dict]:
    """One page of `stmt`, ordered newest `moment` first then by `row_id`: after
    `cursor` when given, else by page number (X-Pagination has the total). The
    headers carry the next page's cursor (X-Next-Cursor, and Link) when one follows.
    With `params` (its bound values), `stmt` must be built once, not per request: the
    numbered page's statement is then built once too."""
    size = pagination_parameters.page_size
    if cursor is None:
        # A numbered page (the first, usually): the total comes in the page's own
        # statement, a window over the whole result before LIMIT (one round trip).
        if params is not None:
            found = reads.rows(_numbered(stmt), {
                **params, "_offset": (pagination_parameters.page - 1) * size,
                "_limit": size + 1})
        else:
            found = db.session.execute(stmt.add_columns(func.count().over().label("_total"))
                                       .offset((pagination_parameters.page - 1) * size)
                                       .limit(size + 1)).all()
        total = found[0][-1] if found else _count(stmt, params)
        # Rows keep the total as an extra field, which no response schema declares.
        rows = [row[0] for row in found] if scalars else found
    else:
        total = _count(stmt, params)
        last_moment, last_id = _decode_cursor(cursor)
        stmt = stmt.where(or_(moment < last_moment,
                              and_(moment == last_moment, row_id > last_id)))
        result = db.session.execute(stmt.limit(size + 1), params or {})
        rows = list(result.scalars() if scalars else result.all())
        # A page after a cursor has no number: X-Pagination says the totals only, and
        # the next page is X-Next-Cursor's (a next_page number would re-read rows).
        pagination_parameters.page = None
    pagination_parameters.item_count = int(total or 0)
    headers: dict[str, str] = {}
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        key = moment.key, row_id.key
        following = _encode_cursor(getattr(last, key[0]), getattr(last, key[1]))
        headers["X-Next-Cursor"] = following
        query = {**request.args, "cursor": following}
        query.pop("page", None)
        headers["Link"] = f'<{request.base_url}?{urlencode(query)}>; rel="next"'
    return rows, headers
