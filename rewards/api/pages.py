"""The pages of a resident's hottest lists (statement and actions by keyset, the
catalogue by number): their query arguments read without webargs or marshmallow.

flask-smorest reads a page's arguments twice (the cursor, then page and page_size), each
time through webargs and a marshmallow load: about a tenth of the Python a page costs.
`keyset_page_view` documents the route with the very decorators it replaces
(`@blp.arguments(CursorArgs, location="query")`, `@blp.response`, `@blp.paginate()`), so
the OpenAPI document is theirs, and reads a plainly valid query itself: digits in range,
a cursor of an allowed length, nothing the database cannot store. Anything else goes
through those decorators' own parsers, which give the same values or the same 422,
message for message. `tests/test_pages.py` holds the two readings equal."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, request
from flask_smorest.pagination import PaginationParameters
from werkzeug.datastructures import MultiDict

from ..extensions import MAX_PAGE, Blueprint, pagination_figures
from .common import CursorArgs

# A view of a page: (cursor or None, page parameters) -> its JSON Response and headers.
PageView = Callable[[str | None, PaginationParameters], tuple[Response, dict[str, str]]]

# What PostgreSQL cannot store (rewards/api/checks.py): such a query goes the long way.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _whole(text: str, low: int, high: int, digits: int) -> int | None:
    """`text` as a number from `low` to `high` when it is plain ASCII digits, else None
    (webargs decides: it reads " 5", "+5" or "5_0" too, or says why not)."""
    if len(text) > digits or not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if low <= number <= high else None


def plain_page_query(query: MultiDict, default_size: int, max_size: int,
                     others: frozenset[str] = frozenset()) -> tuple[str | None, int, int] | None:
    """(cursor, page, page_size) of a plainly valid query, else None. Each name's first
    value counts, as webargs reads it; a second value is only checked for what the
    database cannot store. A query naming any of `others` (the route's own arguments)
    is not plain."""
    cursor, page, size = None, 1, default_size
    for key, values in query.lists():
        if key in others:
            return None
        if _UNSTORABLE.search(key) or any(_UNSTORABLE.search(value) for value in values):
            return None
        value = values[0]
        if key == "page_size":
            read = _whole(value, 1, max_size, 3)
            if read is None:
                return None
            size = read
        elif key == "page":
            read = _whole(value, 1, MAX_PAGE, 6)
            if read is None:
                return None
            page = read
        elif key == "cursor":
            if not 1 <= len(value) <= 200:
                return None
            cursor = value
    return cursor, page, size


def _page_view(blp: Blueprint, arguments: Any, schema: Any, others: frozenset[str],
               plain_first: Callable[[str | None], Any],
               parsed_first: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """The decorator both page views are: documented as `@blp.arguments(arguments,
    location="query")`, `@blp.response(200, schema)` and `@blp.paginate()`; the view gets
    its first argument (from a plain query's cursor by `plain_first`, else from the
    parsed arguments by `parsed_first`) and the page parameters, returns its Response
    (already JSON) and headers; X-Pagination is added after them."""

    def decorator(view: Callable[..., tuple[Response, dict[str, str]]]) -> Callable[..., Any]:
        documented = blp.arguments(arguments, location="query")(
            blp.response(200, schema)(blp.paginate()(view)))
        page_schema = documented._apidoc["pagination"]["parameters"]["schema"]
        defaults = blp.DEFAULT_PAGINATION_PARAMETERS
        default_size, max_size = defaults["page_size"], defaults["max_page_size"]
        arguments_parser, pages_parser = blp.ARGUMENTS_PARSER, blp.PAGINATION_ARGUMENTS_PARSER

        def read() -> tuple[Any, PaginationParameters]:
            plain = plain_page_query(request.args, default_size, max_size, others)
            if plain is not None:
                return plain_first(plain[0]), PaginationParameters(plain[1], plain[2])
            # In the order the decorators run: the route's arguments (and what the
            # database cannot store), then the page; each aborts with its 422.
            given = arguments_parser.parse(arguments, request, location="query")
            return parsed_first(given), pages_parser.parse(page_schema, request, location="query")

        @wraps(view)
        def page(*args: Any, **kwargs: Any) -> Response:
            first, parameters = read()
            response, headers = view(first, parameters, *args, **kwargs)
            headers[blp.PAGINATION_HEADER_NAME] = json.dumps(pagination_figures(
                parameters.page, parameters.page_size, parameters.item_count))
            response.headers.extend(headers)
            return response

        page._apidoc = documented._apidoc  # type: ignore[attr-defined]
        return page

    return decorator


def keyset_page_view(blp: Blueprint, schema: Any) -> Callable[[PageView], Callable[..., Any]]:
    """Documents the route as `@blp.arguments(CursorArgs, location="query")`,
    `@blp.response(200, schema)` and `@blp.paginate()` would, and does what they do:
    the view gets the cursor and the page parameters."""
    return _page_view(blp, CursorArgs, schema, frozenset(),
                      lambda cursor: cursor, lambda given: given.get("cursor"))


# A view of a numbered page: (its query's arguments, page parameters) -> its JSON
# Response and headers.
ListView = Callable[[dict[str, Any], PaginationParameters], tuple[Response, dict[str, str]]]


def numbered_page_view(blp: Blueprint, arguments: Any, schema: Any
                       ) -> Callable[[ListView], Callable[..., Any]]:
    """As `keyset_page_view`, for a numbered list whose query may narrow it with
    `arguments` (a schema class). A query of page and page_size alone is read here (the
    view gets no arguments); one naming any of `arguments`' fields, or not plainly
    valid, goes through their parsers."""
    return _page_view(blp, arguments, schema, frozenset(arguments._declared_fields),
                      lambda cursor: {}, lambda given: given)
