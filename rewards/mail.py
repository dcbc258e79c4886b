"""Outgoing mail: SMTP when SMTP_URL is set, otherwise printed to the log (in development
only: elsewhere the log never holds a message's text, which carries one-time codes)."""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlparse

from flask import current_app

log = logging.getLogger("rewards.mail")

# Each step of talking to the mail server (connecting, each command's answer) may take
# this long, and the whole exchange SMTP_DEADLINE_SECONDS: a login code is mailed inside
# its request, which must end well inside gunicorn's 30 s timeout even when every step
# of a slow server takes just under its own limit.
SMTP_TIMEOUT_SECONDS = 10.0
SMTP_DEADLINE_SECONDS = 20.0


class InsecureRelay(RuntimeError):
    """The relay does not offer STARTTLS, so its password would travel in clear."""


class MailUnavailable(RuntimeError):
    """The mail server could not be reached, or did not take the message in time (down,
    refusing, hung): a passing outage. A request that had to send mail answers 503
    with Retry-After (rewards/extensions.py); a job fails its attempt and is retried."""


def send_mail(to: str, subject: str, body: str) -> None:
    app = current_app
    url = app.config.get("SMTP_URL")
    if not url and not app.config.get("TESTING"):
        # Nothing will send it: no message is built (a batch's notices can be many).
        if app.config.get("DEVELOPMENT"):
            log.info("mail to %s: %s\n%s", to, subject, body)
        else:
            # Subject and body hold login codes: never in a production log.
            log.warning("mail to %s not sent: SMTP_URL is not set", masked(to))
        return
    message = EmailMessage()
    message["From"] = app.config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    if app.config.get("TESTING"):
        app.extensions.setdefault("sent_mail", []).append(message)
    if not url:
        # Tests read the message from sent_mail: the log holds no more than elsewhere.
        log.info("mail to %s kept for the tests (no SMTP_URL)", masked(to))
        return
    if app.config.get("MAIL_DROP_RESERVED", True) and reserved(to):
        # RFC 2606 names (the demo's residents): never handed to a real mail server.
        log.info("mail to reserved address %s dropped (MAIL_DROP_RESERVED=1)", masked(to))
        return
    try:
        deliver(url, message)
    except (OSError, smtplib.SMTPException) as error:
        # OSError covers refused and timed-out connections (socket.timeout is one).
        # A refusal names the addresses it refused (and a server's answer may quote it).
        detail = f"{error.__class__.__name__}: {_without_addresses(str(error))}"
        log.warning("mail to %s not sent: %s", masked(to), detail)
        # Not chained to `error`: the traceback a job or request logs would print it
        # with the addresses in it.
        raise MailUnavailable(f"the mail server did not take the message: {detail}") from None


def deliver(url: str, message: EmailMessage) -> None:
    """smtps:// is TLS from the start; smtp:// upgrades with STARTTLS whenever the relay
    offers it, and a relay that does not is never sent the password."""
    parts = urlparse(url)
    context = ssl.create_default_context()
    host = parts.hostname or "localhost"
    # Past the deadline the connection is cut: the step waiting on it fails at once.
    opened: list[smtplib.SMTP] = []
    expired = threading.Event()
    deadline = threading.Timer(SMTP_DEADLINE_SECONDS, _cut, args=(opened, expired))
    deadline.daemon = True
    deadline.start()
    try:
        if parts.scheme == "smtps":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, parts.port or 465,
                                                  timeout=SMTP_TIMEOUT_SECONDS, context=context)
        else:
            smtp = smtplib.SMTP(host, parts.port or 25, timeout=SMTP_TIMEOUT_SECONDS)
        opened.append(smtp)
        if expired.is_set():  # it ran out while connecting and greeting
            smtp.close()
            raise TimeoutError(f"no mail delivered within {SMTP_DEADLINE_SECONDS:g} seconds")
        _exchange(smtp, parts, host, context, message)
    finally:
        deadline.cancel()


def _cut(opened: list[smtplib.SMTP], expired: threading.Event) -> None:
    expired.set()
    for smtp in opened:
        sock = getattr(smtp, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _exchange(smtp: smtplib.SMTP, parts: Any, host: str, context: ssl.SSLContext,
              message: EmailMessage) -> None:
    with smtp:
        if parts.scheme != "smtps":
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            elif parts.username:
                raise InsecureRelay(f"{host} offers no STARTTLS: not sending the password")
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(message)


def masked(address: str) -> str:
    """a***@example.org: enough to tell addresses apart in a log, not to collect them."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"


_ADDRESS = re.compile(r"[^\s<>()\[\]{}'\",;:]+@[A-Za-z0-9.-]+")


def _without_addresses(text: str) -> str:
    """`text` with every address in it masked."""
    return _ADDRESS.sub(lambda match: masked(match[0]), text)


RESERVED_DOMAINS = ("example.org", "example.com", "example.net")
RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost")


def reserved(address: str) -> bool:
    domain = address.rpartition("@")[2].lower()
    return domain in RESERVED_DOMAINS or domain.endswith(RESERVED_SUFFIXES)
