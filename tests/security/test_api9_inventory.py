"""API9:2023 Improper inventory management: every operation openapi.yaml describes is
served, and every one needs credentials unless it is on the short public list below."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import yaml
from flask.testing import FlaskClient

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
# Answer without credentials, by design.
PUBLIC = {
    ("GET", "/healthz"), ("GET", "/readyz"),
    ("POST", "/v1/auth/otp"), ("POST", "/v1/auth/token"), ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/login"),
}


def _operations() -> list[tuple[str, str]]:
    spec = yaml.safe_load(SPEC.read_text())
    return [(method.upper(), path) for path, item in spec["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete")]


def _concrete(path: str) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return {"kind": "travel_card", "code": "ABCDEFGHJK", "month": "2026-07"}.get(
            name, str(uuid.uuid4()))

    return re.sub(r"\{([^}]+)\}", fill, path)


def test_every_described_operation_needs_credentials_unless_public(
        client: FlaskClient) -> None:
    operations = _operations()
    assert len(operations) > 60
    open_ones = []
    for method, path in operations:
        if (method, path) in PUBLIC:
            continue
        answer = client.open(_concrete(path), method=method, json={})
        if answer.status_code != 401:
            open_ones.append((method, path, answer.status_code))
    assert open_ones == []


def test_public_operations_are_few_and_described(client: FlaskClient) -> None:
    described = set(_operations())
    assert PUBLIC <= described
    assert client.get("/healthz").status_code == 200
    # Nothing undocumented under /v1 answers: an unknown path is a JSON 404.
    for path in ("/v1/admin/debug", "/v1/internal", "/v1/me/all", "/v2/me"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.is_json
