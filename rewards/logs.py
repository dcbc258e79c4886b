"""Logs: one line per record, JSON (LOG_FORMAT=json, the default outside development) or
text, each carrying the request id of the request or job it belongs to.

A request's id is its `X-Request-Id` header when that is a sane token, otherwise a new
one; it is echoed in the response's `X-Request-Id`. Jobs handed to RQ carry it in their
metadata (rewards.jobs) and a worker restores it while the job runs (workers.job), so a
voucher issued in the background logs under the id of the claim that asked for it."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from flask import Flask

HEADER = "X-Request-Id"
ENVIRON_KEY = "HTTP_X_REQUEST_ID"  # the header as a WSGI server passes it
_SANE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_HANDLER_MARK = "_rewards_handler"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def current_request_id() -> str | None:
    """The id of the request or job running now (None outside both)."""
    return _request_id.get()


@contextmanager
def request_id_set(value: str | None) -> Iterator[None]:
    token = _request_id.set(value)
    try:
        yield
    finally:
        _request_id.reset(token)


def new_request_id() -> str:
    return os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID


class RequestIdFilter(logging.Filter):
    """Gives every record a `request_id` attribute ("-" outside a request or job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, and
    the exception's traceback as `exc` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id and request_id != "-":
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str, log_format: str) -> None:
    """One handler on the root logger (stderr), replaced rather than added to when the
    app is built again in the same process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level)


def init_app(app: Flask) -> None:
    """Request ids on every request and response."""
    app.wsgi_app = RequestIds(app.wsgi_app)  # type: ignore[method-assign]


class RequestIds:
    """WSGI middleware: the request's id is set before Flask sees the request (so every
    hook and log line has it), echoed in the answer's X-Request-Id and unset when the
    app has answered. Around the app rather than three Flask hooks: each of those read
    and wrote Flask's `g` and the request's headers through context-local proxies, and
    a missing X-Request-Id cost werkzeug an exception; together 0.09 M instructions of
    a resident's claim."""

    def __init__(self, wsgi_app: Callable[..., Any]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        given = environ.get(ENVIRON_KEY)
        value = given if given and _SANE.match(given) else new_request_id()

        def echoing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append((HEADER, value))
            return start_response(status, headers, exc_info)

        token = _request_id.set(value)
        try:
            return self.wsgi_app(environ, echoing)
        finally:
            _request_id.reset(token)
