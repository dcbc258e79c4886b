"""The staff dashboard pages through the Flask test client: logging in and out, who may
see them, and the language they speak. The figures themselves are in
tests/test_staff_figures_pages.py; the browser's view in tests/browser/."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from rewards.extensions import db
from rewards.models import StaffUser

from .helpers import make_staff

PASSWORD = "correct horse"


def csrf(page: bytes) -> str:
    match = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1).decode()


def log_in(client: FlaskClient, email: str, password: str = PASSWORD, **extra: str):
    form = client.get("/staff/login")
    assert form.status_code == 200
    return client.post("/staff/login", data={"email": email, "password": password,
                                             "csrf": csrf(form.data), **extra})


def test_pages_need_a_login(client: FlaskClient) -> None:
    for path in ("/staff/", "/staff/reach", "/staff/report?month=2026-01",
                 "/staff/figures/active.csv"):
        page = client.get(path)
        assert page.status_code == 302, path
        assert "/staff/login" in page.headers["Location"]


def test_wrong_password_and_unknown_address_are_refused_alike(client: FlaskClient,
                                                             app: Flask) -> None:
    make_staff(app, "ana@council.example", "analyst")
    wrong = log_in(client, "ana@council.example", "not it")
    unknown = log_in(client, "nobody@council.example")
    assert wrong.status_code == unknown.status_code == 401
    assert b"Email, password or authenticator code is not right." in wrong.data
    assert b"Email, password or authenticator code is not right." in unknown.data
    assert client.get("/staff/").status_code == 302


def test_roles_without_the_dashboard_cannot_log_in(client: FlaskClient, app: Flask) -> None:
    for role in ("reviewer", "desk"):
        make_staff(app, f"{role}@council.example", role)
        page = log_in(client, f"{role}@council.example")
        assert page.status_code == 403, role
        assert b"This account cannot see the dashboard." in page.data
        assert client.get("/staff/").status_code == 302


def test_a_form_without_its_token_is_refused(client: FlaskClient, app: Flask) -> None:
    make_staff(app, "ana@council.example", "analyst")
    client.get("/staff/login")
    page = client.post("/staff/login", data={"email": "ana@council.example",
                                             "password": PASSWORD, "csrf": "forged"})
    assert page.status_code == 400
    assert client.get("/staff/").status_code == 302


def test_login_goes_where_asked_but_only_on_the_staff_pages(client: FlaskClient,
                                                           app: Flask) -> None:
    make_staff(app, "ana@council.example", "analyst")
    assert client.get("/staff/money").headers["Location"].endswith(
        "/staff/login?next=/staff/money")
    page = log_in(client, "ana@council.example", next="/staff/money")
    assert page.status_code == 302
    assert page.headers["Location"].endswith("/staff/money")
    for elsewhere in ("https://evil.example/", "//evil.example/staff/", "/v1/admin/members",
                      # paths that leave the staff pages once a browser resolves them
                      "/staff/../v1/admin/members", "/staff/%2e%2e/v1/admin/members",
                      "/staff/.%2E/v1/admin/members", "/staff/money/./../../docs"):
        page = log_in(app.test_client(), "ana@council.example", next=elsewhere)
        assert page.status_code == 302
        assert page.headers["Location"].endswith("/staff/"), elsewhere


def test_a_next_with_a_line_break_is_ignored_not_a_server_error(client: FlaskClient,
                                                                app: Flask) -> None:
    # A Location header cannot carry a line break: such a next= would be a 500 after
    # the login had already been made. It is no path of the staff pages.
    make_staff(app, "ana@council.example", "analyst")
    for odd in ("/staff/\r\nSet-Cookie: a=b", "/staff/\nx", "/staff/\tmoney", "/staff/\x7f"):
        fresh = app.test_client()
        page = log_in(fresh, "ana@council.example", next=odd)
        assert page.status_code == 302, (odd, page.status_code)
        assert page.headers["Location"] == "/staff/", odd
        # Once logged in, the login page sends such a next= to the overview too.
        again = fresh.get("/staff/login", query_string={"next": odd})
        assert again.status_code == 302 and again.headers["Location"] == "/staff/", odd


def test_logout_needs_the_form_token_and_ends_the_session(client: FlaskClient,
                                                          app: Flask) -> None:
    make_staff(app, "ana@council.example", "analyst")
    assert log_in(client, "ana@council.example").status_code == 302
    token = csrf(_any_page_with_form(client))
    client.post("/staff/logout", data={"csrf": "forged"})
    assert client.get("/staff/login").status_code == 302  # still logged in
    client.post("/staff/logout", data={"csrf": token})
    assert client.get("/staff/login").status_code == 200
    assert client.get("/staff/").status_code == 302


def _any_page_with_form(client: FlaskClient) -> bytes:
    """A logged-in page carries the logout form's token; /staff/report needs no filters."""
    page = client.get("/staff/report?month=2026-01")
    assert page.status_code == 200, page.data[:300]
    return page.data


def test_a_disabled_account_or_changed_role_ends_its_session(client: FlaskClient,
                                                             app: Flask) -> None:
    make_staff(app, "ana@council.example", "analyst")
    assert log_in(client, "ana@council.example").status_code == 302
    assert client.get("/staff/report?month=2026-01").status_code == 200
    with app.app_context():
        user = db.session.scalar(select(StaffUser).where(StaffUser.email == "ana@council.example"))
        user.role = "reviewer"
        db.session.commit()
    assert client.get("/staff/report?month=2026-01").status_code == 302
    with app.app_context():
        user = db.session.scalar(select(StaffUser).where(StaffUser.email == "ana@council.example"))
        user.role, user.active = "analyst", False
        db.session.commit()
    assert client.get("/staff/report?month=2026-01").status_code == 302


def test_the_login_form_has_a_one_time_code_field(client: FlaskClient, app: Flask) -> None:
    page = client.get("/staff/login").data.decode()
    assert 'name="code"' in page and 'autocomplete="one-time-code"' in page
    make_staff(app, "ana@council.example", "analyst")
    # An account without a second factor logs in whether or not a code is typed.
    assert log_in(client, "ana@council.example", code="123456").status_code == 302


def test_welsh_from_the_switch_or_the_browser(client: FlaskClient) -> None:
    english = client.get("/staff/login").data.decode()
    assert '<html lang="en">' in english and "<h1>Staff login</h1>" in english
    welsh = client.get("/staff/login", headers={"Accept-Language": "cy-GB,cy;q=0.9,en;q=0.5"})
    assert welsh.headers["Content-Language"] == "cy"
    assert '<html lang="cy">' in welsh.data.decode()
    assert "<h1>Mewngofnodi staff</h1>" in welsh.data.decode()
    # ?lang= wins over the browser and is remembered for the session.
    assert "<h1>Mewngofnodi staff</h1>" in client.get("/staff/login?lang=cy").data.decode()
    again = client.get("/staff/login", headers={"Accept-Language": "en"}).data.decode()
    assert '<html lang="cy">' in again
    assert 'href="/staff/login?lang=en"' in again  # the switch back to English
    odd = client.get("/staff/login?next=/staff/money&group=x&_external=1&lang=cy")
    assert odd.status_code == 200
    assert 'href="/staff/login?next=/staff/money&amp;lang=en"' in odd.data.decode()
    back = client.get("/staff/login?lang=en").data.decode()
    assert "<h1>Staff login</h1>" in back


def test_pages_forbid_inline_script_and_framing(client: FlaskClient) -> None:
    page = client.get("/staff/login")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["Cache-Control"] == "no-store"


def test_a_session_lapses_after_the_staff_token_lifetime(client: FlaskClient,
                                                         app: Flask) -> None:
    make_staff(app, "ana@council.example", "analyst")
    assert log_in(client, "ana@council.example").status_code == 302
    assert client.get("/staff/report?month=2026-01").status_code == 200
    from datetime import timedelta

    from rewards.models import utcnow
    from rewards.models.login import LoginSession

    with app.app_context():  # the server-side session reaches its end
        login = db.session.scalars(select(LoginSession)).one()
        login.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert client.get("/staff/report?month=2026-01").status_code == 302


def test_a_session_left_idle_lapses_and_use_keeps_it_to_the_lifetime(client: FlaskClient,
                                                                     app: Flask) -> None:
    from datetime import timedelta

    from rewards.models import utcnow
    from rewards.models.login import LoginSession

    idle = timedelta(seconds=app.config["STAFF_PAGE_IDLE_SECONDS"])
    lifetime = timedelta(seconds=app.config["STAFF_TOKEN_TTL"])
    assert idle == timedelta(minutes=30) and lifetime == timedelta(hours=8)
    make_staff(app, "ana@council.example", "analyst")
    assert log_in(client, "ana@council.example").status_code == 302

    def login_row() -> LoginSession:
        return db.session.scalars(select(LoginSession)).one()

    with app.app_context():  # a fresh login ends after the idle time, not 8 hours on
        ends = login_row().expires_at
        assert utcnow() + idle - timedelta(seconds=30) < ends <= utcnow() + idle
        # Last used 25 minutes ago: five minutes left.
        login_row().expires_at = utcnow() + timedelta(minutes=5)
        db.session.commit()
    assert client.get("/staff/report?month=2026-01").status_code == 200
    with app.app_context():  # the request moved the end on
        assert login_row().expires_at > utcnow() + idle - timedelta(seconds=30)
        # Logged in 7 h 58 min ago and used all along: no further than the lifetime.
        row = login_row()
        row.created_at = utcnow() - lifetime + timedelta(minutes=2)
        row.expires_at = utcnow() + timedelta(seconds=30)
        db.session.commit()
    assert client.get("/staff/report?month=2026-01").status_code == 200
    with app.app_context():
        row = login_row()
        assert abs(row.expires_at - (row.created_at + lifetime)) < timedelta(seconds=1)
        # Left alone past its end (idle, or the lifetime reached): the page asks for a login.
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    page = client.get("/staff/report?month=2026-01")
    assert page.status_code == 302 and "/staff/login" in page.headers["Location"]
    # A request to a lapsed session does not bring it back.
    with app.app_context():
        assert login_row().expires_at < utcnow()


def test_logging_out_ends_the_session_even_for_a_copied_cookie(client: FlaskClient,
                                                              app: Flask) -> None:
    make_staff(app, "ana@council.example", "analyst")
    assert log_in(client, "ana@council.example").status_code == 302
    copied = client.get_cookie("session").value
    page = client.get("/staff/")
    assert page.status_code == 200
    assert client.post("/staff/logout", data={"csrf": csrf(page.data)}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/staff/").status_code == 302  # the session row is revoked


def test_a_password_change_ends_page_sessions(client: FlaskClient, app: Flask) -> None:
    from rewards.staff import set_password

    make_staff(app, "ana@council.example", "analyst")
    assert log_in(client, "ana@council.example").status_code == 302
    with app.app_context():
        user = db.session.scalar(select(StaffUser).where(StaffUser.email == "ana@council.example"))
        set_password(db.session, user, "a much longer new passphrase")
        db.session.commit()
    assert client.get("/staff/").status_code == 302


def test_page_logins_share_the_lockout_and_need_the_second_factor(client: FlaskClient,
                                                                  app: Flask) -> None:
    import pyotp

    from rewards.staff import enrol_now

    make_staff(app, "boss@council.example", "admin")
    with app.app_context():
        user = db.session.scalar(select(StaffUser).where(StaffUser.email == "boss@council.example"))
        secret, _uri = enrol_now(user)
        db.session.commit()
    assert log_in(client, "boss@council.example").status_code == 401  # no code
    assert log_in(client, "boss@council.example",
                  code=pyotp.TOTP(secret).now()).status_code == 302
    make_staff(app, "ana@council.example", "analyst")
    other = app.test_client()
    for _ in range(app.config["LOGIN_LOCK_AFTER"]):
        assert log_in(other, "ana@council.example", password="wrong guess").status_code == 401
    locked = log_in(other, "ana@council.example")  # the right password, while locked
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


def test_the_ward_filter_lists_the_councils_wards_not_the_wards_members_gave(
    client: FlaskClient, app: Flask
) -> None:
    """The list must not tell which wards have at least one member."""
    from rewards.models import Member

    from .reward_support import add_ward

    for ward in ("Alpha", "Bravo"):
        add_ward(app, ward)
    with app.app_context():
        db.session.add(Member(email="only@example.org", ward="Alpha"))
        db.session.commit()
    make_staff(app, "a@council.example", "analyst")
    assert log_in(client, "a@council.example").status_code == 302
    page = client.get("/staff/engagement").get_data(as_text=True)
    assert '<option value="Bravo"' in page and '<option value="Alpha"' in page


def test_a_sign_in_over_plain_http_with_secure_cookies_says_it_needs_https(
        client: FlaskClient, app: Flask) -> None:
    """Outside development the session cookie is Secure: a browser on plain http never
    sends it back, so every sign-in would fail as "the form expired". The page says what
    is wrong instead; over HTTPS the same sign-in works."""
    make_staff(app, "ana@council.example", "analyst")
    app.config["SESSION_COOKIE_SECURE"] = True
    form = client.get("/staff/login")
    client.delete_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))  # as the browser does
    refused = client.post("/staff/login", data={"email": "ana@council.example",
                                                "password": PASSWORD, "csrf": csrf(form.data)})
    assert refused.status_code == 400
    assert b"needs HTTPS" in refused.data and b"expired" not in refused.data
    client.delete_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    partner = client.post("/partner/login", data={"email": "x@example.org", "password": "y"})
    assert partner.status_code == 400 and b"needs HTTPS" in partner.data
    # Over HTTPS the cookie comes back and the sign-in goes through.
    secure = client.get("/staff/login", base_url="https://localhost")
    signed_in = client.post("/staff/login", base_url="https://localhost", data={
        "email": "ana@council.example", "password": PASSWORD, "csrf": csrf(secure.data)})
    assert signed_in.status_code == 302, signed_in.data[:300]
    # A form that really expired (cookie sent, token stale) still says so.
    stale = client.post("/staff/login", base_url="https://localhost", data={
        "email": "ana@council.example", "password": PASSWORD, "csrf": "stale"})
    assert b"expired" in stale.data
