"""Staff and partner users' credentials: the password rule, logging in (with the
lockout and the TOTP second factor), TOTP enrolment, password changes."""

from __future__ import annotations

import functools
import gzip
import re
import secrets
import time
from importlib import resources

import pyotp
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .models import StaffUser, utcnow
from .models.login import LoginThrottle
from .sealed import reseal, set_totp_seed, totp_seed
from .sessions import revoke_all
from .throttle import (
    Locked,
    check_not_locked,
    lock_row,
    record_failure,
    record_success,
    throttle_key,
)

# Roles whose token can change the scheme's money and people: they need a second factor.
TOTP_ROLES = ("admin", "scheme_manager")
TOTP_PERIOD = 30


@functools.cache
def common_passwords() -> frozenset[str]:
    data = resources.files("rewards").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode().split())


def password_problem(password: str, min_length: int = 12) -> str | None:
    """Why a staff password will not do, or None: long enough, and not a common
    password (nor one with spaces, digits or symbols added around it)."""
    if len(password) < min_length:
        return f"Use at least {min_length} characters."
    lowered = password.lower()
    candidates = {lowered, re.sub(r"\s+", "", lowered),
                  re.sub(r"^[\W\d_]+|[\W\d_]+$", "", lowered)}
    common = common_passwords()
    if len(set(lowered)) <= 2 or any(c in common for c in candidates if c):
        return "This password is on a list of common passwords; choose another."
    return None


def set_password(session: Session, user: StaffUser, password: str) -> None:
    """Set a new password (ValueError with the reason if it will not do) and end every
    session the old one opened. In the caller's transaction."""
    problem = password_problem(password, current_app.config["STAFF_PASSWORD_MIN_LENGTH"])
    if problem:
        raise ValueError(problem)
    user.password_hash = generate_password_hash(password)
    if user.id is not None:
        revoke_all(session, "password_changed", staff_user_id=user.id)


# -- logging in -----------------------------------------------------------------------

class LoginRefused(Exception):
    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after  # set when the account is locked


WRONG = ("Email, password or authenticator code is not right (admins and scheme managers "
         "also send the 6-digit code as totp_code).")


@functools.cache
def _dummy_password_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def login_throttle(session: Session, email: str) -> LoginThrottle:
    """The address's failed-login counter, locked for this transaction; LoginRefused
    (with retry_after, committed) while wrong tries have locked the address."""
    throttle = lock_row(session, throttle_key("login", email))
    try:
        check_not_locked(throttle)
    except Locked as locked:
        session.commit()
        raise LoginRefused(f"Too many failed logins for this account; try again in "
                           f"{locked.retry_after} seconds.",
                           retry_after=locked.retry_after) from None
    return throttle


def authenticate(session: Session, email: str, password: str,
                 totp_code: str | None = None) -> StaffUser:
    """The user these credentials open, or LoginRefused. Commits (failures are kept).
    An address locked after wrong tries is refused even with the right password, and
    unknown addresses lock the same way, so the answers say nothing about who exists."""
    email = email.strip().lower()
    throttle = login_throttle(session, email)
    user = session.scalar(select(StaffUser).where(StaffUser.email == email))
    # Hash the password even for an unknown address, so timing does not tell them apart.
    password_ok = check_password_hash(
        user.password_hash if user is not None else _dummy_password_hash(), password)
    if user is None or not user.active or not password_ok:
        record_failure(throttle)
        session.commit()
        raise LoginRefused(WRONG)
    # A missing or wrong second-factor code is answered like a wrong password, so the
    # answer never tells a guesser that the password was right.
    if user.totp_enabled_at is not None and not (totp_code and verify_totp(user, totp_code)):
        record_failure(throttle)
        session.commit()
        raise LoginRefused(WRONG)
    record_success(throttle)
    session.commit()
    return user


# -- TOTP -----------------------------------------------------------------------------

def needs_enrolment(user: StaffUser) -> bool:
    """An admin or scheme manager who has not confirmed a second factor yet: their
    token may only enrol (unless STAFF_TOTP_REQUIRED is off, for demos and tests)."""
    return (user.role in TOTP_ROLES and user.totp_enabled_at is None
            and current_app.config["STAFF_TOTP_REQUIRED"])


def provisioning_uri(user: StaffUser, seed: str) -> str:
    return pyotp.TOTP(seed, interval=TOTP_PERIOD).provisioning_uri(
        name=user.email, issuer_name=current_app.config["SCHEME_NAME"])


def begin_enrolment(user: StaffUser) -> tuple[str, str]:
    """A fresh secret (replacing an unconfirmed one), kept sealed (rewards/sealed.py):
    the secret in clear, to show once, and its otpauth:// URI for the app."""
    seed = pyotp.random_base32()
    set_totp_seed(user, seed)
    user.totp_enabled_at = None
    user.totp_last_step = None
    return seed, provisioning_uri(user, seed)


def verify_totp(user: StaffUser, code: str, now: float | None = None) -> bool:
    """The code of the current 30-second step (or one either side, for clock drift),
    never one already used: a code seen over a shoulder cannot be replayed."""
    seed = totp_seed(user)
    if seed is None or not re.fullmatch(r"[0-9]{6}", code or ""):  # ASCII: \d takes any digit
        return False
    totp = pyotp.TOTP(seed, interval=TOTP_PERIOD)
    step_now = int((time.time() if now is None else now) // TOTP_PERIOD)
    for step in (step_now - 1, step_now, step_now + 1):
        if user.totp_last_step is not None and step <= user.totp_last_step:
            continue
        if secrets.compare_digest(totp.generate_otp(step), code):
            user.totp_last_step = step
            reseal(user)  # a seed from before encryption, or under TOTP_KEY_PREVIOUS
            return True
    return False


def confirm_enrolment(user: StaffUser, code: str) -> bool:
    if user.totp_secret is None or not verify_totp(user, code):
        return False
    user.totp_enabled_at = utcnow()
    return True


def enrol_now(user: StaffUser) -> tuple[str, str]:
    """Enrolled at once (the command line, whose operator receives the secret): the
    secret in clear and its URI."""
    seed, uri = begin_enrolment(user)
    user.totp_enabled_at = utcnow()
    return seed, uri
