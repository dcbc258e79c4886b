"""The statement and actions pages write their answers from their rows
(rewards/api/me_pages.py): each must be what the route's marshmallow schema dumps for the
same rows, in English and in Welsh."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest
from flask import Flask, g

from rewards.api.me import ActionSchema, LedgerLineSchema
from rewards.api.me_pages import actions_answer, award_json, statement_answer

from .test_fastdump import ACTIONS, LEDGER, WHEN

# As the pages' statements answer: named rows, the numbered page's total last.
Line = namedtuple("Line", "id points kind reason created_at total")
Action = namedtuple("Action", "id type_code occurred_at status points attributes flag_reason "
                              "created_at type_default_name type_translations awards total")
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


def _award_rows(action: dict[str, Any]) -> list[Award]:
    return [Award(**{**award, "action_id": action["id"]}) for award in action["awards"]]


@pytest.mark.parametrize("language", ["en", "cy"])
def test_the_statement_answer_is_the_schemas_dump(app: Flask, language: str) -> None:
    lines = _lines()
    with app.test_request_context(headers={"Accept-Language": language}):
        g.rule_names, g.offer_titles = {"Bus journey": "Taith bws"}, {"Flat white": "Coffi"}
        expected = LedgerLineSchema(many=True).dump(lines)
        assert statement_answer([Line(**line) for line in lines]) == expected
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
        in_rows = [Action(**{**action, "awards": [award_json(Award(**award))
                                                  for award in action["awards"]]})
                   for action in actions]
        assert actions_answer(in_rows) == expected
        # elsewhere: the awards read apart, by action
        awards = {action["id"]: [award_json(award) for award in _award_rows(action)]
                  for action in actions}
        assert actions_answer([Action(**{**action, "awards": None}) for action in actions],
                              awards) == expected
    names = [action["type_name"] for action in expected]
    rules = [award["rule_name"] for award in expected[0]["awards"]]
    if language == "cy":
        assert names[:3] == ["Taith bws", "Recycling", "Bus journey"]
        assert rules == ["Taith bws", "Boost"]
        assert expected[3]["reason"] == "wedi'i ddal i'w adolygu: Bus journey v2"
    else:
        assert names[:3] == ["Bus journey", "Recycling", "Bus trip"]
        assert rules == ["Bus journey", "Boost"]
