"""PATCH /v1/me: what a wrong value says, and that it changes nothing."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import bearer, member_token


@pytest.mark.parametrize("year, message", [
    (1899, "Must be greater than or equal to 1900 and less than or equal to 2999."),
    (3000, "Must be greater than or equal to 1900 and less than or equal to 2999."),
    (2998, "A year from 1900 to this year."),
])
def test_a_wrong_birth_year_gets_one_message_and_changes_nothing(
        client: FlaskClient, app: Flask, year: int, message: str) -> None:
    headers = bearer(member_token(client, app, "years@example.org"))
    assert client.patch("/v1/me", headers=headers, json={"birth_year": 1990}).status_code == 200
    answer = client.patch("/v1/me", headers=headers, json={"birth_year": year})
    assert answer.status_code == 422
    assert answer.get_json()["errors"] == {"birth_year": [message]}
    assert client.get("/v1/me", headers=headers).get_json()["birth_year"] == 1990
