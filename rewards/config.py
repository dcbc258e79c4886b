"""Settings read from the environment, with embedded defaults that need no services."""

from __future__ import annotations

import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _env_counts(name: str) -> dict[str, int]:
    """"code=n,code=n" (e.g. CONTROL_MAX_PER_HOUR_BY_TYPE="bus_journey=8,leisure_visit=2")."""
    pairs = (item.partition("=") for item in os.environ.get(name, "").split(",") if item.strip())
    return {code.strip(): int(count) for code, _, count in pairs}


class ConfigurationError(ValueError):
    """A setting with a value the scheme cannot run with (said in one line, by name)."""


def _job_setting(name: str, default: str, kind: type, least: float,
                 many: bool = False) -> list:
    """One number (or, with `many`, comma-separated numbers) of at least `least`."""
    raw = os.environ.get(name, "").strip() or default
    items = [item.strip() for item in raw.split(",")] if many else [raw]
    try:
        values = [kind(item) for item in items]
    except ValueError:
        values = []
    if not values or any(value < least for value in values):
        shape = "comma-separated whole seconds, e.g. 5,30,120" if many else \
            f"a {'whole ' if kind is int else ''}number, at least {least:g}"
        raise ConfigurationError(f"{name} must be {shape}, not {raw!r}")
    return values


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
        # A round trip before each use of a pooled connection. Workers and commands keep
        # it (a job's first attempt survives a database restart); the API under
        # gunicorn turns it off (rewards/gunicorn_conf.py): there it cost a round trip
        # on every request, and a dropped connection costs one 503 instead.
        self.DATABASE_PRE_PING: bool = env.get("DATABASE_PRE_PING", "1") == "1"
        # Seconds /readyz waits for the database's SELECT 1 (rewards/api/health.py).
        self.READINESS_DB_TIMEOUT: float = float(_env_int("READINESS_DB_TIMEOUT", 2))
        self.REDIS_URL: str | None = env.get("REDIS_URL") or None
        self.SMTP_URL: str | None = env.get("SMTP_URL") or None
        self.MAIL_FROM: str = env.get("MAIL_FROM", "rewards@localhost")
        # Signs tokens and cookies. Unset in development: generated once and kept in
        # instance/; anywhere else create_app refuses to start without one (rewards/keys.py).
        self.SECRET_KEY: str | None = env.get("SECRET_KEY") or None
        # Keyed hash of card numbers, never SECRET_KEY. To rotate it, move the old value to
        # IDENTIFIER_KEY_PREVIOUS (cards found under it are re-hashed on sight).
        self.IDENTIFIER_KEY: str | None = env.get("IDENTIFIER_KEY") or None
        self.IDENTIFIER_KEY_PREVIOUS: str | None = env.get("IDENTIFIER_KEY_PREVIOUS") or None
        self.SCHEME_NAME: str = env.get("SCHEME_NAME", "Leeds Rewards")
        self.SCHEME_TIMEZONE: str = env.get("SCHEME_TIMEZONE") or "Europe/London"
        try:
            ZoneInfo(self.SCHEME_TIMEZONE)
        except (ValueError, ZoneInfoNotFoundError):
            raise ConfigurationError("SCHEME_TIMEZONE must be an IANA time zone such as "
                                     f"Europe/Rome, not {self.SCHEME_TIMEZONE!r}") from None
        self.ACCESS_TOKEN_TTL: int = _env_int("ACCESS_TOKEN_TTL", 15 * 60)
        self.REFRESH_TOKEN_TTL: int = _env_int("REFRESH_TOKEN_TTL", 30 * 24 * 3600)
        self.STAFF_TOKEN_TTL: int = _env_int("STAFF_TOKEN_TTL", 8 * 3600)
        # A staff dashboard page session left without a request this long ends (a
        # council PC left unlocked), however long STAFF_TOKEN_TTL would still allow.
        self.STAFF_PAGE_IDLE_SECONDS: int = _env_int("STAFF_PAGE_IDLE_SECONDS", 30 * 60)
        self.OTP_TTL: int = _env_int("OTP_TTL", 10 * 60)
        self.OTP_MAX_ATTEMPTS: int = _env_int("OTP_MAX_ATTEMPTS", 5)
        self.OTP_PER_HOUR: int = _env_int("OTP_PER_HOUR", 5)
        self.SIGNATURE_TOLERANCE: int = _env_int("SIGNATURE_TOLERANCE", 300)
        self.ACTION_MAX_AGE_DAYS: int = _env_int("ACTION_MAX_AGE_DAYS", 30)
        self.ACTION_MAX_FUTURE_SECONDS: int = _env_int("ACTION_MAX_FUTURE_SECONDS", 300)
        self.MAX_BATCH_ITEMS: int = _env_int("MAX_BATCH_ITEMS", 1000)
        # Characters one item's attributes may hold (keys and text; a number counts 8).
        self.ACTION_ATTRIBUTES_MAX_CHARS: int = _env_int("ACTION_ATTRIBUTES_MAX_CHARS", 8192)
        # Characters a rule's condition or points formula may have (checked when saved
        # or simulated, before the engine compiles it; rewards/rules/shape.py).
        self.RULE_EXPRESSION_MAX_CHARS: int = _env_int("RULE_EXPRESSION_MAX_CHARS", 2000)
        # "inline": a source's batch is awarded in its own request (results carry the
        # points). "deferred": the request records the actions as pending and queues the
        # batch; a worker awards queued batches together (docs/ledger.md).
        self.AWARDING: str = env.get("AWARDING", "inline").strip().lower()
        if self.AWARDING not in ("inline", "deferred"):
            raise ConfigurationError(
                f"AWARDING must be inline or deferred, not {self.AWARDING!r}")
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
        # What one account may leave waiting for staff at once: a member's self-reports
        # not yet reviewed, a partner's offers proposed and not yet decided.
        self.SELF_REPORTS_PENDING_MAX: int = _env_int("SELF_REPORTS_PENDING_MAX", 15)
        self.OFFER_PROPOSALS_PENDING_MAX: int = _env_int("OFFER_PROPOSALS_PENDING_MAX", 20)
        # Push devices one member may register.
        self.DEVICES_PER_MEMBER: int = _env_int("DEVICES_PER_MEMBER", 10)
        # How long a printable claim-code sheet's signed link works, in seconds.
        self.EVENT_SHEET_LINK_TTL: int = _env_int("EVENT_SHEET_LINK_TTL", 3600)
        # Jobs and partners under faults (docs/jobs.md): attempts before a job gives up;
        # seconds before the 2nd, 3rd, ... attempt; one attempt's time limit (a killed
        # worker's job is sent again after it); a partner's fulfilment call; rewards
        # still pending this long are failed. A value that is not a number, or out of
        # range, stops the process at start with its name.
        self.JOB_MAX_ATTEMPTS: int = _job_setting("JOB_MAX_ATTEMPTS", "4", int, 1)[0]
        self.JOB_RETRY_INTERVALS: list[int] = _job_setting("JOB_RETRY_INTERVALS", "5,30,120",
                                                           int, 0, many=True)
        self.JOB_TIMEOUT_SECONDS: int = _job_setting("JOB_TIMEOUT_SECONDS", "30", int, 1)[0]
        self.PARTNER_TIMEOUT_SECONDS: float = _job_setting("PARTNER_TIMEOUT_SECONDS", "10",
                                                           float, 0.1)[0]
        self.REWARD_STUCK_AFTER_SECONDS: int = _job_setting("REWARD_STUCK_AFTER_SECONDS",
                                                            "21600", int, 60)[0]
        self.RQ_QUEUE_PREFIX: str = env.get("RQ_QUEUE_PREFIX", "")
        self.LOG_LEVEL: str = env.get("LOG_LEVEL", "INFO")
        # Dashboard: cells counting fewer members than this are suppressed; on the
        # embedded default a dashboard request refreshes rollups older than this many seconds.
        self.DASHBOARD_MIN_CELL: int = _env_int("DASHBOARD_MIN_CELL", 10)
        self.DASHBOARD_REFRESH_SECONDS: int = _env_int("DASHBOARD_REFRESH_SECONDS", 60)
        self.TESTING: bool = False
        # Cookies of the partner pages: HTTPS-only unless told otherwise (local runs).
        self.SESSION_COOKIE_SECURE: bool = env.get(
            "SESSION_COOKIE_SECURE", "0" if self.REWARDS_ENV == "development" else "1") == "1"
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        # Observability: log lines as JSON (outside development) or text; /metrics needs this
        # bearer token and is off (404) without it.
        self.LOG_FORMAT: str = env.get("LOG_FORMAT") or (
            "text" if self.REWARDS_ENV == "development" else "json")
        self.METRICS_TOKEN: str | None = env.get("METRICS_TOKEN") or None

        # flask-smorest
        self.API_TITLE = "Citizen Rewards API"
        self.API_VERSION = "v1"
        self.OPENAPI_VERSION = "3.0.3"
        self.OPENAPI_URL_PREFIX = "/"
        self.OPENAPI_JSON_PATH = "openapi.json"
        self.OPENAPI_SWAGGER_UI_PATH = "docs"
        self.OPENAPI_SWAGGER_UI_URL = None  # /docs is rewards/web/docs.py: no CDN
        self.API_SPEC_OPTIONS = {
            "info": {
                "description": "Citizen rewards scheme: actions earn points, "
                "residents spend them with local partners. Conventions (errors and their "
                "reasons, pagination, idempotency, caching): docs/api.md in the repository."
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
        # Push through APNs with token-based authentication: the team's .p8 key file, its
        # key id, the team id and the app's bundle id (the topic); unset, APNs tokens'
        # notifications go to the log. APNS_ENDPOINT: https://api.sandbox.push.apple.com
        # for development builds of the app.
        self.APNS_KEY_FILE: str | None = env.get("APNS_KEY_FILE") or None
        self.APNS_KEY_ID: str | None = env.get("APNS_KEY_ID") or None
        self.APNS_TEAM_ID: str | None = env.get("APNS_TEAM_ID") or None
        self.APNS_TOPIC: str | None = env.get("APNS_TOPIC") or None
        self.APNS_ENDPOINT: str = env.get("APNS_ENDPOINT", "https://api.push.apple.com")
        # The languages the scheme speaks (a member's locale is one of them). Texts a
        # language has no module for (rewards/languages/) are said in English.
        self.SCHEME_LANGUAGES: tuple[str, ...] = tuple(
            part.strip().lower() for part in env.get("SCHEME_LANGUAGES", "en,cy").split(",")
            if part.strip())
        bad = [code for code in self.SCHEME_LANGUAGES if not re.fullmatch(r"[a-z]{2,3}", code)]
        if bad or not self.SCHEME_LANGUAGES:
            raise ConfigurationError("SCHEME_LANGUAGES must be comma-separated language "
                                     f"codes such as en,cy or it,en, not {bad or ''!r}")
        # ISO 4217 code of the money offers' values and settlements are in.
        self.SCHEME_CURRENCY: str = (env.get("SCHEME_CURRENCY") or "GBP").strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", self.SCHEME_CURRENCY):
            raise ConfigurationError("SCHEME_CURRENCY must be an ISO 4217 code such as GBP "
                                     f"or EUR, not {self.SCHEME_CURRENCY!r}")
        # What a desk records of a resident's postcode (a regular expression on the
        # capitals without spaces); the default is the UK's outward code (LS6).
        self.POSTCODE_DISTRICT_PATTERN: str = (env.get("POSTCODE_DISTRICT_PATTERN")
                                               or r"[A-Z]{1,2}[0-9][A-Z0-9]?")
        try:
            re.compile(self.POSTCODE_DISTRICT_PATTERN)
        except re.error as error:
            raise ConfigurationError(
                f"POSTCODE_DISTRICT_PATTERN is not a regular expression: {error}") from None

        # Logins: lockout per account, rate limits per client, TOTP, sessions.
        self.LOGIN_LOCK_AFTER: int = _env_int("LOGIN_LOCK_AFTER", 5)
        self.LOGIN_LOCK_SECONDS: int = _env_int("LOGIN_LOCK_SECONDS", 60)
        self.LOGIN_LOCK_MAX_SECONDS: int = _env_int("LOGIN_LOCK_MAX_SECONDS", 3600)
        self.PIN_MAX_LOCKS: int = _env_int("PIN_MAX_LOCKS", 3)
        # A member changes their own ward at most once in this many days (0: any time,
        # the default; docs/security.md says when to set it).
        self.WARD_CHANGE_DAYS: int = _env_int("WARD_CHANGE_DAYS", 0)
        self.STAFF_PASSWORD_MIN_LENGTH: int = _env_int("STAFF_PASSWORD_MIN_LENGTH", 12)
        # Admins and scheme managers must enrol TOTP before their token does anything
        # else; "0" relaxes that (development and tests only; create_app refuses it otherwise).
        self.STAFF_TOTP_REQUIRED: bool = env.get("STAFF_TOTP_REQUIRED", "1") != "0"
        self.PARTNER_SESSION_TTL: int = _env_int("PARTNER_SESSION_TTL", 12 * 3600)
        self.TRUSTED_PROXIES: int = _env_int("TRUSTED_PROXIES", 0)
        self.RATELIMIT_ENABLED: bool = env.get("RATELIMIT_ENABLED", "1") != "0"
        self.RATE_LIMIT_LOGIN: str = env.get("RATE_LIMIT_LOGIN", "20 per minute;200 per day")
        self.RATE_LIMIT_OTP: str = env.get("RATE_LIMIT_OTP", "30 per minute;300 per hour")
        self.RATE_LIMIT_EMAIL_CHANGE: str = env.get("RATE_LIMIT_EMAIL_CHANGE",
                                                    "10 per hour;30 per day")
        self.RATE_LIMIT_CODE_CHECK: str = env.get("RATE_LIMIT_CODE_CHECK",
                                                  "30 per minute;300 per hour")
        self.RATE_LIMIT_REFRESH: str = env.get("RATE_LIMIT_REFRESH", "60 per minute")
        self.RATE_LIMIT_LINK_CARD: str = env.get("RATE_LIMIT_LINK_CARD", "10 per hour")
        self.RATE_LIMIT_CLAIM: str = env.get("RATE_LIMIT_CLAIM", "60 per minute")
        self.RATE_LIMIT_SELF_REPORT: str = env.get("RATE_LIMIT_SELF_REPORT", "20 per hour")
        self.RATE_LIMIT_CONSENTS: str = env.get("RATE_LIMIT_CONSENTS", "20 per hour;50 per day")
        self.RATE_LIMIT_EXPORT: str = env.get("RATE_LIMIT_EXPORT", "10 per hour")
        self.RATE_LIMIT_REDEEM: str = env.get("RATE_LIMIT_REDEEM", "120 per minute")
        self.RATE_LIMIT_PIN: str = env.get("RATE_LIMIT_PIN", "30 per minute")
        # Privacy and hardening (docs/security.md).
        # Cards a member may link, and how many days a card's link code works.
        self.IDENTIFIERS_PER_MEMBER: int = _env_int("IDENTIFIERS_PER_MEMBER", 5)
        self.LINK_CODE_VALID_DAYS: int = _env_int("LINK_CODE_VALID_DAYS", 3)
        # Wrong link codes for one card (from any accounts) before its linking locks,
        # with the staff logins' back-off (LOGIN_LOCK_SECONDS up to LOGIN_LOCK_MAX_SECONDS).
        self.LINK_CODE_LOCK_AFTER: int = _env_int("LINK_CODE_LOCK_AFTER", 10)
        # Versions of the terms and privacy notice a first login accepts (kept as consents).
        self.TERMS_VERSION: str = env.get("TERMS_VERSION", "1")
        self.PRIVACY_NOTICE_VERSION: str = env.get("PRIVACY_NOTICE_VERSION", "1")
        # Action attributes (places, routes) older than this many days are coarsened.
        self.ACTION_DETAIL_RETENTION_DAYS: int = _env_int("ACTION_DETAIL_RETENTION_DAYS", 400)
        self.JSON_MAX_DEPTH: int = _env_int("JSON_MAX_DEPTH", 32)
        # Values (keys, items, scalars) a JSON body read by a schema may hold.
        self.JSON_MAX_VALUES: int = _env_int("JSON_MAX_VALUES", 5000)
        self.MAIL_DROP_RESERVED: bool = env.get("MAIL_DROP_RESERVED", "1") == "1"
        # Partner endpoints: private/loopback addresses and plain http refused unless this is
        # set (tests, a partner system on the council's own network). PARTNER_TIMEOUT_SECONDS
        # (above) is the whole call's deadline.
        self.WEBHOOK_ALLOW_PRIVATE_NETWORKS: bool = env.get(
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS", "0") == "1"
        # TOTP seeds are encrypted at rest under TOTP_KEY (else a key derived from SECRET_KEY);
        # the previous value still opens old ones during a rotation (rewards/sealed.py).
        # Old login_sessions and login_throttles rows are deleted after this many days.
        self.TOTP_KEY: str | None = env.get("TOTP_KEY") or None
        self.TOTP_KEY_PREVIOUS: str | None = env.get("TOTP_KEY_PREVIOUS") or None
        self.LOGIN_RECORDS_RETENTION_DAYS: int = _env_int("LOGIN_RECORDS_RETENTION_DAYS", 30)
        # Stored answers to Idempotency-Key retries are deleted after this many days (a
        # retry later than that is judged afresh); self-report photos this many days after
        # the reviewer's decision (pending reports keep theirs). Nightly, rewards/retention.py.
        self.IDEMPOTENCY_RETENTION_DAYS: int = _env_int("IDEMPOTENCY_RETENTION_DAYS", 30)
        self.SELF_REPORT_PHOTO_RETENTION_DAYS: int = _env_int(
            "SELF_REPORT_PHOTO_RETENTION_DAYS", 90)

        for key, value in overrides.items():
            setattr(self, key, value)

    @property
    def DEVELOPMENT(self) -> bool:  # read as app.config["DEVELOPMENT"]
        return self.REWARDS_ENV == "development"

    @property
    def jobs_inline(self) -> bool:
        return not self.REDIS_URL
