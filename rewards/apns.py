"""Apple Push Notification service: token-based authentication and the HTTP/2 API.

Each request carries a provider token, a JWT signed ES256 with the team's .p8 key (kid:
the key's id, iss: the team id, iat: when made); Apple wants it renewed at most every 20
minutes and no later than after 60, so it is kept for 40. The notification is an HTTP/2
POST to /3/device/<token> with `apns-topic` (the app's bundle id) and `apns-push-type`.
A token Apple says is gone (410 Unregistered, 400 BadDeviceToken or
DeviceTokenNotForTopic) comes back as INVALID_TOKEN so the caller forgets the device."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import httpx
import jwt

from .push import FAILED, INVALID_TOKEN, SENT, PushMessage

log = logging.getLogger("rewards.push")

PRODUCTION = "https://api.push.apple.com"
TOKEN_LIFETIME = 40 * 60
GONE_REASONS = {"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"}
STALE_TOKEN_REASONS = {"ExpiredProviderToken", "InvalidProviderToken"}


def payload(message: PushMessage) -> dict[str, Any]:
    """The notification's JSON: the alert in `aps`, the app's own keys beside it."""
    return {"aps": {"alert": {"title": message.title, "body": message.body},
                    "sound": "default"}, **message.data}


def outcome(status: int, reason: str | None) -> str:
    if status == 200:
        return SENT
    if status == 410 or (status == 400 and reason in GONE_REASONS):
        return INVALID_TOKEN
    return FAILED


class ApnsSender:
    def __init__(self, key_pem: str, key_id: str, team_id: str, topic: str,
                 endpoint: str = PRODUCTION, timeout: float = 10) -> None:
        self.key_pem, self.key_id, self.team_id, self.topic = key_pem, key_id, team_id, topic
        self.endpoint = endpoint.rstrip("/")
        # One HTTP/2 connection, kept: Apple asks providers not to open one per push.
        # http1=False: HTTP/2 only (by ALPN over TLS; with prior knowledge on plain http).
        self._client = httpx.Client(http1=False, http2=True, timeout=timeout)
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def _provider_token(self) -> str:
        with self._lock:
            now = time.time()
            if self._token is None or self._token[1] <= now:
                signed = jwt.encode({"iss": self.team_id, "iat": int(now)}, self.key_pem,
                                    algorithm="ES256", headers={"kid": self.key_id})
                self._token = (signed, now + TOKEN_LIFETIME)
            return self._token[0]

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def send(self, platform: str, token: str, message: PushMessage) -> str:
        try:
            answer = self._client.post(
                f"{self.endpoint}/3/device/{token}",
                content=json.dumps(payload(message)).encode(),
                headers={"authorization": f"bearer {self._provider_token()}",
                         "apns-topic": self.topic, "apns-push-type": "alert",
                         "apns-priority": "10", "content-type": "application/json"})
        except (httpx.HTTPError, OSError, ValueError) as error:
            log.warning("could not reach APNs: %s", error)
            return FAILED
        reason = None
        if answer.status_code != 200:
            try:
                reason = answer.json().get("reason")
            except ValueError:
                reason = None
            if reason in STALE_TOKEN_REASONS:
                self._forget_token()  # a fresh one for the next push
            result = outcome(answer.status_code, reason)
            if result == FAILED:
                log.warning("APNs answered %s: %s", answer.status_code, reason)
            return result
        return SENT

    def close(self) -> None:
        self._client.close()
