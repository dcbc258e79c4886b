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


CATALOGUE_QUERIES = QUERIES + [
    "category=leisure", "category=", "partner_id=nope", "affordable=true",
    "affordable=maybe", "page_size=2&affordable=false", "category=x&page_size=0"]


def _catalogue_parsers_reading(app: Flask, query: str) -> tuple:
    """What the catalogue's documented decorators read from `query`: (arguments, page,
    page_size), or ("refused", status, messages)."""
    from rewards.api.catalogue import CatalogueQuery

    view = app.view_functions["offers.list_offers"]
    page_schema = view._apidoc["pagination"]["parameters"]["schema"]
    with app.test_request_context(f"/v1/offers?{query}"):
        try:
            given = Blueprint.ARGUMENTS_PARSER.parse(CatalogueQuery, request, location="query")
            pages = Blueprint.PAGINATION_ARGUMENTS_PARSER.parse(page_schema, request,
                                                                location="query")
        except HTTPException as refused:
            return "refused", refused.code, refused.data["messages"]
        return given, pages.page, pages.page_size


def test_the_catalogue_answers_every_query_as_the_parsers_do(client: FlaskClient,
                                                           app: Flask) -> None:
    from rewards.api.catalogue import CatalogueQuery

    member = resident(client, app)
    own = frozenset(CatalogueQuery._declared_fields)
    for query in CATALOGUE_QUERIES:
        with app.test_request_context(f"/v1/offers?{query}"):
            plain = plain_page_query(request.args, 10, 100, own)
        expected = _catalogue_parsers_reading(app, query)
        if plain is not None:  # read the short way: as the parsers read it, no arguments
            assert expected[0] == {} and plain[1:] == expected[1:], (query, plain, expected)
        answer = client.get(f"/v1/offers?{query}", headers=member.headers)
        if expected[0] == "refused":
            assert answer.status_code == 422, (query, answer.json)
            assert answer.json["errors"] == expected[2]["query"], query
            continue
        assert answer.status_code == 200, (query, answer.json)
        figures = PaginationMixin._make_pagination_metadata(expected[1], expected[2], 0)
        assert answer.headers["X-Pagination"] == json.dumps(figures), query
    for query in ("", "page_size=20", "page=2&page_size=3"):  # the usual: the short way
        with app.test_request_context(f"/v1/offers?{query}"):
            assert plain_page_query(request.args, 10, 100, own) is not None
    # The catalogue asks for the token first, even with a bad argument.
    assert client.get("/v1/offers?page_size=0").status_code == 401


def test_an_ended_login_is_told_so_before_a_bad_argument(client: FlaskClient,
                                                        app: Flask) -> None:
    """The catalogue checks the token before its arguments; the check, which rides on
    the view's statement, still comes first when the arguments stop the view early."""
    member = resident(client, app)
    assert client.get("/v1/offers?page_size=0", headers=member.headers).status_code == 422
    assert client.post("/v1/auth/logout", headers=member.headers).status_code == 204
    for query in ("page_size=0", "category=", "page_size=5"):
        answer = client.get(f"/v1/offers?{query}", headers=member.headers)
        assert answer.status_code == 401, (query, answer.json)
