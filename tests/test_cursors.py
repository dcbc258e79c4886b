"""Keyset pages on the ledger and actions: a cursor names the last line seen, so lines
added between two pages neither repeat nor hide lines already listed."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import bearer, build_scheme, link, member_token, signed_post, tap
from .reward_support import give_points, resident


def _walk(client: FlaskClient, path: str, headers: dict[str, str], size: int,
          between=None) -> list[str]:
    seen: list[str] = []
    response = client.get(path, query_string={"page_size": size}, headers=headers)
    while True:
        assert response.status_code == 200, response.json
        seen += [line["id"] for line in response.json]
        following = response.headers.get("X-Next-Cursor")
        if following is None:
            assert "Link" not in response.headers
            return seen
        assert 'rel="next"' in response.headers["Link"]
        assert f"cursor={following}" in response.headers["Link"]
        if between is not None:
            between()
        response = client.get(path, query_string={"page_size": size, "cursor": following},
                              headers=headers)


def test_ledger_cursor_pages_are_stable_when_lines_are_added(client: FlaskClient,
                                                             app: Flask) -> None:
    member = resident(client, app)
    for points in range(1, 8):
        give_points(app, member.id, points)
    before = [line["id"] for line in client.get(
        "/v1/me/ledger", query_string={"page_size": 100}, headers=member.headers).json]
    assert len(before) == 7
    added = iter(range(100, 200))
    walked = _walk(client, "/v1/me/ledger", member.headers, 3,
                   between=lambda: give_points(app, member.id, next(added)))
    assert walked == before  # nothing repeated or skipped; the new lines are above page 1
    after = client.get("/v1/me/ledger", query_string={"page_size": 100},
                       headers=member.headers).json
    assert len(after) == 7 + 2
    first = client.get("/v1/me/ledger", query_string={"page_size": 3},
                       headers=member.headers)
    assert first.headers["X-Pagination"]  # page numbers still work, with their total
    numbered = json.loads(first.headers["X-Pagination"])
    assert (numbered["page"], numbered["next_page"]) == (1, 2)
    # A page read after a cursor has no number: the totals only, no next_page to follow
    # (it would re-read the rows the cursor's page has just given).
    after_cursor = client.get("/v1/me/ledger", headers=member.headers, query_string={
        "page_size": 3, "cursor": first.headers["X-Next-Cursor"]})
    figures = json.loads(after_cursor.headers["X-Pagination"])
    assert figures["total"] == 9 and not {"page", "next_page", "previous_page"} & set(figures)
    assert [line["points"] for line in after[:2]] == [101, 100]
    assert {"id", "points", "kind", "reason", "created_at"} == set(after[0])
    page_two = client.get("/v1/me/ledger", query_string={"page_size": 3, "page": 2},
                          headers=member.headers).json
    assert [line["id"] for line in page_two] == [line["id"] for line in after[3:6]]


def test_actions_cursor_walks_every_action_once(client: FlaskClient, app: Flask) -> None:
    scheme = build_scheme(client, app, per_day=100)
    headers = bearer(member_token(client, app, "walker@example.org"))
    linked = link(client, app, headers, "TRAVEL-7781")
    assert linked.status_code == 201, linked.json
    start = datetime.now(UTC) - timedelta(days=2)
    taps = [tap(f"walk-{n}", "TRAVEL-7781", start + timedelta(minutes=n)) for n in range(5)]
    reported = signed_post(client, scheme.source, {"items": taps})
    assert reported.status_code == 200, reported.json
    walked = _walk(client, "/v1/me/actions", headers, 2)
    listed = client.get("/v1/me/actions", query_string={"page_size": 100},
                        headers=headers).json
    assert len(walked) == 5 and walked == [action["id"] for action in listed]
    assert [datetime.fromisoformat(a["occurred_at"]) for a in listed] == [
        start + timedelta(minutes=n) for n in reversed(range(5))]


def _cursor(moment: str, row_id: str = "00000000-0000-0000-0000-000000000000") -> str:
    raw = json.dumps([moment, row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/v1/me/ledger", "/v1/me/actions"])
@pytest.mark.parametrize("cursor", [
    "nonsense", "W10", "WyJ4IiwieSJd",
    # Moments whose offset takes them past datetime's range in UTC.
    _cursor("0001-01-01T00:00:00+14:00"), _cursor("9999-12-31T23:59:59-14:00"),
    _cursor("2026-01-01T00:00:00+00:00", "00000000-0000-0000-0000-00000000000\x00"),
], ids=["text", "empty", "not-moments", "year-1-east", "year-9999-west", "nul-id"])
def test_a_cursor_not_given_out_is_422(client: FlaskClient, app: Flask, path: str,
                                       cursor: str) -> None:
    member = resident(client, app)
    response = client.get(path, query_string={"cursor": cursor}, headers=member.headers)
    assert response.status_code == 422, response.json
    assert response.json["errors"] == {"cursor": ["Not a valid cursor."]}
