"""The language of every answer: the request's Accept-Language (else the member's
saved locale) among the scheme's languages (SCHEME_LANGUAGES), said in
Content-Language with Vary: Accept-Language. Error messages follow it: in Welsh, each
error says its reason's Welsh text (rewards/reasons_cy.py)."""

from __future__ import annotations

import json

from flask import Response, current_app, g, request
from marshmallow import ValidationError

from ..i18n import choose, preferences
from ..reasons_cy import WELSH


def scheme_languages() -> tuple[str, ...]:
    return tuple(current_app.config.get("SCHEME_LANGUAGES", ("en", "cy")))


def check_scheme_language(value: str) -> None:
    """A marshmallow validator: a language the scheme offers."""
    offered = scheme_languages()
    if value not in offered:
        raise ValidationError(f"One of the scheme's languages: {', '.join(offered)}.")


def negotiated() -> str:
    member = g.get("member")
    wanted = preferences(request.headers.get("Accept-Language"),
                         member.locale if member is not None else None)
    return choose(wanted, scheme_languages())


def finish(response: Response) -> Response:
    """Say the answer's language; put an error's message in it."""
    if not request.path.startswith("/v1/"):
        return response
    language = negotiated()
    response.vary.add("Accept-Language")
    response.headers.setdefault("Content-Language", language)
    if language == "cy" and response.status_code >= 400 and response.is_json:
        body = response.get_json(silent=True)
        if isinstance(body, dict) and body.get("reason") in WELSH:
            body["message"] = WELSH[body["reason"]]
            response.set_data(json.dumps(body, ensure_ascii=False))
    return response
