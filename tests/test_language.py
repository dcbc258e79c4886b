"""Every answer says its language; errors speak Welsh to those who ask for it; a
member's locale is one of the scheme's languages."""

from __future__ import annotations

from pathlib import Path

import yaml
from flask import Flask
from flask.testing import FlaskClient

from rewards.reasons import Reason
from rewards.reasons_cy import WELSH

from .reward_support import admin_headers, make_offer, make_partner, resident


def test_every_reason_has_welsh() -> None:
    assert set(WELSH) == {reason.value for reason in Reason}
    assert all(text.strip() for text in WELSH.values())


def test_errors_and_content_language_follow_the_member(client: FlaskClient,
                                                       app: Flask) -> None:
    admin = admin_headers(client, app)
    offer = make_offer(client, admin, make_partner(client, admin)["id"], cost_points=500)
    member = resident(client, app, points=10)
    english = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                          headers=member.headers)
    assert english.status_code == 409 and english.json["message"].startswith("Not enough")
    assert english.headers["Content-Language"] == "en"
    assert "Accept-Language" in english.headers["Vary"]
    welsh = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                        headers={**member.headers, "Accept-Language": "cy-GB, en;q=0.5"})
    assert welsh.json["reason"] == "insufficient_points"
    assert welsh.json["message"] == "Does dim digon o bwyntiau gennych."
    assert welsh.headers["Content-Language"] == "cy"
    # The saved locale, when the phone does not say.
    assert client.patch("/v1/me", json={"locale": "cy"}, headers=member.headers).json[
        "locale"] == "cy"
    saved = client.post("/v1/me/rewards", json={"offer_id": offer["id"]},
                        headers=member.headers)
    assert saved.json["message"] == WELSH["insufficient_points"]
    assert client.get("/v1/me", headers=member.headers).headers["Content-Language"] == "cy"
    anonymous = client.get("/v1/me", headers={"Accept-Language": "cy"})
    assert anonymous.status_code == 401 and anonymous.json["message"] == WELSH[
        "unauthenticated"]
    # A language the scheme does not speak falls back to English.
    french = client.get("/v1/me", headers={**member.headers, "Accept-Language": "fr"})
    assert french.headers["Content-Language"] == "cy"  # the saved locale comes next


def test_locale_accepts_only_the_schemes_languages(client: FlaskClient, app: Flask) -> None:
    member = resident(client, app)
    for locale in ("fr", "cy-GB", "", "klingon"):
        refused = client.patch("/v1/me", json={"locale": locale}, headers=member.headers)
        assert refused.status_code == 422 and "locale" in refused.json["errors"], locale
    assert client.patch("/v1/me", json={"locale": "en"},
                        headers=member.headers).status_code == 200


def test_the_spec_declares_the_language_headers_on_every_answer() -> None:
    spec = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())
    headers = spec["components"]["headers"]
    assert {"Content-Language", "Vary"} <= set(headers)
    undeclared = []
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    name = response["$ref"].rsplit("/", 1)[1]
                    response = spec["components"]["responses"][name]
                if not {"Content-Language", "Vary"} <= set(response.get("headers", {})):
                    undeclared.append((method, path, status))
    assert undeclared == []
