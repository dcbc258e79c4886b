"""Shared extension objects: created here without side effects, bound in create_app."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import flask_smorest
import orjson
from flask import Flask, current_app, g, jsonify, request
from flask_smorest.pagination import PaginationMetadataSchema
from marshmallow import Schema, ValidationError, fields, validate
from redis import Redis
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

from .reasons import Reason, reason_for


def _whole_numbers_only() -> None:
    """marshmallow's Integer field (not strict) truncates 1.9 to 1: a cap, a budget, a
    number of days given with a fraction was taken as a smaller one, silently. Every
    Integer field the API reads now refuses a number with a fraction (2.0 is still 2);
    strict fields refuse any float, as before."""
    import math

    plain = fields.Integer._validated

    def validated(self: fields.Integer, value: Any) -> int:
        if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
            raise self.make_error("invalid", input=value)
        return plain(self, value)

    fields.Integer._validated = validated  # type: ignore[method-assign]


_whole_numbers_only()

log = logging.getLogger(__name__)


# Set while a view that only reads runs (rewards.api.common.reads_only): on
# PostgreSQL its statements need no transaction.
reading_only: ContextVar[bool] = ContextVar("reading_only", default=False)


class _Session(Session):
    """A session that, while `reading_only` is set, takes its connection (if it needs
    one at all) in autocommit: a read-only request spends no round trip on BEGIN or
    ROLLBACK, and one that never touches the session checks nothing out."""

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        bind = super().get_bind(*args, **kwargs)
        if reading_only.get() and bind.dialect.name == "postgresql":
            return db.autocommit_for(bind)
        return bind


class Database:
    """One engine and a scoped session per process; the session is removed when
    the app context ends so every request and job starts clean."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        # An engine and the same engine in autocommit (its pool and events).
        self._autocommit: tuple[Any, Engine] | None = None
        self.session: scoped_session[Session] = scoped_session(
            sessionmaker(class_=_Session, expire_on_commit=False)
        )

    def init_app(self, app: Flask) -> None:
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        if self.engine is not None:
            self.session.remove()
            self.engine.dispose()
        self.engine = make_engine(url, pre_ping=app.config.get("DATABASE_PRE_PING", True))
        self.session.configure(bind=self.engine)
        app.extensions["db"] = self

        @app.teardown_appcontext
        def _remove_session(exc: BaseException | None) -> None:
            self.session.remove()

    def autocommit_for(self, engine: Any) -> Engine:
        """`engine` with its connections in autocommit: its own pool and events."""
        known = self._autocommit
        if known is None or known[0] is not engine:
            known = self._autocommit = (engine,
                                        engine.execution_options(isolation_level="AUTOCOMMIT"))
        return known[1]

    @property
    def dialect(self) -> str:
        assert self.engine is not None, "database not bound: call create_app() first"
        return self.engine.dialect.name

    def after_fork(self) -> None:
        """In a forked child (an RQ work horse, a gunicorn worker): never touch the
        parent's connections. The inherited session is set aside unclosed (closing or
        collecting it would end the parent's transaction on their shared socket) and
        the pool forgets the parent's connections without closing them."""
        if self.session.registry.has():
            _inherited_sessions.append(self.session.registry())
            self.session.registry.clear()
        if self.engine is not None:
            self.engine.dispose(close=False)


# Sessions a forked child inherited: kept referenced so they are never closed there.
_inherited_sessions: list[Session] = []


def _after_fork_in_child() -> None:
    db.after_fork()


def _json_loads(data: str | bytes) -> Any:
    """JSON columns as psycopg reads them: orjson (the catalogue alone parses sixty
    documents a request), the standard library for what orjson refuses (integers
    beyond 64 bits), so a stored document always reads back."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def make_engine(url: str, pre_ping: bool = True) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               hide_parameters=True)

        # pysqlite's own transaction handling starts transactions late; take the write
        # lock at BEGIN so two claims cannot both read a balance and then both write.
        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    from psycopg.types.json import set_json_loads

    set_json_loads(_json_loads)
    # Without pre-ping (the API, DATABASE_PRE_PING=0) a connection that died (the
    # database restarted) fails its first statement; SQLAlchemy then discards every
    # pooled connection older than the failure, the request answers 503 with
    # Retry-After having changed nothing (its transaction never reached the database),
    # and the next request connects afresh. pool_recycle retires connections before
    # any idle timeout between here and the database closes them.
    # hide_parameters: a statement's error (logged when the database goes away) names
    # its values, residents' addresses and codes among them; the logs must not.
    #
    # A database that cannot be reached must not hold a request until gunicorn's own
    # timeout kills the worker: connecting gives up after DATABASE_CONNECT_TIMEOUT
    # seconds, a connection whose sent data goes unacknowledged (the host gone, a
    # network cut, a fail-over to another address) is closed after
    # DATABASE_TCP_TIMEOUT seconds, keepalives notice an idle one that died, and
    # waiting for a pooled connection gives up after DATABASE_POOL_TIMEOUT seconds.
    # Each is an error answered 503 with Retry-After.
    #
    # None of those notices a server that takes the data and never answers (a paused or
    # hung server, a proxy or firewall that holds the connection open, a partition
    # behind a NAT): the kernel at the other end acknowledges every packet. With
    # DATABASE_QUERY_TIMEOUT set (the API sets it: rewards/gunicorn_conf.py), a round
    # trip that has no answer in that many seconds closes its connection and fails
    # with OperationalError, answered 503 like the rest, rather than holding the
    # worker until gunicorn kills it and the client's connection with it.
    connect_args = {"connect_timeout": _env_seconds("DATABASE_CONNECT_TIMEOUT", 5),
                    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                    "keepalives_count": 3,
                    "tcp_user_timeout": 1000 * _env_seconds("DATABASE_TCP_TIMEOUT", 30)}
    engine = create_engine(url, pool_pre_ping=pre_ping, pool_recycle=POOL_RECYCLE_SECONDS,
                           pool_size=10, max_overflow=20, hide_parameters=True,
                           pool_timeout=_env_seconds("DATABASE_POOL_TIMEOUT", 10),
                           connect_args=connect_args)
    query_timeout = _query_timeout()
    if query_timeout:
        connection_class = _deadline_connection(query_timeout)

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            return connection_class.connect(*cargs, **cparams)

    return engine


def _query_timeout() -> float:
    """DATABASE_QUERY_TIMEOUT in seconds; 0 (the default outside the API): no limit."""
    try:
        return max(0.0, float(os.environ.get("DATABASE_QUERY_TIMEOUT") or 0))
    except ValueError:
        return 0.0


def _deadline_connection(seconds: float) -> Any:
    """A psycopg connection whose every wait for the server (a statement, its rows, a
    commit) gives up after `seconds`: the connection is closed (its state is unknown;
    SQLAlchemy sees it closed and starts the pool afresh) and OperationalError raised."""
    import psycopg
    from psycopg import errors

    class DeadlineConnection(psycopg.Connection):  # type: ignore[type-arg]
        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            try:
                return super().wait(gen, interval=interval,
                                    timeout=seconds if timeout is None else timeout)
            except errors._WaitTimeout:
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"the database did not answer within {seconds:g} seconds") from None

    return DeadlineConnection


def _env_seconds(name: str, default: int) -> int:
    import os

    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


POOL_RECYCLE_SECONDS = 1800


def _flatten_errors(errors: Any) -> Any:
    """webargs nests validation errors by location; clients want field -> messages."""
    if isinstance(errors, dict) and set(errors) <= {"json", "query", "headers", "form", "files"}:
        if len(errors) == 1:
            return next(iter(errors.values()))
    return errors


class ErrorSchema(Schema):
    """The one error body: every 4xx and 5xx the API sends has this shape."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    status = fields.String(required=True, metadata={"description": "The HTTP status name."})
    reason = fields.String(required=True, validate=validate.OneOf([r.value for r in Reason]),
                           metadata={"description": "Why, as a stable code to branch on "
                                                    "(docs/api.md lists them)."})
    message = fields.String(required=True, metadata={
        "description": "Why, in words for a person, in the caller's language."})
    errors = fields.Dict(keys=fields.String(), values=fields.Raw(), metadata={
        "description": "For 422: what is wrong with each field, by field name."})


def error_response(code: int, message: str, errors: Any = None, headers: Any = None,
                   reason: str | None = None):
    payload: dict[str, Any] = {
        "code": code,
        "status": _status_name(code),
        "reason": reason_for(code, reason),
        "message": message,
    }
    if errors or code == 422:
        payload["errors"] = errors or {}  # a 422 always has the object clients index by field
    if code == 401:
        # HTTP requires the challenge on a 401; some client stacks act only on it.
        headers = dict(headers or {})
        challenge = 'Bearer realm="api"'
        if payload["reason"] in ("invalid_token", "session_ended"):
            challenge += ', error="invalid_token"'
        headers.setdefault("WWW-Authenticate", challenge)
    return jsonify(payload), code, headers or {}


def _status_name(code: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


class Api(flask_smorest.Api):
    """flask-smorest's Api with one JSON error shape for every error, even ones
    raised outside a view (unknown route, too-large body, unexpected exception)."""

    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app: Flask, *args: Any, **kwargs: Any) -> None:
        super().init_app(app, *args, **kwargs)

        @app.before_request
        def _refuse_long_urls() -> Any:
            # gunicorn's own limit (limit_request_line) sits above this one, so a long
            # address gets this JSON answer rather than gunicorn's HTML page.
            limit = app.config.get("MAX_URL_LENGTH", 4096)
            if len(request.full_path) > limit:
                from .web.errors import page_error, wants_page

                if wants_page():
                    return page_error(414)
                return error_response(414, f"The address is longer than {limit} "
                                      "characters; send fewer or shorter query parameters.")
            return None

        @app.after_request
        def _language(response: Any) -> Any:
            from .api.language import finish

            return finish(response)

    def _register_error_handlers(self) -> None:
        self._app.register_error_handler(HTTPException, self.handle_http_exception)
        self._app.register_error_handler(Exception, self.handle_unexpected_exception)

    def handle_http_exception(self, error: HTTPException):
        data = getattr(error, "data", None) or {}
        code = error.code or 500
        if code >= 500 and isinstance(error, InternalServerError):
            original = getattr(error, "original_exception", None)
            if original is not None:
                return self.handle_unexpected_exception(original)
        message = data.get("message") or error.description or _status_name(code)
        if code == 422 and "message" not in data:
            message = "The request is not valid: see errors for each field."
        errors = _flatten_errors(data.get("errors") or data.get("messages"))
        if isinstance(errors, list) and all(isinstance(item, str) for item in errors):
            # Not field by field (webargs' "Invalid JSON body."): say it in the message.
            message, errors = " ".join(errors), None
        headers = dict(data.get("headers") or {})
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            # HTTP requires Allow on a 405; werkzeug only adds it to its own HTML page.
            headers.setdefault("Allow", ", ".join(error.valid_methods))
        from .web.errors import page_error, wants_page

        if wants_page():  # a person at a browser: a page, with the same status
            return page_error(code, headers)
        return error_response(code, message, errors, headers, data.get("reason"))

    def handle_unexpected_exception(self, error: Exception):
        if isinstance(error, HTTPException):
            return self.handle_http_exception(error)
        from .web.errors import page_error, wants_page

        if _database_unavailable(error):
            # The database is down or restarting: a client should come back shortly.
            current_app.logger.error("database unavailable: %s", error)
            _discard_session()
            if wants_page():  # a person at a browser: a page
                from flask import render_template

                from . import languages

                also = [{"lang": code, "dir": languages.direction(code),
                         "text": languages.reason_text("unavailable", code)}
                        for code in current_app.config.get("SCHEME_LANGUAGES", ())]
                also = [item for item in also if item["text"]]
                return (render_template("unavailable.html", also=also), 503,
                        {"Retry-After": DB_RETRY_AFTER, "Cache-Control": "no-store"})
            return error_response(503, "The service is briefly unavailable; please try "
                                       "again shortly.", headers={"Retry-After": DB_RETRY_AFTER})
        from .mail import MailUnavailable

        if isinstance(error, MailUnavailable):
            # The mail server is down or hung: whatever the request asked to be mailed
            # (a login code) is not on its way; the client can ask again shortly.
            _discard_session()
            if wants_page():
                return page_error(503, {"Retry-After": MAIL_RETRY_AFTER})
            return error_response(503, "Mail cannot be sent just now; please try again in "
                                       "a few minutes.", headers={"Retry-After": MAIL_RETRY_AFTER},
                                  reason=Reason.UNAVAILABLE.value)
        current_app.logger.exception("unhandled error", exc_info=error)
        if wants_page():
            return page_error(500)
        return error_response(500, "Something went wrong on our side; it has been logged.")


# Seconds a client is asked to wait when the database is unavailable.
DB_RETRY_AFTER = "5"
# Seconds a client is asked to wait when the mail server cannot be reached.
MAIL_RETRY_AFTER = "60"


def _database_unavailable(error: BaseException) -> bool:
    """Errors that mean the database cannot be reached (down, restarting, connection
    lost, pool exhausted), not that a statement was wrong."""
    from sqlalchemy import exc

    if isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and _database_unavailable(cause)


def _discard_session() -> None:
    try:
        db.session.rollback()
    except Exception:  # the connection is gone; removing the session is what matters
        pass
    db.session.remove()
    # The caller's entity is detached now, its attributes expired by the rollback: what
    # runs after the view (the answer's language reads the member's locale) would try
    # to load them and fail, turning this 503 into a 500.
    g.pop("member", None)
class OneSchemaParser(FlaskParser):
    """webargs makes a new schema from a schema class on every request (marshmallow
    deep-copies its fields each time: about as much Python as a resident's read); a
    schema does not change between requests, so each class is made once."""

    _made: dict[type, Any] = {}

    def _get_schema(self, argmap: Any, req: Any) -> Any:
        if isinstance(argmap, type) and issubclass(argmap, Schema):
            schema = self._made.get(argmap)
            if schema is None:
                schema = self._made[argmap] = argmap()
            return schema
        return super()._get_schema(argmap, req)


NOT_JSON = "The body must be JSON, sent with Content-Type: application/json."
NUMBER_TOO_LONG = (f"The body holds a number longer than {sys.get_int_max_str_digits()} "
                   "digits.")


class StorableParser(OneSchemaParser):
    """Arguments the database can store: a JSON body or query string with a NUL
    character or half a UTF-16 surrogate pair anywhere is a 422, field by field, before
    any view sees it (PostgreSQL refuses both in text and JSON)."""

    def load_json(self, req: Any, schema: Any) -> Any:
        """A body of another type where JSON is expected is 422 (invalid input, as the
        API names every body it cannot take), not read as no body: that answered a
        change sent as text/plain or a form with 200 and nothing changed."""
        from .hardening import has_body

        if not req.is_json and has_body(req.environ):
            raise ValidationError({"body": [NOT_JSON]})
        try:
            return super().load_json(req, schema)
        except ValueError as error:
            # Not a syntax error (webargs answers those, 400): JSON that Python will
            # not read, an integer longer than sys.get_int_max_str_digits() allows.
            if isinstance(error, json.JSONDecodeError):
                raise
            raise ValidationError({"body": [NUMBER_TOO_LONG]}) from None

    def _load_location_data(self, *, schema: Any, req: Any, location: str) -> Any:
        data = super()._load_location_data(schema=schema, req=req, location=location)
        from .api.checks import (
            TEXT_PROBLEM,
            UNKNOWN_NAMED,
            more_values_than,
            storable_json,
            unknown_fields,
        )

        # A body of a hundred thousand values (unknown keys, list items) cost seconds to
        # read field by field and answered an error for each, twice the body's size:
        # refused whole here, in one error, before the schema reads any of it.
        most = current_app.config.get("JSON_MAX_VALUES", 5000)
        if isinstance(data, Mapping | list) and more_values_than(data, most):
            raise ValidationError({"body": [f"The body holds more than {most} values."]})
        unknown = unknown_fields(schema, data, self.DEFAULT_UNKNOWN_BY_LOCATION.get(location))
        if len(unknown) > UNKNOWN_NAMED:
            raise ValidationError({"_schema": [
                f"{len(unknown)} fields this request does not take, such as "
                f"{', '.join(repr(name) for name in unknown[:3])}."]})

        if isinstance(data, MultiDict):
            pairs: Any = data.items(multi=True)
        elif isinstance(data, Mapping):
            pairs = data.items()
        else:
            pairs = [("_schema", data)]
        problems: dict[str, list[str]] = {}
        for key, value in pairs:
            try:
                storable_json({key: value})
            except ValidationError as error:
                name = key if isinstance(key, str) and "\x00" not in key else "_schema"
                problems[name] = [TEXT_PROBLEM] if "NUL" in str(error.messages) else list(
                    error.messages)
        if problems:
            raise ValidationError(problems)
        return data


class Blueprint(flask_smorest.Blueprint):
    """Place for project-wide blueprint behaviour."""

    ARGUMENTS_PARSER = StorableParser()
    PAGINATION_ARGUMENTS_PARSER = OneSchemaParser()

    @staticmethod
    def _make_pagination_metadata(page: int, page_size: int, item_count: int) -> Any:
        """flask-smorest's X-Pagination figures, dumped by one schema made once (its own
        makes a new one for every page)."""
        return _PAGINATION_METADATA.dump(pagination_figures(page, page_size, item_count))


def pagination_figures(page: int | None, page_size: int, item_count: int) -> dict[str, int]:
    """What flask-smorest's PaginationMixin._make_pagination_metadata counts (its schema
    dumps these integers as they are, in this order). `page` None: a page read after a
    cursor, which has no number (its next page is X-Next-Cursor's): the totals only."""
    figures = {"total": item_count, "total_pages": 0}
    if item_count == 0:
        return figures
    last_page = (item_count - 1) // page_size + 1
    figures.update(total_pages=last_page, first_page=1, last_page=last_page)
    if page is not None and page <= last_page:
        figures["page"] = page
        if page > 1:
            figures["previous_page"] = page - 1
        if page < last_page:
            figures["next_page"] = page + 1
    return figures


_PAGINATION_METADATA = PaginationMetadataSchema()


class RedisHolder:
    """Redis client created on first use, so importing and create_app never connect."""

    def get(self) -> Redis | None:
        app = current_app
        url = app.config.get("REDIS_URL")
        if not url:
            return None
        clients = app.extensions.setdefault("redis", {})
        client = clients.get(url)
        if client is None:
            client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
            clients[url] = client
        return client


db = Database()
api = Api()
redis = RedisHolder()
os.register_at_fork(after_in_child=_after_fork_in_child)


# Page numbers are bounded so that no offset overflows the database's 64-bit integers.
MAX_PAGE = 100_000  # no list is this long: past it an OFFSET is only a cost or a crash


def _bounded_pagination_schema(*args: Any) -> type[Schema]:
    unbounded = _smorest_pagination_schema(*args)

    class PaginationParametersSchema(unbounded):  # type: ignore[misc, valid-type]
        page = fields.Integer(load_default=args[0],
                              validate=validate.Range(min=1, max=MAX_PAGE))

    return PaginationParametersSchema


_smorest_pagination_schema = flask_smorest.pagination._pagination_parameters_schema_factory
flask_smorest.pagination._pagination_parameters_schema_factory = _bounded_pagination_schema
