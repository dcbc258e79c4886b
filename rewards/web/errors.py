"""Errors on the pages people read in a browser (/staff/, /partner/ and the public
home page): a short page in the page's language, with the same status code, a plain
message and a link back, never the API's JSON error body. The API's own handlers
(rewards/extensions.py) ask `wants_page()` first and hand over to `page_error()`.

A client asking for JSON first (Accept: application/json, a script holding a scheme
manager's token for the event sheet) still gets the API's JSON error shape; the pages'
own scripts (staff.js) fetch nothing."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, has_request_context, render_template, request, session, url_for

from .. import languages
from ..i18n import staff_language, staff_languages, staff_text

# Paths that are pages: everything under these prefixes, and these exact paths.
PAGE_PREFIXES = ("/staff/", "/partner/")
PAGE_PATHS = frozenset({"/", "/staff", "/partner"})

# The words each status is said with (STAFF_TEXT keys); others by their class.
MESSAGES = {
    400: "error_bad_request",
    401: "error_sign_in",
    403: "forbidden",
    404: "not_found",
    405: "error_method",
    413: "error_too_large",
    414: "error_address_too_long",
    422: "error_bad_request",
    429: "error_too_many",
    500: "error_server",
    503: "error_unavailable",
}


def wants_page() -> bool:
    """Whether this request's error is answered with a page."""
    if not has_request_context():
        return False
    path = request.path
    if path not in PAGE_PATHS and not path.startswith(PAGE_PREFIXES):
        return False
    chosen = request.accept_mimetypes.best_match(("text/html", "application/json"))
    return chosen != "application/json"


def _message_key(code: int) -> str:
    return MESSAGES.get(code) or ("error_server" if code >= 500 else "error_refused")


def page_error(code: int, headers: dict[str, str] | None = None) -> tuple[str, int, dict[str, str]]:
    """The error page for status `code`, keeping the answer's own headers (Allow,
    Retry-After). Reads nothing from the database: it may be the thing that failed."""
    headers = {**(headers or {}), "Cache-Control": "no-store"}
    headers.pop("WWW-Authenticate", None)  # a page's sign-in is its form, not a challenge
    if request.path == "/staff" or request.path.startswith("/staff/"):
        return _staff_page(code, headers)
    english = staff_text(_message_key(code), "en")
    if request.path == "/partner" or request.path.startswith("/partner/"):
        back, back_text = url_for("partner_pages.redeem_page"), staff_text("back_to_redeem", "en")
    else:
        back, back_text = url_for("web.index"), staff_text("back_home", "en")
    page = render_template("page_error.html", status=code, message=english,
                           heading=staff_text("error_heading", "en", code=code),
                           back=back, back_text=back_text)
    headers["Content-Language"] = "en"
    return page, code, headers


def _staff_page(code: int, headers: dict[str, str]) -> tuple[str, int, dict[str, str]]:
    from .staff import CSP

    offered = staff_languages(current_app.config.get("SCHEME_LANGUAGES", ("en", "cy")))
    try:
        saved = session.get("lang")
    except Exception:  # a session that cannot be read is no reason to fail the error page
        saved = None
    lang = staff_language(request.args.get("lang"), saved,
                          request.headers.get("Accept-Language"), offered)
    # The staff pages' own after-request hook (a refusal before their language was
    # chosen still passes it) says the answer's language from here.
    g.lang = lang

    def t(key: str, **values: Any) -> str:
        return staff_text(key, lang, **values)

    # The staff pages' frame without what needs a signed-in user or the database: no
    # navigation, no account, no language switch (the link back keeps the language).
    page = render_template(
        "staff/error.html", status=code, message=t(_message_key(code)), t=t, lang=lang,
        dir=languages.direction(lang), other_languages=lambda: [], staff_user=None,
        groups=[], min_cell=int(current_app.config.get("DASHBOARD_MIN_CELL", 10)),
        back=url_for("staff_pages.overview", **({"lang": lang} if lang != "en" else {})))
    headers.update({"Content-Security-Policy": CSP, "Content-Language": lang,
                    "Vary": "Accept-Language, Cookie"})
    return page, code, headers
