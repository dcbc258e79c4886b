"""Secrets the scheme must read back, encrypted at rest: the TOTP seeds of admins and
scheme managers. A copy of the database (a backup, a leaked dump) then gives nobody
the codes of the second factor.

Sealed with Fernet (AES-128-CBC + HMAC-SHA256) under `TOTP_KEY` when it is set, else
under a key derived from `SECRET_KEY` (HKDF-SHA256, its own label, so the token
signing key itself is never used to encrypt). `TOTP_KEY_PREVIOUS` still opens values
sealed before a rotation; they are sealed again under the current key when used.
Rows written before encryption (a plain base32 seed) are read as they are, and sealed
on their next use or by `rewards staff seal-totp` (docs/authentication.md)."""

from __future__ import annotations

import base64
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from .models import StaffUser

# A Fernet token starts with its version byte 0x80, "gAAAAA" in base64; a seed from
# pyotp.random_base32() is upper-case base32, so the two never look alike.
FERNET_PREFIX = "gAAAAA"
_BASE32 = re.compile(r"[A-Z2-7]+=*")


class SealBroken(Exception):
    """A sealed value no configured key opens (the key changed without TOTP_KEY_PREVIOUS)."""


def _fernet_for(material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"citizen-rewards totp seeds v1").derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _current_material() -> str:
    config = current_app.config
    return config.get("TOTP_KEY") or config["SECRET_KEY"]


def _box() -> MultiFernet:
    current = _current_material()
    keys = [_fernet_for(current)]
    previous = current_app.config.get("TOTP_KEY_PREVIOUS")
    if previous and previous != current:
        keys.append(_fernet_for(previous))
    return MultiFernet(keys)


def is_sealed(stored: str | None) -> bool:
    return bool(stored) and stored.startswith(FERNET_PREFIX)


def seal(seed: str) -> str:
    return _box().encrypt(seed.encode()).decode()


def unseal(stored: str) -> str:
    """The seed in a stored value, sealed or (from before encryption) plain."""
    if not is_sealed(stored):
        if _BASE32.fullmatch(stored):
            return stored
        raise SealBroken("not a TOTP seed")
    try:
        return _box().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise SealBroken("no configured key opens this TOTP seed") from None


def totp_seed(user: StaffUser) -> str | None:
    """The user's TOTP seed in clear, or None (none set, or its key is gone)."""
    if not user.totp_secret:
        return None
    try:
        return unseal(user.totp_secret)
    except SealBroken:
        current_app.logger.error("totp seed of staff user %s cannot be opened with "
                                 "TOTP_KEY/SECRET_KEY; reset it with rewards create-staff",
                                 user.id)
        return None


def set_totp_seed(user: StaffUser, seed: str | None) -> None:
    user.totp_secret = seal(seed) if seed else None


def reseal(user: StaffUser) -> bool:
    """Seal a plain seed, or one under a previous key, under the current key. True if
    the stored value changed."""
    stored = user.totp_secret
    if not stored:
        return False
    if is_sealed(stored):
        try:
            _fernet_for(_current_material()).decrypt(stored.encode())
            return False  # already under the current key
        except InvalidToken:
            pass
        try:
            user.totp_secret = _box().rotate(stored.encode()).decode()
        except InvalidToken:
            return False
        return True
    seed = totp_seed(user)
    if seed is None:
        return False
    set_totp_seed(user, seed)
    return True
