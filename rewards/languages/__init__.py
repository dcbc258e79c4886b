"""The scheme's languages other than English, one module each, found by its code:
`rewards/languages/<code>.py` (cy.py for Welsh). English is the code's own language
and needs no module. A module holds whichever of these it has; whatever it lacks is
said in English, and the answer says so (Content-Language, lang="en"):

    NAME       the language's name in itself ("Cymraeg"), for the staff pages' switch
    DIRECTION  "ltr" (the default) or "rtl"
    REASONS    error reason (rewards/reasons.py) -> message
    NOTICES    notice name (rewards/notice_text.py) -> (subject, body) templates
    MONTHS     the twelve month names, January first, for dates in notices
    STATEMENT  English pattern (rewards/statement_text.py PATTERNS) -> template
    NOW_SPENDABLE  the words before a line whose points became spendable
    STAFF      staff page key (rewards/i18n.py STAFF_TEXT) -> text

Adding a language is adding its module and its code to SCHEME_LANGUAGES; nothing that
uses the texts changes (docs/new-scheme.md)."""

from __future__ import annotations

import importlib
import re
from functools import cache
from types import ModuleType
from typing import Any

ENGLISH = "en"
_CODE = re.compile(r"[a-z]{2,3}")


@cache
def pack(code: str | None) -> ModuleType | None:
    """The module for language `code`, or None (English, no module, or not a code)."""
    if not code or code == ENGLISH or not _CODE.fullmatch(code):
        return None
    try:
        return importlib.import_module(f"{__name__}.{code}")
    except ModuleNotFoundError as missing:
        if missing.name != f"{__name__}.{code}":
            raise  # the module exists but something it imports does not
        return None


def table(code: str | None, name: str) -> Any:
    """One of a language's tables (REASONS, NOTICES, ...), or None if it has none."""
    module = pack(code)
    return getattr(module, name, None) if module is not None else None


def has(code: str | None, name: str) -> bool:
    """Whether `code` has a `name` table: always for English, whose texts are the code's."""
    return code == ENGLISH or bool(table(code, name))


def direction(code: str | None) -> str:
    return "rtl" if getattr(pack(code), "DIRECTION", "ltr") == "rtl" else "ltr"


def own_name(code: str) -> str:
    return "English" if code == ENGLISH else str(getattr(pack(code), "NAME", code))


def reason_text(reason: str, code: str) -> str | None:
    """The message for error `reason` in `code`, or None where it has none."""
    return (table(code, "REASONS") or {}).get(reason)


def spoken() -> tuple[str, ...] | None:
    """SCHEME_LANGUAGES of the running app, or None outside one (then any language
    with a module may be used)."""
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    return tuple(current_app.config.get("SCHEME_LANGUAGES", (ENGLISH, "cy")))
