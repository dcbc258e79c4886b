"""Statement lines and action reasons in the member's language. Postings and actions
store their reason in English, as the scheme wrote it; what the scheme itself writes
(claims, vouchers, expiry, reviews, award lines naming rules) is said again in the
member's language where its module (rewards/languages/) has the line, here in Welsh,
with rule names and offer titles from their own translations. Words staff typed (an
adjustment's reason, a reviewer's note) stay as typed. Pure functions: no database."""

from __future__ import annotations

import re
from collections.abc import Mapping

from . import languages

# English pattern -> Welsh template; groups keep what the scheme named (an offer, a
# partner, a source). Tried in order; the first that matches whole wins.
WELSH: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern, re.S), welsh) for
                                                       pattern, welsh in (
    (r"Claimed: (?P<x>.+)", "Hawliwyd: {x}"),
    (r"Voucher issued: (?P<x>.+)", "Taleb wedi'i chyhoeddi: {x}"),
    (r"Reward could not be issued; points returned",
     "Nid oedd modd cyhoeddi'r wobr; pwyntiau wedi'u dychwelyd"),
    (r"Voucher cancelled: (?P<x>.+)", "Taleb wedi'i chanslo: {x}"),
    (r"Voucher expired unused: (?P<x>.+); points returned",
     "Daeth y daleb i ben heb ei defnyddio: {x}; pwyntiau wedi'u dychwelyd"),
    (r"Redemption undone at the till: (?P<x>.+); points returned",
     "Dadwnaed y defnydd wrth y til: {x}; pwyntiau wedi'u dychwelyd"),
    (r"Points expired: not spent by their expiry date",
     "Pwyntiau wedi dod i ben: heb eu gwario erbyn eu dyddiad dod i ben"),
    (r"Donated to (?P<x>.+)", "Rhoddwyd i {x}"),
    (r"Revoked by (?P<x>.+)", "Diddymwyd gan {x}"),
    (r"Rejected on review: (?P<x>.+)", "Gwrthodwyd wrth adolygu: {x}"),
    (r"self-reported: awaiting review", "hunan-gofnodwyd: yn aros am adolygiad"),
    (r"held for review: (?P<x>.+)", "wedi'i ddal i'w adolygu: {x}"),
))
# The English patterns, in the order they are tried; a language's STATEMENT maps each
# pattern's text to its template (rewards/languages/).
PATTERNS: tuple[re.Pattern[str], ...] = tuple(pattern for pattern, _ in WELSH)
NOW_SPENDABLE = ("Now spendable: ", "Ar gael i'w gwario nawr: ")
_RULE_PART = re.compile(r"(?P<name>.+) v(?P<version>\d+)")


def _award_line(text: str, rule_names: Mapping[str, str]) -> str | None:
    parts = [_RULE_PART.fullmatch(part) for part in text.split(" + ")]
    if not all(parts) or not any(p["name"] in rule_names for p in parts if p):
        return None
    return " + ".join(f"{rule_names.get(p['name'], p['name'])} v{p['version']}"
                      for p in parts if p)


def say(reason: str | None, language: str, rule_names: Mapping[str, str] | None = None,
        offer_titles: Mapping[str, str] | None = None) -> str | None:
    """`reason` in `language` where the scheme wrote it and the language has the line;
    otherwise as stored (English). What a line names (an offer, a partner) is said by
    `offer_titles` where it is an offer's English title that has a translation."""
    if reason is None or language == languages.ENGLISH:
        return reason
    rule_names = rule_names or {}
    offer_titles = offer_titles or {}
    templates = languages.table(language, "STATEMENT") or {}
    if reason.startswith(NOW_SPENDABLE[0]):
        prefix = getattr(languages.pack(language), "NOW_SPENDABLE", None)
        if not prefix:
            return reason
        rest = reason.removeprefix(NOW_SPENDABLE[0])
        return prefix + (say(rest, language, rule_names, offer_titles) or rest)
    for pattern in PATTERNS:
        match = pattern.fullmatch(reason)
        if match:
            template = templates.get(pattern.pattern)
            if template is None:
                return reason
            return template.format(**{key: offer_titles.get(value, value)
                                      for key, value in match.groupdict().items()})
    return _award_line(reason, rule_names) or reason
