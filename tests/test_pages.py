"""The statement and actions pages read their query themselves (rewards/api/pages.py):
what they read must be what flask-smorest's parsers read, and whatever they do not read
plainly must still get the parsers' own answer, 422s message for message."""

from __future__ import annotations

import json

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask_smorest.pagination import PaginationMixin
from werkzeug.exceptions import HTTPException

from rewards.api.common import CursorArgs
from rewards.api.pages import plain_page_query
from rewards.extensions import Blueprint, pagination_figures

from .reward_support import give_points, resident

QUERIES = [
    "", "page_size=20", "page_size=1", "page_size=100", "page=2&page_size=3", "page=100000",
    "cursor=abc", "cursor=abc&page_size=3&page=7", "unknown=1&page_size=2", "page_size=020",
    "page_size=0", "page_size=101", "page_size=abc", "page_size=", "page_size=1.5",
    "page_size=%205", "page_size=+5", "page_size=1_0", "page_size=%D9%A5", "page_size=%C2%B2",
    "page_size=-1", "page=0", "page=100001", "page=x", "page=0&page_size=0",
    "page=9223372036854775808", "page_size=99999999999999999999", "cursor=",
    "cursor=" + "a" * 200, "cursor=" + "a" * 201, "cursor=%00", "foo=%00", "%00=1",
    "page_size=%00", "cursor=abc&page_size=0", "cursor=&page_size=0",
    "page_size=5&page_size=abc", "page_size=abc&page_size=5", "cursor=a&cursor=",
    "page_size=5&page_size=%00", "x=%ED%A0%80", "page=1&page=0",
]


def _parsers_reading(app: Flask, query: str) -> tuple:
    """What the decorators the pages replace read from `query`: (cursor, page,
    page_size), or ("refused", status, messages)."""
    view = app.view_functions["me.ledger"]
    page_schema = view._apidoc["pagination"]["parameters"]["schema"]
    with app.test_request_context(f"/v1/me/ledger?{query}"):
        try:
            cursor = Blueprint.ARGUMENTS_PARSER.parse(CursorArgs, request,
                                                      location="query").get("cursor")
            pages = Blueprint.PAGINATION_ARGUMENTS_PARSER.parse(page_schema, request,
                                                                location="query")
        except HTTPException as refused:
            return "refused", refused.code, refused.data["messages"]
        return cursor, pages.page, pages.page_size


@pytest.mark.parametrize("query", QUERIES)
def test_a_plainly_read_query_reads_as_the_parsers_read_it(app: Flask, query: str) -> None:
    with app.test_request_context(f"/v1/me/ledger?{query}"):
        plain = plain_page_query(request.args, 10, 100)
    expected = _parsers_reading(app, query)
    assert plain is None or plain == expected, (plain, expected)
    if query in QUERIES[:10]:  # the usual queries take the short way
        assert plain is not None


@pytest.mark.parametrize("path", ["/v1/me/ledger", "/v1/me/actions"])
def test_every_query_answers_as_the_parsers_do(client: FlaskClient, app: Flask,
                                               path: str) -> None:
    member = resident(client, app)
    for points in range(1, 8):
        give_points(app, member.id, points)
    for query in QUERIES:
        answer = client.get(f"{path}?{query}", headers=member.headers)
        expected = _parsers_reading(app, query)
        if expected[0] == "refused":
            assert answer.status_code == 422, (query, answer.json)
            assert answer.json["errors"] == expected[2]["query"], query
            assert answer.json["message"] == \
                "The request is not valid: see errors for each field.", query
            continue
        cursor, page, size = expected
        if cursor is not None:  # none of these cursors was given out
            assert answer.status_code == 422, (query, answer.json)
            assert answer.json["errors"] == {"cursor": ["Not a valid cursor."]}
            continue
        assert answer.status_code == 200, (query, answer.json)
        total = 7 if path.endswith("ledger") else 0
        assert len(answer.json) == max(0, min(size, total - (page - 1) * size)), query
        figures = PaginationMixin._make_pagination_metadata(page, size, total)
        assert answer.headers["X-Pagination"] == json.dumps(figures), query


def test_bad_arguments_are_422_before_the_token_is_asked_for(client: FlaskClient) -> None:
    for path in ("/v1/me/ledger", "/v1/me/actions"):
        refused = client.get(f"{path}?page_size=0")
        assert refused.status_code == 422, refused.json
        assert refused.json["errors"] == {"page_size": [
            "Must be greater than or equal to 1 and less than or equal to 100."]}
        long = client.get(f"{path}?cursor={'a' * 201}")
        assert long.json["errors"] == {"cursor": ["Length must be between 1 and 200."]}
        assert client.get(f"{path}?page_size=5").status_code == 401


def test_pagination_figures_dump_as_flask_smorests_header() -> None:
    for count in (0, 1, 5, 19, 20, 21, 100, 101):
        for size in (1, 5, 20, 100):
            for page in (1, 2, 3, 6, 50):
                assert json.dumps(pagination_figures(page, size, count)) == json.dumps(
                    PaginationMixin._make_pagination_metadata(page, size, count))
