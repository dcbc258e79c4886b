"""The two server keys: SECRET_KEY signs tokens and cookies, IDENTIFIER_KEY keys the
hashes of card numbers and one-time codes. Never a value printed in the source: in
development each is generated once and kept in the instance folder; anywhere else the
app refuses to start without a good one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

# Values that have been printed in this project's source or docs as a default or an
# example: a token signed with one of them can be forged by anyone who has read the code.
PUBLISHED_KEYS = frozenset({
    "dev-only-secret-change-me-before-going-live",
    "change-me", "changeme", "secret", "dev", "development", "...",
})
MIN_BYTES = {"SECRET_KEY": 32, "IDENTIFIER_KEY": 16, "TOTP_KEY": 32}
KEY_FILES = {"SECRET_KEY": "secret_key", "IDENTIFIER_KEY": "identifier_key"}


class UnsafeConfiguration(RuntimeError):
    """Raised by create_app: the scheme would run with a key anyone can know."""


def key_problem(name: str, value: str | None) -> str | None:
    """Why `value` will not do for the setting `name`, or None."""
    if not value:
        return f"{name} is not set"
    if len(value.encode()) < MIN_BYTES[name]:
        return f"{name} is shorter than {MIN_BYTES[name]} bytes"
    if value in PUBLISHED_KEYS:
        return f"{name} is a value published in the project's source"
    return None


def persisted_key(instance_dir: str, filename: str) -> str:
    """The key kept in instance/<filename> (mode 0600), made on first use."""
    path = Path(instance_dir) / filename
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    # O_EXCL: two processes starting at once keep the first one's key, not two.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def settle_keys(config: dict[str, Any]) -> None:
    """Fill in development keys from the instance folder, and refuse unsafe ones."""
    development = config["REWARDS_ENV"] == "development"
    for name, filename in KEY_FILES.items():
        if development and not config.get(name):
            config[name] = persisted_key(config["INSTANCE_DIR"], filename)
        problem = key_problem(name, config.get(name))
        if problem:
            raise UnsafeConfiguration(
                f"{problem}. Set {name} to a long random value, e.g. "
                f"`export {name}=$(openssl rand -hex 32)` (see docs/authentication.md).")
    # Optional: without it TOTP seeds are sealed under a key derived from SECRET_KEY.
    problem = config.get("TOTP_KEY") and key_problem("TOTP_KEY", config["TOTP_KEY"])
    if problem:
        raise UnsafeConfiguration(f"{problem}. Set TOTP_KEY to a long random value or unset "
                                  "it (see docs/authentication.md).")
    previous = config.get("IDENTIFIER_KEY_PREVIOUS")
    if previous and previous == config["IDENTIFIER_KEY"]:
        raise UnsafeConfiguration("IDENTIFIER_KEY_PREVIOUS equals IDENTIFIER_KEY; "
                                  "unset it or set the new key in IDENTIFIER_KEY.")


def check_login_settings(config: dict[str, Any]) -> None:
    """Relaxations only a local run or the test suite may have."""
    if config["REWARDS_ENV"] != "development" and not config.get("TESTING"):
        if not config["STAFF_TOTP_REQUIRED"]:
            raise UnsafeConfiguration("STAFF_TOTP_REQUIRED=0 is for development only: admins "
                                      "and scheme managers need a second factor.")
