"""What every response carries and what every request is checked for before a view runs:
security headers, a limit on how deeply a JSON body may nest (Python's parser would
otherwise recurse until it fails), and no NUL character where a view would read it into
a query (PostgreSQL refuses it in text)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from flask import Flask, request
from flask_smorest import abort
from werkzeug.exceptions import HTTPException

from .api.checks import TEXT_PROBLEM

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")

# JSON answers are never a page; the HTML pages load nothing but their own origin's
# files (inline <style> blocks only, no scripts from anywhere else), and no page of this
# origin can be framed (clickjacking of the partner redemption page).
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def json_depth(raw: bytes, most: int = 1000) -> int:
    """How deeply arrays and objects nest in a JSON text (0 for a scalar), counted up
    to `most` + 1 (for an unbalanced text, which is not JSON, its deepest opening).
    Bytes operations only, about what parsing a 1,000-item batch costs (bench/
    json_depth.py), never recursing: strings are dropped (escaped
    backslashes and quotes first, then every other piece between quotes is outside),
    brackets kept as one kind, then each pass removes the innermost pairs."""
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(_ONE_KIND, _NOT_BRACKETS)
    depth = 0
    while brackets:
        if depth > most:
            return depth
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # unbalanced (not JSON): the deepest opening
            return depth + max(itertools.accumulate(1 if b == 91 else -1 for b in brackets))
        brackets, depth = shorter, depth + 1
    return depth


HSTS = "max-age=31536000"

# Headers every answer carries unless its view set its own (a page its own policy).
_ALWAYS = (("x-content-type-options", "X-Content-Type-Options", "nosniff"),
           ("x-frame-options", "X-Frame-Options", "DENY"),
           ("referrer-policy", "Referrer-Policy", "no-referrer"))


def has_body(environ: dict[str, Any]) -> bool:
    """Whether the request sends a body: a length over 0, or chunked (no length; the
    server marks the input as ending with the body). Read from the WSGI environ:
    werkzeug's content_length looks for Transfer-Encoding by raising and catching an
    error when it is missing, a sixth of this check's cost on every JSON request."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return False


class SecurityHeaders:
    """WSGI middleware adding the security headers to every answer as it is sent: a
    plain list of header pairs there, rather than werkzeug's checked headers object and
    a parse of the content type in an after-request hook."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        # An answer to a request that carried credentials is that caller's: a browser,
        # a proxy or a disk cache must not keep it (figures, exports, a member's data)
        # unless its view said how it may be kept (rewards/api/caching.py).
        credentialed = "HTTP_AUTHORIZATION" in environ or "HTTP_X_API_KEY" in environ
        # Over HTTPS (as the nearest trusted proxy saw it, TRUSTED_PROXIES), browsers are
        # told to use nothing else for a year: a later http:// link or a stripped
        # redirect cannot send the partner page's cookie or a login in clear.
        secure = environ.get("wsgi.url_scheme") == "https"

        def securing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower(): value for name, value in headers}
            for lowered, name, value in _ALWAYS:
                if lowered not in present:
                    headers.append((name, value))
            if credentialed and "cache-control" not in present:
                headers.append(("Cache-Control", "no-store"))
            if secure and "strict-transport-security" not in present:
                headers.append(("Strict-Transport-Security", HSTS))
            if "content-security-policy" not in present:
                kind = present.get("content-type", "").partition(";")[0].strip().lower()
                headers.append(("Content-Security-Policy",
                                PAGE_CSP if kind == "text/html" else API_CSP))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, securing)


def init_app(app: Flask) -> None:
    @app.before_request
    def _limit_json_nesting() -> None:
        if not request.is_json or not has_body(request.environ):
            return
        limit = int(app.config.get("JSON_MAX_DEPTH", 32))
        if json_depth(request.get_data(cache=True), limit) > limit:
            # 422 like any other body the API cannot take (API.md lists no 400).
            problem = f"The JSON body nests more than {limit} levels deep."
            abort(422, message=problem, errors={"body": [problem]})

    @app.before_request
    def _refuse_nul() -> None:
        """A NUL in the path (a code or name looked up), a query argument, a page's form
        field or the Idempotency-Key cannot match anything stored, and PostgreSQL
        refuses it in a statement: refused here, the same on every database. JSON bodies
        are checked field by field by the arguments' parser (StorableParser); multipart
        bodies are left to their views, which set how large they may be first."""
        # Read from the WSGI environ: every request passes here, and a query string
        # without "%00" holds no NUL to find.
        environ = request.environ
        if "\x00" in environ.get("PATH_INFO", ""):
            abort(404)
        if "%00" in environ.get("QUERY_STRING", ""):
            # The value a view reads (the first of a repeated argument), field by field,
            # as the arguments' parser says it.
            named = {name if "\x00" not in name else "_schema"
                     for name, value in request.args.items()
                     if "\x00" in name or "\x00" in value}
            if named:
                abort(422, errors={name: [TEXT_PROBLEM] for name in sorted(named)})
        if "\x00" in environ.get("HTTP_IDEMPOTENCY_KEY", ""):
            abort(422, errors={"Idempotency-Key": [TEXT_PROBLEM]})
        if environ.get("CONTENT_TYPE", "").startswith(
                "application/x-www-form-urlencoded") and any(
                "\x00" in name or "\x00" in value
                for name, value in request.form.items(multi=True)):
            abort(400, message=TEXT_PROBLEM)

    @app.after_request
    def _no_content_has_no_type(response: Any) -> Any:
        """204 has no body (RFC 9110), so it carries no content type either: a DELETE
        answered by an empty JSON response, or OPTIONS (answered by Flask for every
        route with an empty `text/html` page and `Allow`), says only its status."""
        if request.method == "OPTIONS" and response.status_code == 200 \
                and response.mimetype == "text/html" and not response.get_data():
            response.status_code = 204
        if response.status_code == 204:
            response.set_data(b"")
            response.headers.pop("Content-Type", None)
            response.headers.pop("Content-Length", None)
        return response

    @app.after_request
    def _locate_created(response: Any) -> Any:
        """A POST that made something (201, or 202 for a reward on its way) says where
        to read it: `Location`, when the collection it was posted to has a GET for one
        item by id (the spec declares the same, api/contract.py)."""
        if request.method != "POST" or response.status_code not in (201, 202) \
                or not response.is_json or "Location" in response.headers:
            return response
        body = response.get_json(silent=True)
        item = body.get("id") if isinstance(body, dict) else None
        if not isinstance(item, str) or not item:
            return response
        where = f"{request.path.rstrip('/')}/{item}"
        try:
            _, values = app.url_map.bind("localhost").match(where, method="GET")
        except HTTPException:  # no such page: nothing to point at
            return response
        if [str(value) for value in values.values() if isinstance(value, uuid.UUID)][-1:] \
                == [item]:  # the page's own id is the one made, not a name that matched
            response.headers["Location"] = where
        return response

    app.wsgi_app = SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
