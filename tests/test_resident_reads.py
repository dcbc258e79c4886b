"""A resident's pages through HTTP: totals counted with the page, pages past the end,
awards loaded with their actions, and another member's history never shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from .helpers import bearer, build_scheme, link, member_token, signed_post, tap


def _resident(client: FlaskClient, app: Flask, scheme: Any, email: str, card: str,
              journeys: int) -> dict[str, str]:
    headers = bearer(member_token(client, app, email))
    linked = link(client, app, headers, card)
    assert linked.status_code == 201, linked.json
    day = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    items = [tap(f"{card}-{n}", card, day - timedelta(days=1 + n)) for n in range(journeys)]
    if items:
        sent = signed_post(client, scheme.source, {"items": items})
        assert [r["status"] for r in sent.json["results"]] == ["accepted"] * journeys
    return headers


def _page(client: FlaskClient, headers: dict[str, str], path: str) -> tuple[list[Any], int]:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.json
    return response.json, json.loads(response.headers["X-Pagination"])["total"]


def test_pages_carry_the_members_own_total(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app)
    mine = _resident(client, app, scheme, "reads1@example.org", "633500000001", 5)
    _resident(client, app, scheme, "reads2@example.org", "633500000002", 3)

    lines, total = _page(client, mine, "/v1/me/ledger?page_size=2")
    assert (len(lines), total) == (2, 5)
    assert [line["points"] for line in lines] == [10, 10]
    everything, _ = _page(client, mine, "/v1/me/ledger?page_size=100")
    assert sum(line["points"] for line in everything) == 50
    stamps = [line["created_at"] for line in everything]
    assert stamps == sorted(stamps, reverse=True)
    # The last page has what is left; past the end is empty and still counts all.
    assert _page(client, mine, "/v1/me/ledger?page=3&page_size=2")[0][0]["points"] == 10
    assert _page(client, mine, "/v1/me/ledger?page=9&page_size=2") == ([], 5)

    actions, total = _page(client, mine, "/v1/me/actions?page_size=3")
    assert (len(actions), total) == (3, 5)
    assert all(len(action["awards"]) == 1 and action["awards"][0]["points"] == 10
               for action in actions)
    occurred = [action["occurred_at"] for action in actions]
    assert occurred == sorted(occurred, reverse=True)
    assert _page(client, mine, "/v1/me/actions?page=4&page_size=2") == ([], 5)


def test_the_catalogue_and_balance_use_the_members_points(client: FlaskClient, app: Flask):
    scheme = build_scheme(client, app, cost_points=30)
    rich = _resident(client, app, scheme, "reads3@example.org", "633500000003", 4)
    poor = _resident(client, app, scheme, "reads4@example.org", "633500000004", 2)
    offers, total = _page(client, rich, "/v1/offers")
    assert total == 1 and offers[0]["affordable"] is True
    assert offers[0]["partner"]["name"] == "Laynes Espresso"
    offers, _ = _page(client, poor, "/v1/offers")
    assert offers[0]["affordable"] is False
    assert _page(client, poor, "/v1/offers?affordable=true") == ([], 0)
    balance = client.get("/v1/me/balance", headers=poor).json
    assert (balance["available"], balance["lifetime_earned"]) == (20, 20)
