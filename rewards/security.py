"""Secrets and tokens: keyed hashes, API keys, request signatures, JWTs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import jwt
from flask import current_app, g, request


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
    return signatures_header([secret], body, timestamp)


def signatures_header(signing_secrets: Sequence[str], body: bytes,
                      timestamp: int | None = None) -> str:
    """X-Signature with one v1= entry per secret, in order: what a sender in the middle
    of a rotation sends, so a receiver holding either secret can check it."""
    if isinstance(signing_secrets, str) or not signing_secrets:
        raise ValueError("a list of one or more secrets is needed")
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t}," + ",".join(f"v1={sign_body(secret, t, body)}" for secret in signing_secrets)


# A header carries one timestamp and a few signatures (one per secret a sender signs
# with while it rotates); more than this is not a sender in rotation, and each one costs
# an HMAC per secret to check.
MAX_SIGNATURES = 5
MAX_SIGNATURE_ELEMENTS = 10
SIGNATURE_FORMAT = ("X-Signature must look like t=<unix seconds>,v1=<hex HMAC-SHA256> "
                    f"(up to {MAX_SIGNATURES} v1= entries, comma-separated)")
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
# Unix seconds are ASCII digits, a handful of them: int() would take Unicode digits and
# numbers too large for time arithmetic.
_UNIX_SECONDS = re.compile(r"-?[0-9]{1,12}")


def parse_signature(header: str) -> tuple[int, list[bytes]] | None:
    """The timestamp and the v1 digests of an X-Signature header (Stripe's layout:
    `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, names in any case, spaces around the
    pieces ignored, elements of other schemes skipped), or None when it is not one:
    no or two timestamps, no v1, a v1 that is not 64 hex digits, too many elements."""
    elements = header.split(",")
    if len(elements) > MAX_SIGNATURE_ELEMENTS:
        return None
    timestamps: list[str] = []
    digests: list[bytes] = []
    for element in elements:
        name, equals, value = element.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not equals or not name:
            return None
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            if not _HEX_DIGEST.fullmatch(value):
                return None
            digests.append(bytes.fromhex(value))
    if len(timestamps) != 1 or not _UNIX_SECONDS.fullmatch(timestamps[0]) \
            or not 1 <= len(digests) <= MAX_SIGNATURES:
        return None
    return int(timestamps[0]), digests


def check_signature(signing_secrets: Iterable[str], header: str | None, body: bytes,
                    tolerance: int) -> str | None:
    """None when the signature is good, else why not (said to the source as 401). Good
    means: the timestamp within `tolerance` seconds of now, either way, and any v1 entry
    the HMAC of "<t>.<raw body>" under any of `signing_secrets` (the secrets of the sender's
    keys working now). Every entry is compared with every secret's digest, in constant
    time, whichever matches: how long the check takes says nothing about which did."""
    if not header:
        return "X-Signature header is missing"
    parsed = parse_signature(header)
    if parsed is None:
        return SIGNATURE_FORMAT
    timestamp, given = parsed
    if abs(time.time() - timestamp) > tolerance:
        return f"X-Signature timestamp is more than {tolerance} seconds from now"
    message = f"{timestamp}.".encode() + body
    matched = False
    for secret in signing_secrets:
        expected = hmac.new(secret.encode(), message, hashlib.sha256).digest()
        for digest in given:
            matched |= hmac.compare_digest(expected, digest)
    if not matched:
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


# The characters of base64url without padding: anything else makes a token malformed
# (base64's decoder would skip stray characters rather than refuse them).
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
REQUIRED_CLAIMS = ("exp", "iat", "sub", "role", "typ")


def _segment(part: str) -> bytes:
    """A base64url segment; up to two '=' of padding accepted when the length is whole."""
    stripped = part.rstrip("=")
    padding = len(part) - len(stripped)
    if padding and (padding > 2 or len(part) % 4):
        raise ValueError("bad padding")
    if len(stripped) % 4 == 1 or not _SEGMENT.fullmatch(stripped):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def _whole_seconds(value: Any) -> int:
    """A NumericDate claim as an int; ValueError unless a JSON number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    return int(value)


def bearer_claims() -> dict[str, Any] | None:
    """The claims of this request's `Authorization: Bearer` access token, None when it
    has none or one that does not check out. Read once a request (the rate limiter names
    the client by it, then the route checks it), kept with the token it was read from."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    token = token.strip()
    known = g.get("_bearer")
    if known is not None and known[0] == token:
        return known[1]
    claims = read_token(token)
    g._bearer = (token, claims)
    return claims


def read_token(token: str, kind: str = "access") -> dict[str, Any] | None:
    """The claims of a token this scheme issued (`issue_token`), or None: HS256 under
    SECRET_KEY, signature checked first (in constant time), then the header naming
    HS256, then `exp` in the future, `iat` not, `nbf` if present, the claims every token
    carries, and `typ` equal to `kind`. Written out rather than through PyJWT's general
    decoder: every request with a bearer token runs it, and PyJWT's per-character checks
    cost a tenth of a resident's read; `tests/security/test_tokens.py` holds both to the
    same answers."""
    try:
        head, body, signature = token.split(".")
        signed = f"{head}.{body}".encode("ascii")
        key = current_app.config["SECRET_KEY"].encode("utf-8")
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _segment(signature)):
            return None
        header = json.loads(_segment(head))
        payload = json.loads(_segment(body))
        if (not isinstance(header, dict) or header.get("alg") != "HS256"
                or "crit" in header or not isinstance(payload, dict)):
            return None
        if any(claim not in payload for claim in REQUIRED_CLAIMS):
            return None
        now = time.time()
        if _whole_seconds(payload["exp"]) <= now or _whole_seconds(payload["iat"]) > now:
            return None
        if "nbf" in payload and _whole_seconds(payload["nbf"]) > now:
            return None
    except (ValueError, UnicodeError, binascii.Error, OverflowError):
        # json.JSONDecodeError is a ValueError; so is a token without three parts.
        return None
    if payload.get("typ") != kind:
        return None
    return payload
