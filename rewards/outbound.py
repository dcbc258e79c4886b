"""Calls the scheme makes to addresses staff typed in (partners' fulfilment endpoints):
never to this machine, its network or a cloud metadata service (SSRF), checked when
the address is saved and again, after DNS resolution, when it is called; the call goes
to the address that was checked (DNS cannot switch it in between), and the whole call,
however slowly the other side answers, ends by a deadline."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# Not covered by is_global in every Python version, named for clarity.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA_V6 = ipaddress.ip_network("fd00:ec2::/32")
# IETF protocol assignments, benchmarking, documentation: Python's flags vary by version.
_SPECIAL_V4 = tuple(ipaddress.ip_network(net) for net in (
    "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeAddress(ValueError):
    """The URL may not be called: its message says why (safe to show to staff)."""


class Unresolved(OSError):
    """The name could not be resolved just now: worth trying again later."""


class Deadline(TimeoutError):
    """The other side did not finish answering in time."""


def address_problem(ip: Address) -> str | None:
    """Why the scheme must not connect to `ip`, or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return address_problem(mapped)
        if ip.teredo is not None:
            return "a tunnelled (Teredo) address"
        if ip in _METADATA_V6:
            return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address (this machine)"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a shared (carrier-grade NAT) address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_private:
        return "a private network address"
    if ip.is_reserved or not ip.is_global or (
            isinstance(ip, ipaddress.IPv4Address) and any(ip in net for net in _SPECIAL_V4)):
        return "a reserved address"
    return None


def url_problem(url: str, *, allow_private: bool, allow_http: bool) -> str | None:
    """Why `url` may not be saved as an endpoint, or None. A name that resolves now is
    checked now; one that does not is checked again at every call."""
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError:
        return "The address is not a valid URL."
    if parts.scheme not in ("https", "http") or not host:
        return "The address must be an https:// URL."
    if parts.scheme == "http" and not allow_http:
        return "The address must use https (plain http is for local development only)."
    if parts.username or parts.password:
        return "The address must not carry a user name or password."
    if allow_private:
        return None
    if host.rstrip(".").lower() in ("localhost",) or host.endswith(".localhost"):
        return "The address points at this machine."
    try:
        for ip in resolve(host, parts.port or 443):
            problem = address_problem(ip)
            if problem:
                return f"The address resolves to {problem}; partners' endpoints must be public."
    except OSError:
        pass  # not resolvable now: refused at call time unless it becomes public
    return None


def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def safe_address(host: str, port: int, allow_private: bool) -> Address:
    """The address to connect to: every address the name has must be allowed (so a
    name with one public and one private record cannot be used to reach the private)."""
    try:
        addresses = resolve(host, port)
    except OSError as error:
        # A resolver that failed (a timeout, EAI_AGAIN, a name briefly missing while a
        # partner moves its DNS) says nothing about the address: an OSError, which
        # callers retry, not a refusal that fails the reward for good.
        raise Unresolved(f"{host} could not be resolved: {error}") from None
    if not addresses:
        raise Unresolved(f"{host} has no address")
    if not allow_private:
        for ip in addresses:
            problem = address_problem(ip)
            if problem:
                raise UnsafeAddress(f"{host} resolves to {problem}")
    return addresses[0]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with SNI and the certificate checked for the name."""

    def __init__(self, ip: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, ip: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


def post(url: str, body: bytes, headers: dict[str, str], *, deadline_seconds: float,
         allow_private: bool, allow_http: bool, max_answer_bytes: int) -> Answer:
    """POST `body` to `url` and read at most `max_answer_bytes` of the answer, all within
    `deadline_seconds` (connecting, sending and reading, however slowly bytes arrive).
    Redirects are answers, not followed. Raises UnsafeAddress, Deadline or OSError."""
    problem = url_problem(url, allow_private=True, allow_http=allow_http)
    if problem:
        raise UnsafeAddress(problem)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ends = time.monotonic() + deadline_seconds
    ip = safe_address(host, port, allow_private)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(str(ip), host, port, timeout=max(0.01, deadline_seconds))
    expired = threading.Event()

    def cut() -> None:
        # Wakes a read blocked on a partner trickling bytes: the deadline is for the
        # whole call, not for each read.
        expired.set()
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(max(0.0, ends - time.monotonic()), cut)
    timer.daemon = True
    timer.start()
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(max_answer_bytes)
        if expired.is_set():
            raise Deadline(f"no complete answer within {deadline_seconds:g} s")
        return Answer(response.status, data)
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set():
            raise Deadline(f"no complete answer within {deadline_seconds:g} s") from None
        if isinstance(error, OSError):
            raise
        raise OSError(f"bad HTTP answer: {error.__class__.__name__}") from None
    finally:
        timer.cancel()
        connection.close()
