"""The answers of a resident's statement and actions pages, written from their rows.

These two pages are the hottest lists: each of their rows would cost a schema dump with a
call into rewards/api/language.py for every name or reason it says (three or four an
action). Here the answer's language is asked once a page and each row is one dict.
The schemas in rewards/api/me.py (LedgerLineSchema, ActionSchema, AwardSchema) stay
the documented answer: tests/test_fastdump.py holds these equal to their dumps, in
English and in Welsh."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Text, cast, func, literal_column
from sqlalchemy.sql import ColumnElement

from .language import negotiated, rule_names, said

# Python's isoformat() of a UTC datetime, in PostgreSQL: microseconds only when there
# are some, then the offset.
_ISO_FORMAT = literal_column("""'YYYY-MM-DD"T"HH24:MI:SS.US'""")
_NO_MICROSECONDS = literal_column("'.000000'")
_UTC = literal_column("'UTC'")
_OFFSET = literal_column("'+00:00'")


def said_as_text(dialect: str, row_id: Any, *moments: Any) -> list[ColumnElement[Any]]:
    """`row_id` and `moments` (aware datetimes) as the answer says them, where the
    database can say them (PostgreSQL: the id as text, each moment as Python's
    isoformat() in UTC says it); elsewhere the columns themselves, said in Python.
    Each has its column's name."""
    if dialect != "postgresql":
        return [row_id, *moments]
    said_moments = [
        func.replace(func.to_char(func.timezone(_UTC, moment), _ISO_FORMAT),
                     _NO_MICROSECONDS, literal_column("''"), type_=Text).concat(_OFFSET)
        for moment in moments]
    return [cast(row_id, Text).label(row_id.key), *said_moments]


def _iso(moment: Any) -> str:
    return moment if moment.__class__ is str else moment.isoformat()


def statement_answer(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """LedgerLineSchema's dump of each statement row (id, points, kind, reason,
    created_at)."""
    if negotiated() == "en":  # reasons are stored in English
        return [{"id": str(row.id), "points": row.points, "kind": row.kind,
                 "reason": row.reason, "created_at": _iso(row.created_at_iso)}
                for row in rows]
    return [{"id": str(row.id), "points": row.points, "kind": row.kind,
             "reason": said(row.reason), "created_at": _iso(row.created_at_iso)}
            for row in rows]


def award_json(award: Any) -> dict[str, Any]:
    """An award row as PostgreSQL's JSON brings it with its action (rewards/api/me.py
    `_action_rows`): the AwardSchema fields, the rule's id as text."""
    return {"rule_id": str(award.rule_id), "rule_name": award.rule_name,
            "rule_version": award.rule_version, "points": award.points,
            "capped_by": award.capped_by}


def actions_answer(rows: Iterable[Any],
                   awards: Mapping[Any, list[dict[str, Any]]] | None = None,
                   ) -> list[dict[str, Any]]:
    """ActionSchema's dump of each action row (`_action_rows`), its awards from the row
    (`awards`, PostgreSQL) or from `awards` by action id, each as `award_json` has it."""
    language = negotiated()
    english = language == "en"
    names = None if english else rule_names(language)
    answer = []
    for row in rows:
        name = row.type_default_name
        translations = row.type_translations
        if translations:
            name = (translations.get(language) or {}).get("name") or name
        listed = row.awards if awards is None else awards[row.id]
        reason = row.flag_reason
        if not english:
            listed = [{**award, "rule_name": names.get(award["rule_name"], award["rule_name"])}
                      for award in listed]
            reason = said(reason)
        answer.append({
            "id": str(row.id), "type": row.type_code, "type_name": name,
            "occurred_at": _iso(row.occurred_at_iso), "status": row.status,
            "points": row.points, "attributes": row.attributes, "reason": reason,
            "awards": listed, "created_at": _iso(row.created_at_iso)})
    return answer
