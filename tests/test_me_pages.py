"""The statement and actions pages write their answers from their rows
(rewards/api/me_pages.py): each must be what the route's marshmallow schema dumps for the
same rows, in English and in Welsh, with ids and times PostgreSQL said as text exactly as
Python says them."""

from __future__ import annotations

import uuid
from collections import namedtuple
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask, g
from sqlalchemy import Uuid, column, select, values

from rewards.api.me import ActionSchema, LedgerLineSchema
from rewards.api.me_pages import actions_answer, award_json, said_as_text, statement_answer
from rewards.extensions import db
from rewards.models.base import UTCDateTime

from .helpers import postgres_only
from .test_fastdump import ACTIONS, LEDGER, WHEN

# As the pages' statements answer: named rows, the numbered page's total last; the
# times to show (`*_iso`) as datetimes (SQLite) or already as text (PostgreSQL).
Line = namedtuple("Line", "id points kind reason created_at created_at_iso total")
Action = namedtuple("Action", "id type_code occurred_at occurred_at_iso status points "
                              "attributes flag_reason created_at_iso type_default_name "
                              "type_translations awards total")
Award = namedtuple("Award", "action_id rule_id rule_name rule_version points capped_by")

MORE_ACTIONS = [
    {**ACTIONS[0], "type_translations": {"en": {"name": "Bus trip"}}, "attributes": None},
    {**ACTIONS[1], "type_translations": {"cy": {}},
     "flag_reason": "held for review: Bus journey v2"},
    {**ACTIONS[1], "flag_reason": "self-reported: awaiting review", "created_at": WHEN},
]
MORE_LINES = [{**LEDGER[0], "reason": "Claimed: Flat white"},
              {**LEDGER[0], "reason": "Bus journey v2 + Boost v1"},
              {**LEDGER[0], "reason": "Now spendable: Bus journey v2"}]


def _lines() -> list[dict[str, Any]]:
    return [{**{key: value for key, value in line.items() if key != "_total"}, "total": 3}
            for line in LEDGER + MORE_LINES]


def _actions() -> list[dict[str, Any]]:
    return [{**action, "total": 5} for action in ACTIONS + MORE_ACTIONS]


def _line_row(line: dict[str, Any], text: bool) -> Line:
    when = line["created_at"]
    return Line(**line, created_at_iso=when.isoformat() if text else when)


def _action_row(action: dict[str, Any], text: bool, **changes: Any) -> Action:
    fields = {key: value for key, value in action.items() if key != "created_at"}
    occurred, created = action["occurred_at"], action["created_at"]
    return Action(**{**fields, **changes},
                  occurred_at_iso=occurred.isoformat() if text else occurred,
                  created_at_iso=created.isoformat() if text else created)


def _award_rows(action: dict[str, Any]) -> list[Award]:
    return [Award(**{**award, "action_id": action["id"]}) for award in action["awards"]]


@pytest.mark.parametrize("language", ["en", "cy"])
def test_the_statement_answer_is_the_schemas_dump(app: Flask, language: str) -> None:
    lines = _lines()
    with app.test_request_context(headers={"Accept-Language": language}):
        g.rule_names, g.offer_titles = {"Bus journey": "Taith bws"}, {"Flat white": "Coffi"}
        expected = LedgerLineSchema(many=True).dump(lines)
        for text in (True, False):
            assert statement_answer([_line_row(line, text) for line in lines]) == expected
    if language == "cy":
        assert [line["reason"] for line in expected][-3:] == [
            "Hawliwyd: Coffi", "Taith bws v2 + Boost v1", "Ar gael i'w gwario nawr: Taith bws v2"]


@pytest.mark.parametrize("language", ["en", "cy"])
def test_the_actions_answer_is_the_schemas_dump(app: Flask, language: str) -> None:
    actions = _actions()
    with app.test_request_context(headers={"Accept-Language": language}):
        g.rule_names, g.offer_titles = {"Bus journey": "Taith bws"}, {}
        expected = ActionSchema(many=True).dump(actions)
        # PostgreSQL: each row brings its awards as JSON (the rule's id as text)
        in_rows = [_action_row(action, True, awards=[award_json(Award(**award))
                                                     for award in action["awards"]])
                   for action in actions]
        assert actions_answer(in_rows) == expected
        # elsewhere: the awards read apart, by action
        awards = {action["id"]: [award_json(award) for award in _award_rows(action)]
                  for action in actions}
        assert actions_answer([_action_row(action, False, awards=None)
                               for action in actions], awards) == expected
    names = [action["type_name"] for action in expected]
    rules = [award["rule_name"] for award in expected[0]["awards"]]
    if language == "cy":
        assert names[:3] == ["Taith bws", "Recycling", "Bus journey"]
        assert rules == ["Taith bws", "Boost"]
        assert expected[3]["reason"] == "wedi'i ddal i'w adolygu: Bus journey v2"
    else:
        assert names[:3] == ["Bus journey", "Recycling", "Bus trip"]
        assert rules == ["Bus journey", "Boost"]


MOMENTS = [WHEN, WHEN.replace(microsecond=0), WHEN.replace(microsecond=10),
           WHEN.replace(microsecond=120000), datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
           datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
           datetime(2026, 6, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_postgresql_says_ids_and_times_as_python_does(app: Flask, zone: str) -> None:
    postgres_only(app, "SQLite's rows are said in Python")
    ids = [uuid.uuid4() for _ in MOMENTS]
    given = values(column("id", Uuid), column("at", UTCDateTime()), name="given").data(
        list(zip(ids, MOMENTS, strict=True)))
    row_id, at = said_as_text("postgresql", given.c.id, given.c.at)
    with app.app_context():
        connection = db.session.connection()
        connection.exec_driver_sql(f"SET TIME ZONE '{zone}'")
        said = connection.execute(select(row_id, at.label("at"))).all()
        db.session.rollback()
    assert [tuple(row) for row in said] == [
        (str(row_id), moment.astimezone(UTC).isoformat())
        for row_id, moment in zip(ids, MOMENTS, strict=True)]
