"""Secrets and tokens: keyed hashes, API keys, request signatures, JWTs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from flask import current_app, has_request_context, request


def keyed_hash(value: str, purpose: str, key: str | None = None) -> str:
    """HMAC-SHA256 of a value under IDENTIFIER_KEY (or `key`), so a leaked table reveals
    no card numbers or codes. `purpose` keeps hashes of different kinds apart."""
    secret = (key or current_app.config["IDENTIFIER_KEY"]).encode()
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def identifier_key_id(key: str | None = None) -> str:
    """A fingerprint naming an IDENTIFIER_KEY (not revealing it): which key hashed a card."""
    secret = (key or current_app.config["IDENTIFIER_KEY"]).encode()
    return hmac.new(secret, b"key-id", hashlib.sha256).hexdigest()[:16]


def normalise_card_number(number: str) -> str:
    return "".join(ch for ch in number if ch.isalnum()).upper()


def new_api_key(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def api_key_hash(key: str) -> str:
    # API keys carry 256 bits of randomness, so a plain digest is enough to look them up.
    return hashlib.sha256(key.encode()).hexdigest()


def sign_body(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """What a source puts in X-Signature. Used by the demo loader, tests and benchmarks."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={sign_body(secret, t, body)}"


def check_signature(secret: str, header: str | None, body: bytes, tolerance: int) -> str | None:
    """None when the signature is good, else why not (said to the source as 401)."""
    if not header:
        return "X-Signature header is missing"
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts[name] = value
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return "X-Signature must look like t=<unix seconds>,v1=<hex HMAC-SHA256>"
    if abs(time.time() - timestamp) > tolerance:
        return f"X-Signature timestamp is more than {tolerance} seconds from now"
    expected = sign_body(secret, timestamp, body)
    # Compare bytes: compare_digest refuses non-ASCII str, which a client may send.
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        return "X-Signature does not match the body"
    return None


def issue_token(subject: str, role: str, ttl: int, kind: str = "access", **claims: Any) -> str:
    now = int(datetime.now(UTC).timestamp())
    payload = {
        "sub": subject,
        "role": role,
        "typ": kind,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(payload, current_app.config["SECRET_KEY"], algorithm="HS256")


def read_token(token: str, kind: str = "access") -> dict[str, Any] | None:
    """The token's claims if it is a valid token of `kind` we issued, else None. Within
    a request each token is checked once: the rate limiter names the client by it before
    the view checks it again (the signature is the same work both times)."""
    memo = request.environ.setdefault("rewards.read_tokens", {}) \
        if has_request_context() else None
    if memo is not None and (token, kind) in memo:
        known = memo[(token, kind)]
        return dict(known) if known is not None else None
    payload = _decode_token(token, kind)
    if memo is not None:
        memo[(token, kind)] = payload
    return dict(payload) if payload is not None else None


def _decode_token(token: str, kind: str) -> dict[str, Any] | None:
    try:
        payload = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=["HS256"],
            # Views turn "sub" into a UUID; a token missing these is not one we issued.
            options={"require": ["exp", "iat", "sub", "role", "typ"]},
        )
    except jwt.PyJWTError:
        return None
    if payload.get("typ") != kind:
        return None
    return payload
