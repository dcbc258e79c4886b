"""Per-client rate limits (flask-limiter), all in one table: which endpoint, which
setting holds its limit. Counters live in Redis when REDIS_URL is set (shared by every
worker), in memory otherwise. A client is the account a valid bearer token names, or
the till an API key names, where the endpoint checks that credential; else the address
(behind TRUSTED_PROXIES proxies, the one they saw). A 429 carries Retry-After and
RateLimit-Limit/-Remaining/-Reset."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, request
from flask_limiter import Limiter
from limits.storage import RedisStorage
from werkzeug.middleware.proxy_fix import ProxyFix

from .security import bearer_claims

# endpoint -> (setting with its limit, methods it applies to)
LIMITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "auth.login": ("RATE_LIMIT_LOGIN", ("POST",)),
    "partner_pages.login": ("RATE_LIMIT_LOGIN", ("POST",)),
    "staff_pages.login": ("RATE_LIMIT_LOGIN", ("POST",)),
    "auth.otp": ("RATE_LIMIT_OTP", ("POST",)),
    "auth.token": ("RATE_LIMIT_CODE_CHECK", ("POST",)),
    "auth.refresh": ("RATE_LIMIT_REFRESH", ("POST",)),
    "me.Identifiers": ("RATE_LIMIT_LINK_CARD", ("POST",)),
    "me_actions.post_claim": ("RATE_LIMIT_CLAIM", ("POST",)),
    "me.Rewards": ("RATE_LIMIT_CLAIM", ("POST",)),
    "me_actions.SelfReports": ("RATE_LIMIT_SELF_REPORT", ("POST",)),
    "partner.check_voucher": ("RATE_LIMIT_REDEEM", ("GET",)),
    "partner.Redemptions": ("RATE_LIMIT_REDEEM", ("POST",)),
    "partner_pages.redeem_submit": ("RATE_LIMIT_REDEEM", ("POST",)),
    # Card and PIN: a PIN check at a till, by API or on the partner page.
    "partner.post_card_redemption": ("RATE_LIMIT_PIN", ("POST",)),
    "partner_pages.card_submit": ("RATE_LIMIT_PIN", ("POST",)),
}

# Which credentials name the client at an endpoint: only those the endpoint itself
# checks (a request with a made-up one is refused there and does nothing). Anywhere
# else a header costs nothing to vary, and a fresh value per request would be a fresh
# count: there, and for every endpoint not listed, the client is the network address.
CREDENTIALS: dict[str, tuple[str, ...]] = {
    "me.Identifiers": ("bearer",),
    "me_actions.post_claim": ("bearer",),
    "me.Rewards": ("bearer",),
    "me_actions.SelfReports": ("bearer",),
    "partner.check_voucher": ("api_key", "bearer"),
    "partner.Redemptions": ("api_key", "bearer"),
    "partner.post_card_redemption": ("api_key", "bearer"),
}

TOO_MANY = "Too many requests from this client; wait before trying again (see Retry-After)."


def client_key() -> str:
    accepted = CREDENTIALS.get(request.endpoint or "", ())
    if "bearer" in accepted:
        payload = bearer_claims()
        if payload is not None:
            return f"{payload.get('role')}:{payload.get('sub')}"
    api_key = request.headers.get("X-Api-Key")
    if "api_key" in accepted and api_key:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    return f"addr:{request.remote_addr}"


limiter = Limiter(client_key, headers_enabled=True, swallow_errors=True)


@functools.cache
def _setting(name: str) -> Callable[[], str]:
    # One function per setting, so re-applying the table (a second app) adds nothing.
    def value() -> str:
        return current_app.config[name]

    value.__name__ = f"limit_{name}"
    return value


def trust_proxies(app: Flask) -> None:
    """Behind TRUSTED_PROXIES reverse proxies, the client is the address the nearest of
    them saw (X-Forwarded-For), not the proxy; with 0 the header is ignored, since
    anyone can send it."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops)


# Seconds the limiter waits for Redis to connect or answer. Counting a request is one
# round trip on a local network; a hung or unreachable Redis must not hold requests.
STORAGE_TIMEOUT = 0.5


def storage_uri(config: Any) -> str:
    """Shared counters in Redis when the scheme has one; else this process's memory."""
    return config.get("REDIS_URL") or "memory://"


ONE_TRIP = "counted+"


class OneTripRedisStorage(RedisStorage):
    """Redis counters that count a request and read its window in one round trip.

    limits' own Redis storage counts a hit with one script, then flask-limiter reads
    the count again (GET) and the window's end (TTL) for the RateLimit-* headers: three
    round trips on every limited request (a claim, a redemption). Here the counting
    script answers the count and the window's remaining seconds together, kept for the
    rest of the request, so the headers read them from memory. Chosen by the storage
    address `counted+redis://...` (init_limits makes it from REDIS_URL)."""

    STORAGE_SCHEME = [ONE_TRIP + scheme for scheme in ("redis", "rediss", "redis+unix")]
    SCRIPT_COUNT_AND_TTL = """
local current = redis.call("incrby", KEYS[1], ARGV[2])
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri.removeprefix(ONE_TRIP), wrap_exceptions=wrap_exceptions,
                         **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_count_and_ttl = self.get_connection().register_script(
            self.SCRIPT_COUNT_AND_TTL)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        current, ttl = self.lua_count_and_ttl([self.prefixed_key(key)], [expiry, amount])
        _counted()[key] = (int(current), max(int(ttl), 0) + time.time())
        return int(current)

    def get(self, key: str) -> int:
        known = _counted().get(key)
        return known[0] if known is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        known = _counted().get(key)
        return known[1] if known is not None else super().get_expiry(key)


def _counted() -> dict[str, tuple[int, float]]:
    """This request's counts (key -> count, window's end); outside a request, none
    kept."""
    if not has_app_context():
        return {}
    counted = g.get("_rate_counted")
    if counted is None:
        counted = g._rate_counted = {}
    return counted


def init_limits(app: Flask) -> None:
    config = app.config
    trust_proxies(app)
    config.setdefault("RATELIMIT_STORAGE_URI", storage_uri(config))
    if config["RATELIMIT_STORAGE_URI"].startswith(("redis://", "rediss://", "redis+unix://")):
        config["RATELIMIT_STORAGE_URI"] = ONE_TRIP + config["RATELIMIT_STORAGE_URI"]
    if config["RATELIMIT_STORAGE_URI"].startswith(ONE_TRIP):
        # When Redis hangs or goes away, the first request to notice waits at most
        # STORAGE_TIMEOUT (twice), then every process counts in its own memory, with the
        # same limits, and looks at Redis again now and then (after 1, 2, 4 ... 32 s)
        # until it answers. Without this a hung Redis held every limited request (a
        # claim, a login) for as long as it hung, and one that refused connections
        # turned every limit off.
        config.setdefault("RATELIMIT_STORAGE_OPTIONS", {
            "socket_timeout": STORAGE_TIMEOUT, "socket_connect_timeout": STORAGE_TIMEOUT})
        config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    config.setdefault("RATELIMIT_KEY_PREFIX", f"{config.get('RQ_QUEUE_PREFIX', '')}rewards-limits")
    config.setdefault("RATELIMIT_HEADER_LIMIT", "RateLimit-Limit")
    config.setdefault("RATELIMIT_HEADER_REMAINING", "RateLimit-Remaining")
    config.setdefault("RATELIMIT_HEADER_RESET", "RateLimit-Reset")
    config.setdefault("RATELIMIT_HEADER_RETRY_AFTER_VALUE", "delta-seconds")
    # flask-limiter puts Retry-After (its window's reset) on every answer of a limited
    # route: only a 429 means it; any other answer keeps its own, or has none. Hooks run
    # in reverse order: this one after the limiter's, the one below before it.
    app.after_request(_own_retry_after)
    limiter.init_app(app)
    app.after_request(_note_retry_after)
    _skip_unlimited_check(app)
    for endpoint, (setting, methods) in LIMITS.items():
        view = app.view_functions.get(endpoint)
        if view is None:
            app.logger.warning("rate limit for %s: no such endpoint", endpoint)
            continue
        app.view_functions[endpoint] = limiter.limit(
            _setting(setting), methods=list(methods), error_message=TOO_MANY)(view)


def _skip_unlimited_check(app: Flask) -> None:
    """flask-limiter checks every request before its view for the default and
    application-wide limits; the scheme has none (each limit is on its route, checked
    by the route's own wrapper), so that check finds nothing on any request and only
    costs time. It stays if such limits are ever configured."""
    manager = limiter.limit_manager
    if manager.default_limits or manager.application_limits or manager._blueprint_limits:
        return
    hooks = app.before_request_funcs.get(None, [])
    if limiter._check_request_limit in hooks:
        hooks.remove(limiter._check_request_limit)


def _note_retry_after(response: Response) -> Response:
    g.own_retry_after = response.headers.get("Retry-After")
    return response


def _own_retry_after(response: Response) -> Response:
    if response.status_code != 429:
        own = g.pop("own_retry_after", None)
        if own is None:
            response.headers.pop("Retry-After", None)
        else:
            response.headers["Retry-After"] = own
    return response
