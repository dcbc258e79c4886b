"""openapi.yaml at the root is what the app serves; regenerate it with `rewards openapi`."""

from __future__ import annotations

from pathlib import Path

import yaml
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_yaml_matches_what_the_app_serves(client: FlaskClient) -> None:
    served = client.get("/openapi.json")
    assert served.status_code == 200
    committed = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    assert committed == served.json, "openapi.yaml is stale: run `rewards openapi`"


def test_the_contract_paths_are_described(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    for path in ("/v1/auth/otp", "/v1/auth/token", "/v1/auth/login", "/v1/me/identifiers",
                 "/v1/me/balance", "/v1/me/ledger", "/v1/me/actions", "/v1/me/rewards",
                 "/v1/offers", "/v1/source/actions", "/v1/partner/vouchers/{code}",
                 "/v1/partner/redemptions", "/v1/admin/rules", "/healthz", "/readyz"):
        assert path in paths, path


def test_docs_page_is_served(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"swagger" in page.data.lower()
