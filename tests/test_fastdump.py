"""The hot reads answer through rewards.api.fastdump: each dump must be what the
route's marshmallow schema gives for the same objects (the schema is the documented
answer), in English and in Welsh, with absent, empty and None values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask, g
from marshmallow import Schema, fields

from rewards.api.catalogue import CatalogueOffer
from rewards.api.fastdump import plain_dumper
from rewards.api.me import ActionSchema, BalanceSchema, LedgerLineSchema

WHEN = datetime(2026, 11, 30, 8, 15, 30, 123456, tzinfo=UTC)


def _award(**changes: Any) -> dict[str, Any]:
    award = {"action_id": uuid.uuid4(), "rule_id": uuid.uuid4(), "rule_name": "Bus journey",
             "rule_version": 2, "points": 10, "capped_by": None}
    return {**award, **changes}


ACTIONS = [
    {"id": uuid.uuid4(), "type_code": "bus_journey", "occurred_at": WHEN,
     "status": "awarded", "points": 10, "attributes": {"route": "4", "distance_km": 3.2},
     "flag_reason": None, "created_at": WHEN + timedelta(seconds=3),
     "type_default_name": "Bus journey", "type_translations": {"cy": {"name": "Taith bws"}},
     "awards": [_award(), _award(rule_name="Boost", points=0, capped_by="daily_cap")]},
    {"id": uuid.uuid4(), "type_code": "recycling", "occurred_at": WHEN, "status": "flagged",
     "points": 0, "attributes": {}, "flag_reason": "Too many journeys in an hour",
     "created_at": WHEN, "type_default_name": "Recycling", "type_translations": None,
     "awards": []},
]

LEDGER = [
    {"id": uuid.uuid4(), "points": 10, "kind": "earn", "reason": "Bus journey v2",
     "created_at": WHEN, "_total": 3},
    {"id": uuid.uuid4(), "points": -25, "kind": "spend", "reason": "Claimed: Flat white",
     "created_at": WHEN},
    {"id": uuid.uuid4(), "points": 5, "kind": "adjustment", "reason": None,
     "created_at": WHEN},
]

OFFERS = [
    {"id": uuid.uuid4(), "title": "Swim", "description": None, "language": "en",
     "category": "leisure", "partner": {"id": uuid.uuid4(), "name": "Leeds Leisure"},
     "cost_points": 300, "affordable": False, "stock": None, "stock_left": None,
     "per_member_limit": 2, "limit_period": "month", "voucher_valid_days": 30,
     "points_back_on_expiry": True, "fulfilment": "internal", "starts_at": None,
     "ends_at": WHEN, "image_url": "https://example.org/swim.png"},
    {"id": uuid.uuid4(), "title": "Coffee", "description": "A flat white", "language": "cy",
     "category": None, "partner": {"id": uuid.uuid4(), "name": "Cafe"}, "cost_points": 0,
     "affordable": 1, "stock": 10, "stock_left": 0, "per_member_limit": None,
     "limit_period": "ever", "voucher_valid_days": 7, "points_back_on_expiry": 0,
     "fulfilment": "webhook", "starts_at": WHEN, "ends_at": None, "image_url": None},
]

BALANCES = [
    {"available": 120, "pending": 0, "lifetime_earned": 480,
     "expiring": [{"points": 20, "expires_at": WHEN}, {"points": 5, "expires_at": WHEN}]},
    {"available": 0, "pending": 10, "lifetime_earned": 10, "expiring": []},
]


class Everything(Schema):
    """Field kinds the plain dumper converts itself, and one it leaves to the field."""

    renamed = fields.String(attribute="name", data_key="label")
    count = fields.Integer()
    text_count = fields.Integer(as_string=True)  # left to the field
    flag = fields.Boolean()
    when = fields.AwareDateTime()
    day = fields.Date()  # left to the field
    tags = fields.List(fields.String())
    nested = fields.Nested(LedgerLineSchema, many=True)
    mapping = fields.Dict()
    computed = fields.Function(lambda obj: obj["count"] * 2)


EVERYTHING = [
    {"name": "a", "count": 3, "text_count": 4, "flag": "yes", "when": WHEN,
     "day": WHEN.date(), "tags": ["x", 1], "nested": LEDGER, "mapping": {"k": [1]}},
    {"name": None, "count": 0, "text_count": None, "flag": None, "when": None, "day": None,
     "tags": None, "nested": [], "mapping": None},
    {"count": 1},  # absent keys are left out, as marshmallow does
]


@pytest.mark.parametrize("schema, objects", [
    (ActionSchema, ACTIONS), (LedgerLineSchema, LEDGER), (CatalogueOffer, OFFERS),
    (BalanceSchema, BALANCES), (Everything, EVERYTHING)])
@pytest.mark.parametrize("language", ["en", "cy"])
def test_the_plain_dump_is_the_schemas_dump(app: Flask, schema: type[Schema],
                                             objects: list[Any], language: str) -> None:
    dump = plain_dumper(schema)
    with app.test_request_context(headers={"Accept-Language": language}):
        g.rule_names, g.offer_titles = {"Bus journey": "Taith bws"}, {}
        for obj in objects:
            assert dump(obj) == schema().dump(obj)


def test_the_welsh_answer_really_is_welsh(app: Flask) -> None:
    with app.test_request_context(headers={"Accept-Language": "cy"}):
        g.rule_names, g.offer_titles = {"Bus journey": "Taith bws"}, {}
        dumped = plain_dumper(ActionSchema)(ACTIONS[0])
    assert dumped["type_name"] == "Taith bws"
    assert dumped["awards"][0]["rule_name"] == "Taith bws"
    assert dumped["occurred_at"] == "2026-11-30T08:15:30.123456+00:00"
    assert dumped["id"] == str(ACTIONS[0]["id"])


def test_pagination_figures_are_flask_smorests_own() -> None:
    from flask_smorest.pagination import PaginationMixin

    from rewards.extensions import Blueprint

    for count in (0, 1, 5, 19, 20, 21, 100, 101):
        for size in (1, 5, 20, 100):
            for page in (1, 2, 3, 6, 50):
                assert Blueprint._make_pagination_metadata(page, size, count) == \
                    PaginationMixin._make_pagination_metadata(page, size, count)


def test_argument_schemas_are_made_once(app: Flask, client: Any) -> None:
    from rewards.api.common import CursorArgs
    from rewards.extensions import Blueprint

    made = Blueprint.ARGUMENTS_PARSER._get_schema(CursorArgs, None)
    assert made is Blueprint.ARGUMENTS_PARSER._get_schema(CursorArgs, None)
    assert isinstance(made, CursorArgs)
    # still parsed per request: a bad cursor is refused, a good page size honoured
    assert client.get("/v1/me/actions?cursor=x", headers={}).status_code == 401


def test_json_columns_read_back_whatever_orjson_refuses() -> None:
    from rewards.extensions import _json_loads

    assert _json_loads(b'{"route": "4", "km": 3.2, "n": [1, null, true]}') == {
        "route": "4", "km": 3.2, "n": [1, None, True]}
    huge = 2**70
    assert _json_loads(f'{{"big": {huge}}}') == {"big": huge}
    with pytest.raises(ValueError):
        _json_loads("{nope")
