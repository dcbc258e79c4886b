"""Settings read from the environment, with embedded defaults that need no services."""

from __future__ import annotations

import os
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _env_counts(name: str) -> dict[str, int]:
    """"code=n,code=n" (e.g. CONTROL_MAX_PER_HOUR_BY_TYPE="bus_journey=8,leisure_visit=2")."""
    pairs = (item.partition("=") for item in os.environ.get(name, "").split(",") if item.strip())
    return {code.strip(): int(count) for code, _, count in pairs}


class Config:
    """Every setting the scheme reads. With nothing set it runs on a SQLite file,
    runs jobs in-process and prints mail to the log."""

    def __init__(self, **overrides: object) -> None:
        env = os.environ
        instance = Path(env.get("REWARDS_INSTANCE_DIR", Path.cwd() / "instance"))
        self.SQLALCHEMY_DATABASE_URI: str = env.get("DATABASE_URL") or (
            f"sqlite:///{instance / 'rewards.db'}"
        )
        # "development" relaxes what only a local run may relax (generated keys kept in
        # instance/, http webhooks, mail to the log); the embedded default is development,
        # anything with DATABASE_URL set is production unless REWARDS_ENV says otherwise.
        self.REWARDS_ENV: str = env.get("REWARDS_ENV") or (
            "production" if env.get("DATABASE_URL") else "development")
        self.INSTANCE_DIR: str = str(instance)
        self.REDIS_URL: str | None = env.get("REDIS_URL") or None
        self.SMTP_URL: str | None = env.get("SMTP_URL") or None
        self.MAIL_FROM: str = env.get("MAIL_FROM", "rewards@localhost")
        self.SECRET_KEY: str = (
            env.get("SECRET_KEY") or "dev-only-secret-change-me-before-going-live"
        )
        # Keyed hash of card numbers; rotating it orphans every linked card, so it is
        # separate from SECRET_KEY (which signs tokens and can rotate freely).
        self.IDENTIFIER_KEY: str = env.get("IDENTIFIER_KEY") or self.SECRET_KEY
        self.SCHEME_NAME: str = env.get("SCHEME_NAME", "Leeds Rewards")
        self.SCHEME_TIMEZONE: str = env.get("SCHEME_TIMEZONE", "Europe/London")
        self.ACCESS_TOKEN_TTL: int = _env_int("ACCESS_TOKEN_TTL", 15 * 60)
        self.REFRESH_TOKEN_TTL: int = _env_int("REFRESH_TOKEN_TTL", 30 * 24 * 3600)
        self.STAFF_TOKEN_TTL: int = _env_int("STAFF_TOKEN_TTL", 8 * 3600)
        self.OTP_TTL: int = _env_int("OTP_TTL", 10 * 60)
        self.OTP_MAX_ATTEMPTS: int = _env_int("OTP_MAX_ATTEMPTS", 5)
        self.OTP_PER_HOUR: int = _env_int("OTP_PER_HOUR", 5)
        self.SIGNATURE_TOLERANCE: int = _env_int("SIGNATURE_TOLERANCE", 300)
        self.ACTION_MAX_AGE_DAYS: int = _env_int("ACTION_MAX_AGE_DAYS", 30)
        self.ACTION_MAX_FUTURE_SECONDS: int = _env_int("ACTION_MAX_FUTURE_SECONDS", 300)
        self.MAX_BATCH_ITEMS: int = _env_int("MAX_BATCH_ITEMS", 1000)
        self.MAX_CONTENT_LENGTH: int = _env_int("MAX_CONTENT_LENGTH", 2 * 1024 * 1024)
        self.VOUCHER_VALID_DAYS: int = _env_int("VOUCHER_VALID_DAYS", 30)
        # Earned points expire this many months after they are earned (0: never).
        self.POINTS_EXPIRY_MONTHS: int = _env_int("POINTS_EXPIRY_MONTHS", 24)
        # GET /v1/me/balance lists the points expiring within this many days.
        self.POINTS_EXPIRING_SOON_DAYS: int = _env_int("POINTS_EXPIRING_SOON_DAYS", 30)
        # Controls before points are awarded; 0 turns one off. More than this many actions
        # of one type by one member within an hour are held for review (per type below).
        self.CONTROL_MAX_PER_HOUR: int = _env_int("CONTROL_MAX_PER_HOUR", 10)
        self.CONTROL_MAX_PER_HOUR_BY_TYPE: dict[str, int] = _env_counts(
            "CONTROL_MAX_PER_HOUR_BY_TYPE")
        # Two of a member's actions with attributes.lat/lon that imply faster travel
        # than this (km/h) hold the later one for review.
        self.CONTROL_MAX_SPEED_KMH: int = _env_int("CONTROL_MAX_SPEED_KMH", 200)
        # CSV uploads for sources without an API; self-reports' photos.
        self.CSV_IMPORT_MAX_BYTES: int = _env_int("CSV_IMPORT_MAX_BYTES", 5 * 1024 * 1024)
        self.CSV_IMPORT_MAX_ROWS: int = _env_int("CSV_IMPORT_MAX_ROWS", 50_000)
        self.SELF_REPORT_PHOTO_MAX_BYTES: int = _env_int("SELF_REPORT_PHOTO_MAX_BYTES",
                                                         2 * 1024 * 1024)
        self.SELF_REPORTS_PER_DAY: int = _env_int("SELF_REPORTS_PER_DAY", 5)
        # How long a printable claim-code sheet's signed link works, in seconds.
        self.EVENT_SHEET_LINK_TTL: int = _env_int("EVENT_SHEET_LINK_TTL", 3600)
        self.JOB_MAX_ATTEMPTS: int = _env_int("JOB_MAX_ATTEMPTS", 4)
        self.RQ_QUEUE_PREFIX: str = env.get("RQ_QUEUE_PREFIX", "")
        self.LOG_LEVEL: str = env.get("LOG_LEVEL", "INFO")
        self.TESTING: bool = False
        # Cookies of the partner pages: HTTPS-only unless told otherwise (local runs).
        self.SESSION_COOKIE_SECURE: bool = env.get("SESSION_COOKIE_SECURE", "0") == "1"
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"

        # flask-smorest
        self.API_TITLE = "Citizen Rewards API"
        self.API_VERSION = "v1"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "docs"
        self.OPENAPI_SWAGGER_UI_URL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
        self.API_SPEC_OPTIONS = {
            "info": {
                "description": "Citizen rewards scheme: actions earn points, "
                "residents spend them with local partners. See docs/api.md for conventions."
            },
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
                }
            },
        }
        self.JSON_SORT_KEYS = False
        # Longest request address (path and query) the API reads; longer is a JSON 414.
        self.MAX_URL_LENGTH: int = _env_int("MAX_URL_LENGTH", 4096)
        # Push through Firebase Cloud Messaging (HTTP v1): a service-account JSON file;
        # unset, push notifications go to the log.
        self.FCM_CREDENTIALS: str | None = env.get("FCM_CREDENTIALS") or None
        self.FCM_PROJECT_ID: str | None = env.get("FCM_PROJECT_ID") or None
        self.FCM_ENDPOINT: str = env.get("FCM_ENDPOINT", "https://fcm.googleapis.com")
        # The languages the scheme speaks (a member's locale is one of them), English first.
        self.SCHEME_LANGUAGES: tuple[str, ...] = tuple(
            part.strip() for part in env.get("SCHEME_LANGUAGES", "en,cy").split(",")
            if part.strip())

        for key, value in overrides.items():
            setattr(self, key, value)

    @property
    def DEVELOPMENT(self) -> bool:  # read as app.config["DEVELOPMENT"]
        return self.REWARDS_ENV == "development"

    @property
    def jobs_inline(self) -> bool:
        return not self.REDIS_URL
