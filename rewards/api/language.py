"""The language of every answer: the request's Accept-Language (else the member's
saved locale) among the scheme's languages (SCHEME_LANGUAGES), said in
Content-Language with Vary: Accept-Language. Error messages follow it where the
language's module (rewards/languages/<code>.py; Welsh: rewards/reasons_cy.py) has the
reason's text; otherwise the message stays English and Content-Language says en."""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from flask import Response, current_app, g, request
from flask.globals import _cv_request
from marshmallow import ValidationError
from sqlalchemy import select

from ..extensions import db
from ..i18n import choose, preferences
from ..languages import ENGLISH, reason_text
from ..models import ActionType, Offer, Rule, RuleVersion
from ..statement_text import say
from .caching import vary_on


def scheme_languages() -> tuple[str, ...]:
    return tuple(current_app.config.get("SCHEME_LANGUAGES", ("en", "cy")))


def check_scheme_language(value: str) -> None:
    """A marshmallow validator: a language the scheme offers."""
    offered = scheme_languages()
    if value not in offered:
        raise ValidationError(f"One of the scheme's languages: {', '.join(offered)}.")


# The language chosen for a request, with the request it was chosen for: every
# translated field of a page asks, and a context variable answers in a fraction of what
# a look through Flask's `g` proxy costs.
_chosen: ContextVar[tuple[Any, str] | None] = ContextVar("rewards_language", default=None)


def negotiated() -> str:
    """The answer's language: Accept-Language, else the calling member's locale (entity
    or the `resident_read` row). Kept for the request once the caller is known."""
    here = _cv_request.get(None)
    known = _chosen.get()
    if known is not None and here is not None and known[0] is here:
        return known[1]
    member = g.get("member")
    if member is None:
        member = g.get("member_row")
    language = choose(preferences(request.headers.get("Accept-Language"),
                                  member.locale if member is not None else None),
                      scheme_languages())
    if member is not None and here is not None:
        _chosen.set((here, language))
    return language


def finish(response: Response) -> Response:
    """Say the answer's language; put an error's message in it."""
    if not request.path.startswith("/v1/"):
        return response
    language = negotiated()
    headers = response.headers
    vary_on(headers, "Accept-Language")
    if language != ENGLISH and response.status_code >= 400 and response.is_json:
        body = response.get_json(silent=True)
        if isinstance(body, dict) and "message" in body:
            translated = reason_text(str(body.get("reason")), language)
            if translated is None:
                language = ENGLISH  # the message is the code's own English
            else:
                body["message"] = translated
                response.set_data(json.dumps(body, ensure_ascii=False))
    if "Content-Language" not in headers:
        headers["Content-Language"] = language
    return response


# -- what the scheme wrote, in the member's words -------------------------------------------

def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name)


def rule_names(language: str) -> dict[str, str]:
    """Every rule version's name -> its rule's name in `language`, read once a request."""
    cached = g.get("rule_names")
    if cached is None:
        cached = g.rule_names = {}
        for name, translations in db.session.execute(
                select(RuleVersion.name, Rule.translations)
                .join(Rule, Rule.id == RuleVersion.rule_id)):
            welsh = ((translations or {}).get(language) or {}).get("name")
            if welsh:
                cached[name] = welsh
    return cached


def _offer_titles(language: str) -> dict[str, str]:
    """Every offer's English title -> its title in `language`, read once a request."""
    cached = g.get("offer_titles")
    if cached is None:
        cached = g.offer_titles = {}
        for title, translations in db.session.execute(select(Offer.title, Offer.translations)):
            translated = ((translations or {}).get(language) or {}).get("title")
            if translated:
                cached[title] = translated
    return cached


def said(reason: str | None) -> str | None:
    """A stored reason (statement line, action) in the answer's language where the
    scheme wrote it (rewards/statement_text.py)."""
    language = negotiated()
    if reason is None or language == "en":
        return reason
    return say(reason, language, rule_names(language), _offer_titles(language))


def reason_of(key: str) -> Any:
    """A marshmallow Function for a stored reason, said in the answer's language."""
    return lambda obj: said(_field(obj, key))


def rule_name_of(obj: Any) -> str:
    name = _field(obj, "rule_name")
    language = negotiated()
    return name if language == "en" else rule_names(language).get(name, name)


def type_name_of(obj: Any) -> str:
    """An action type's name to show, in the answer's language: from the row itself where
    its statement joined the type (`type_default_name`, `type_translations`), otherwise
    from its code, with every type read once a request."""
    if isinstance(obj, dict) and "type_default_name" in obj:
        translations = obj.get("type_translations")
        if not translations:  # no type has a translation: no need to ask the language
            return obj["type_default_name"]
        return ((translations.get(negotiated()) or {}).get("name")
                or obj["type_default_name"])
    names = g.get("type_names")
    if names is None:
        language = negotiated()
        names = g.type_names = {}
        for code, name, translations in db.session.execute(
                select(ActionType.code, ActionType.name, ActionType.translations)):
            names[code] = ((translations or {}).get(language) or {}).get("name") or name
    code = _field(obj, "type_code")
    return names.get(code, code)
