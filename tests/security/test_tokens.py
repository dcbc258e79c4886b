"""Bearer tokens are checked by rewards.security.read_token, written out for speed
rather than through PyJWT's decoder: it must refuse every token PyJWT refuses and accept
exactly the tokens PyJWT accepts (with the claims this scheme requires and the right
`typ`), with the same claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from flask import Flask

from rewards.security import issue_token, read_token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: Any, payload: Any, key: str, *, raw_payload: bytes | None = None) -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(raw_payload if raw_payload is not None else json.dumps(payload).encode())
    signature = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _pyjwt(token: str, key: str, kind: str = "access") -> dict[str, Any] | None:
    """The reference: what PyJWT's decoder accepts, plus the scheme's `typ` check."""
    try:
        payload = jwt.decode(token, key, algorithms=["HS256"],
                             options={"require": ["exp", "iat", "sub", "role", "typ"]})
    except jwt.PyJWTError:
        return None
    return payload if payload.get("typ") == kind else None


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "3f1c0a52-3c1e-4c55-8f57-8c1d1c3a2b10", "role": "member",
              "typ": "access", "iat": now - 5, "exp": now + 600, "sid": "x"}
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _cases(key: str) -> dict[str, str]:
    good = _forge({"alg": "HS256", "typ": "JWT"}, _claims(), key)
    head, body, signature = good.split(".")
    now = int(time.time())
    other = "another-key-of-at-least-thirty-two-bytes!!"
    return {
        "good": good,
        "good, padded segments": f"{head}.{body}.{signature}" + "=" * (-len(signature) % 4),
        "other key": _forge({"alg": "HS256"}, _claims(), other),
        "signature of another body": f"{head}.{_b64(json.dumps(_claims(role='admin')).encode())}"
                                     f".{signature}",
        "signature cut short": f"{head}.{body}.{signature[:-2]}",
        "no signature": f"{head}.{body}.",
        "alg none": f"{_b64(json.dumps({'alg': 'none'}).encode())}.{body}.",
        "alg HS512 header": _forge({"alg": "HS512"}, _claims(), key),
        "no alg": _forge({"typ": "JWT"}, _claims(), key),
        "header not an object": _forge(["HS256"], _claims(), key),
        "payload not an object": _forge({"alg": "HS256"}, None, key, raw_payload=b"[1, 2]"),
        "payload not JSON": _forge({"alg": "HS256"}, None, key, raw_payload=b"{nope"),
        "expired": _forge({"alg": "HS256"}, _claims(exp=now - 1), key),
        "expires now": _forge({"alg": "HS256"}, _claims(exp=now), key),
        "exp as text": _forge({"alg": "HS256"}, _claims(exp="soon"), key),
        "issued in the future": _forge({"alg": "HS256"}, _claims(iat=now + 3600), key),
        "not before later": _forge({"alg": "HS256"}, _claims(nbf=now + 3600), key),
        "not before now": _forge({"alg": "HS256"}, _claims(nbf=now - 10), key),
        "no exp": _forge({"alg": "HS256"}, _claims(exp=None), key),
        "no iat": _forge({"alg": "HS256"}, _claims(iat=None), key),
        "no sub": _forge({"alg": "HS256"}, _claims(sub=None), key),
        "no role": _forge({"alg": "HS256"}, _claims(role=None), key),
        "no typ": _forge({"alg": "HS256"}, _claims(typ=None), key),
        "refresh used as access": _forge({"alg": "HS256"}, _claims(typ="refresh"), key),
        "two parts": f"{head}.{body}",
        "four parts": f"{good}.{signature}",
        "junk characters": f"{head}.{body}!!.{signature}",
        "junk signature": f"{head}.{body}.{'!' * len(signature)}",
        "one stray character": f"{head}.{body}a.{signature}",
        "not ASCII": f"{head}.{body}é.{signature}",
        "empty": "",
        "dots": "..",
    }


def test_read_token_agrees_with_pyjwt_on_every_kind_of_token(app: Flask) -> None:
    key = app.config["SECRET_KEY"]
    expected_accepted = {"good", "good, padded segments", "not before now"}
    with app.app_context():
        for name, token in _cases(key).items():
            ours, reference = read_token(token), _pyjwt(token, key)
            assert ours == reference, name
            assert (ours is not None) == (name in expected_accepted), name


def test_a_token_issued_here_reads_back_with_its_claims(app: Flask) -> None:
    with app.app_context():
        token = issue_token("someone", "member", 60, sid="abc")
        claims = read_token(token)
        assert claims is not None
        assert (claims["sub"], claims["role"], claims["typ"], claims["sid"]) == (
            "someone", "member", "access", "abc")
        assert claims["exp"] - claims["iat"] == 60
        assert read_token(token, kind="refresh") is None
        refresh = issue_token("someone", "member", 60, kind="refresh")
        assert read_token(refresh, kind="refresh") is not None
        assert read_token(refresh) is None


@pytest.mark.parametrize("bad", ["Bearer", "a.b.c", "x" * 5000])
def test_a_malformed_bearer_token_is_401_not_500(client: Any, bad: str) -> None:
    response = client.get("/v1/me/balance", headers={"Authorization": f"Bearer {bad}"})
    assert response.status_code == 401
    assert response.is_json
