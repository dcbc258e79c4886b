"""Push notifications through one interface, `PushSender`: Firebase Cloud Messaging's
HTTP v1 API when FCM_CREDENTIALS is set, Apple's APNs (rewards/apns.py) when
APNS_KEY_FILE is set, the log otherwise (the embedded default); each device goes to
its own platform's service.

FCM's HTTP v1 API takes an OAuth 2 access token, got by signing a JWT with the
service account's private key (RS256) and exchanging it at the account's token_uri;
the token is kept until shortly before it expires. A token FCM says is no longer
registered comes back as INVALID_TOKEN so the caller forgets the device."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
from flask import Flask, current_app

log = logging.getLogger("rewards.push")

SENT, INVALID_TOKEN, FAILED = "sent", "invalid_token", "failed"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


@dataclass(frozen=True)
class PushMessage:
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)  # kind, ids: what the app opens


class PushSender(Protocol):
    def send(self, platform: str, token: str, message: PushMessage) -> str:
        """SENT, INVALID_TOKEN (forget the device) or FAILED (try another time)."""


class LogSender:
    """The embedded default: the notification goes to the log (and, under test, to
    app.extensions["sent_push"])."""

    def send(self, platform: str, token: str, message: PushMessage) -> str:
        log.info("push to %s device %s…: %s — %s", platform, token[:8], message.title,
                 message.body)
        if current_app.config.get("TESTING"):
            current_app.extensions.setdefault("sent_push", []).append((platform, token, message))
        return SENT


class FcmSender:
    def __init__(self, credentials: dict[str, Any], project_id: str | None = None,
                 endpoint: str = "https://fcm.googleapis.com", timeout: float = 10) -> None:
        self.credentials = credentials
        self.project_id = project_id or credentials["project_id"]
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def _access_token(self) -> str:
        with self._lock:
            if self._token is not None and self._token[1] > time.time() + 60:
                return self._token[0]
            now = int(time.time())
            assertion = jwt.encode(
                {"iss": self.credentials["client_email"], "scope": FCM_SCOPE,
                 "aud": self.credentials["token_uri"], "iat": now, "exp": now + 3600},
                self.credentials["private_key"], algorithm="RS256",
                headers={"kid": self.credentials.get("private_key_id", "")})
            form = urllib.parse.urlencode({
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion}).encode()
            request = urllib.request.Request(self.credentials["token_uri"], data=form,
                                             method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                granted = json.loads(answer.read())
            self._token = (granted["access_token"], now + int(granted.get("expires_in", 3600)))
            return self._token[0]

    def send(self, platform: str, token: str, message: PushMessage) -> str:
        body = json.dumps({"message": {
            "token": token,
            "notification": {"title": message.title, "body": message.body},
            "data": message.data,
        }}).encode()
        try:
            request = urllib.request.Request(
                f"{self.endpoint}/v1/projects/{self.project_id}/messages:send", data=body,
                method="POST", headers={"Content-Type": "application/json",
                                        "Authorization": f"Bearer {self._access_token()}"})
            with urllib.request.urlopen(request, timeout=self.timeout):
                return SENT
        except urllib.error.HTTPError as error:
            detail = error.read(64 * 1024).decode(errors="replace")
            if error.code == 404 or "UNREGISTERED" in detail:
                return INVALID_TOKEN
            log.warning("FCM answered %s: %s", error.code, detail[:500])
            return FAILED
        except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError) as error:
            log.warning("could not reach FCM: %s", error)
            return FAILED


class ByPlatform:
    """Each device through its own platform's service: `fcm` tokens to FCM, `apns`
    tokens to APNs; a platform without one set up goes to the log."""

    def __init__(self, senders: dict[str, PushSender], fallback: PushSender) -> None:
        self.senders, self.fallback = senders, fallback

    def send(self, platform: str, token: str, message: PushMessage) -> str:
        return self.senders.get(platform, self.fallback).send(platform, token, message)


def sender(app: Flask | None = None) -> PushSender:
    """The app's sender, made once: FCM when FCM_CREDENTIALS names a service-account
    file, APNs when APNS_KEY_FILE names the team's .p8 key, the log for the rest."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    made = app.extensions.get("push_sender")
    if made is None:
        made = ByPlatform(_configured(app.config), LogSender())
        app.extensions["push_sender"] = made
    return made


def _configured(config: Any) -> dict[str, PushSender]:
    senders: dict[str, PushSender] = {}
    path = config.get("FCM_CREDENTIALS")
    if path:
        with open(path, encoding="utf-8") as handle:
            credentials = json.load(handle)
        senders["fcm"] = FcmSender(credentials, config.get("FCM_PROJECT_ID"),
                                   config.get("FCM_ENDPOINT") or "https://fcm.googleapis.com")
    key_file = config.get("APNS_KEY_FILE")
    if key_file:
        from .apns import PRODUCTION, ApnsSender  # imports httpx only when APNs is used

        missing = [name for name in ("APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC")
                   if not config.get(name)]
        if missing:
            raise RuntimeError(f"APNS_KEY_FILE is set but {', '.join(missing)} is not")
        with open(key_file, encoding="utf-8") as handle:
            key = handle.read()
        senders["apns"] = ApnsSender(key, config["APNS_KEY_ID"], config["APNS_TEAM_ID"],
                                     config["APNS_TOPIC"],
                                     config.get("APNS_ENDPOINT") or PRODUCTION)
    return senders
