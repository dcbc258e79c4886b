"""Per-client rate limits, all in one table: which endpoint, which setting holds its
limit ("20 per minute;200 per day": one or more fixed windows). Counters live in Redis
when REDIS_URL is set (shared by every worker), in memory otherwise. A client is the
account a valid bearer token names, or the till an API key names, where the endpoint
checks that credential; else the address (behind TRUSTED_PROXIES proxies, the one they
saw). Every answer of a limited route carries RateLimit-Limit/-Remaining/-Reset; a 429
carries Retry-After too. Counting and the store are in rewards/limit_counts.py."""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, after_this_request, current_app, g, request
from werkzeug.exceptions import TooManyRequests
from werkzeug.http import parse_date
from werkzeug.local import LocalProxy
from werkzeug.middleware.proxy_fix import ProxyFix

from .config import ConfigurationError
from .limit_counts import Counts, Window, counts_for, windows
from .security import bearer_claims

log = logging.getLogger(__name__)

# endpoint -> (setting with its limit, methods it applies to)
LIMITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "auth.login": ("RATE_LIMIT_LOGIN", ("POST",)),
    "partner_pages.login": ("RATE_LIMIT_LOGIN", ("POST",)),
    "staff_pages.login": ("RATE_LIMIT_LOGIN", ("POST",)),
    # A password checked again with a token in hand: as many tries as a login.
    "auth.change_password": ("RATE_LIMIT_LOGIN", ("POST",)),
    "auth.otp": ("RATE_LIMIT_OTP", ("POST",)),
    # Mail to an address the caller names: an account changes its address now and then,
    # so far fewer than the login codes an address may ask for.
    "email_change.request_change": ("RATE_LIMIT_EMAIL_CHANGE", ("POST",)),
    "auth.token": ("RATE_LIMIT_CODE_CHECK", ("POST",)),
    "auth.refresh": ("RATE_LIMIT_REFRESH", ("POST",)),
    "me.Identifiers": ("RATE_LIMIT_LINK_CARD", ("POST",)),
    "me_actions.post_claim": ("RATE_LIMIT_CLAIM", ("POST",)),
    "me.Rewards": ("RATE_LIMIT_CLAIM", ("POST",)),
    "me_actions.SelfReports": ("RATE_LIMIT_SELF_REPORT", ("POST",)),
    # Points moved to a charity, as a claim moves them.
    "donations.MyDonations": ("RATE_LIMIT_CLAIM", ("POST",)),
    # Each change of a consent is a row of its history, kept for good.
    "me_privacy.Consents": ("RATE_LIMIT_CONSENTS", ("PUT",)),
    # Everything held about a member, read and written out in one request.
    "me_privacy.export": ("RATE_LIMIT_EXPORT", ("GET",)),
    "partner.check_voucher": ("RATE_LIMIT_REDEEM", ("GET",)),
    "partner.Redemptions": ("RATE_LIMIT_REDEEM", ("POST",)),
    "partner_pages.redeem_submit": ("RATE_LIMIT_REDEEM", ("POST",)),
    "partner_pages.check_submit": ("RATE_LIMIT_REDEEM", ("POST",)),
    # Card and PIN: a PIN check at a till, by API or on the partner page.
    "partner.post_card_redemption": ("RATE_LIMIT_PIN", ("POST",)),
    "partner_pages.card_submit": ("RATE_LIMIT_PIN", ("POST",)),
}

# Which credentials name the client at an endpoint: only those the endpoint itself
# checks (a request with a made-up one is refused there and does nothing). Anywhere
# else a header costs nothing to vary, and a fresh value per request would be a fresh
# count: there, and for every endpoint not listed, the client is the network address.
CREDENTIALS: dict[str, tuple[str, ...]] = {
    "email_change.request_change": ("bearer",),
    "me.Identifiers": ("bearer",),
    "me_actions.post_claim": ("bearer",),
    "me.Rewards": ("bearer",),
    "me_actions.SelfReports": ("bearer",),
    "donations.MyDonations": ("bearer",),
    "me_privacy.Consents": ("bearer",),
    "me_privacy.export": ("bearer",),
    "partner.check_voucher": ("api_key", "bearer"),
    "partner.Redemptions": ("api_key", "bearer"),
    "partner.post_card_redemption": ("api_key", "bearer"),
}

TOO_MANY = "Too many requests from this client; wait before trying again (see Retry-After)."

# Seconds the limiter waits for Redis to connect or answer. Counting a request is one
# round trip on a local network; a hung or unreachable Redis must not hold requests.
STORAGE_TIMEOUT = 0.5


def client_key() -> str:
    return _client(CREDENTIALS.get(request.endpoint or "", ()))


def _client(accepted: tuple[str, ...]) -> str:
    """The first of `accepted` the request carries, in the order the endpoint checks
    them: a till's key before a bearer token, as partner_required reads them, so a key
    sent with someone else's token still counts as the key's."""
    for credential in accepted:
        if credential == "api_key":
            api_key = request.headers.get("X-Api-Key")
            if api_key:
                return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
        elif credential == "bearer":
            payload = bearer_claims()
            if payload is not None:
                return f"{payload.get('role')}:{payload.get('sub')}"
    return f"addr:{request.remote_addr}"


def trust_proxies(app: Flask) -> None:
    """Behind TRUSTED_PROXIES reverse proxies, the client is the address the nearest of
    them saw (X-Forwarded-For), not the proxy; with 0 the header is ignored, since
    anyone can send it."""
    hops = app.config["TRUSTED_PROXIES"]
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops)


def storage_uri(config: Any) -> str:
    """Shared counters in Redis when the scheme has one; else this process's memory."""
    return config.get("REDIS_URL") or "memory://"


# This app's counters (`limiter.reset()` in an app context starts every count afresh).
limiter: Counts = LocalProxy(lambda: current_app.extensions["rate_limits"])  # type: ignore[assignment]


def init_limits(app: Flask) -> None:
    config = app.config
    trust_proxies(app)
    config.setdefault("RATELIMIT_STORAGE_URI", storage_uri(config))
    if config["RATELIMIT_STORAGE_URI"] != "memory://":
        # When Redis hangs or goes away, the first request to notice waits at most
        # STORAGE_TIMEOUT, then this process counts in its own memory, with the same
        # limits, and tries Redis again now and then (after 1, 2, 4 ... 32 s) until it
        # answers. Without this a hung Redis held every limited request (a claim, a
        # login) for as long as it hung, and one that refused connections turned every
        # limit off.
        config.setdefault("RATELIMIT_STORAGE_OPTIONS", {
            "socket_timeout": STORAGE_TIMEOUT, "socket_connect_timeout": STORAGE_TIMEOUT})
        config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    config.setdefault("RATELIMIT_KEY_PREFIX", f"{config.get('RQ_QUEUE_PREFIX', '')}rewards-limits")
    counts = app.extensions["rate_limits"] = counts_for(
        config["RATELIMIT_STORAGE_URI"], config.get("RATELIMIT_STORAGE_OPTIONS", {}),
        f"LIMITS:LIMITER/{config['RATELIMIT_KEY_PREFIX']}/",
        config.get("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", False))
    if not config.get("RATELIMIT_ENABLED", True):
        return
    table = dict(LIMITS)
    if config.get("RATELIMIT_DEFAULT"):
        # A limit for every other route (each its own count, any method): the scheme
        # sets none, but the setting is honoured if ever given.
        for endpoint in app.view_functions:
            if endpoint not in table and endpoint.rpartition(".")[2] != "static":
                table[endpoint] = ("RATELIMIT_DEFAULT", ())
    for setting in {setting for setting, _ in table.values()}:
        try:
            windows(config[setting])
        except ValueError as error:  # refused at start, not a 500 on the first request
            raise ConfigurationError(f"{setting}: {error}") from None
    for endpoint, (setting, methods) in table.items():
        view = app.view_functions.get(endpoint)
        if view is None:
            app.logger.warning("rate limit for %s: no such endpoint", endpoint)
            continue
        app.view_functions[endpoint] = _limited(
            view, endpoint, setting, methods, config, counts, CREDENTIALS.get(endpoint, ()))


def _limited(view: Callable[..., Any], endpoint: str, setting: str,
             methods: tuple[str, ...], config: Any, counts: Counts,
             accepted: tuple[str, ...]) -> Callable[..., Any]:
    """The view, counting each request it answers (with `methods`, or any when
    empty) against the limit in `setting`, read on each request."""

    @functools.wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        if not methods or request.method in methods:
            _count(config[setting], f"{_client(accepted)}/{endpoint}/", counts)
        return view(*args, **kwargs)

    return limited


def _count(limit: str, key: str, counts: Counts) -> None:
    """Count this request in each of the limit's windows, shortest first, up to the
    first that it goes over (a 429); the answer gets that window's headers, or the
    shortest's."""
    shown: tuple[Window, int, float] | None = None
    over = False
    for window in windows(limit):
        counted = counts.hit(key + window.name, window.seconds)
        if counted is None:  # no store answered: the request goes unlimited
            return
        if shown is None or counted[0] > window.amount:
            shown = (window, *counted)
        if counted[0] > window.amount:
            over = True
            log.info("rate limit %s exceeded by %s", window.name, key)
            break
    if shown is None:
        return
    window, count, ends = shown
    # For the answer, whatever it turns out to be (a function made once: Flask keeps
    # what it learns about each hook, so a closure a request would cost it each time).
    g.rate_limit = (str(window.amount), str(max(0, window.amount - count)), int(ends + 1))
    after_this_request(_headers)
    if over:
        raise TooManyRequests(TOO_MANY)


def _headers(response: Response) -> Response:
    limit, remaining, reset_at = g.rate_limit
    given = response.headers
    given.add("RateLimit-Limit", limit)
    given.add("RateLimit-Remaining", remaining)
    # Seconds until the window resets, as the IETF RateLimit header fields have it
    # (a Unix time here would read as a wait of decades to a client of the draft).
    given.add("RateLimit-Reset", str(max(0, int(reset_at - time.time()))))
    if response.status_code == 429:
        # The window's end, or the route's own Retry-After if that is later.
        given["Retry-After"] = str(int(max(_moment(given.get("Retry-After")), reset_at)
                                       - time.time()))
    return response


def _moment(retry_after: str | None) -> float:
    """A Retry-After (seconds or an HTTP date) as a Unix time; 0 for none."""
    if not retry_after:
        return 0
    if retry_after.isdigit():
        return time.time() + int(retry_after)
    moment = parse_date(retry_after)
    return moment.timestamp() if moment is not None else 0
