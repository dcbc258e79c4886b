"""`rewards staff ...`: list staff accounts, deactivate one, and find partners' ids
(which `rewards create-staff --role partner --partner-id ID` needs)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select


@click.group("staff")
def staff_group() -> None:
    """Staff and partner user accounts."""


@staff_group.command("list")
@click.option("--active-only", is_flag=True, help="Leave out deactivated accounts.")
@with_appcontext
def staff_list(active_only: bool) -> None:
    """Every staff account: email, role, partner, whether it is active."""
    from .extensions import db
    from .models import Partner
    from .staff_accounts import list_staff

    users = list_staff(db.session, include_inactive=not active_only)
    names = {p.id: p.name for p in db.session.scalars(select(Partner))}
    if not users:
        click.echo("no staff accounts yet: rewards create-staff --email E --role admin")
        return
    for user in users:
        partner = f"  partner={names.get(user.partner_id, user.partner_id)}" \
            if user.partner_id else ""
        state = "active" if user.active else "deactivated"
        click.echo(f"{user.email}  {user.role}  {state}{partner}")


@staff_group.command("deactivate")
@click.argument("email")
@with_appcontext
def staff_deactivate(email: str) -> None:
    """Take the account EMAIL out of use: it can no longer log in and its tokens stop
    working. `rewards create-staff` with the same email brings it back."""
    from .extensions import db
    from .staff_accounts import COMMAND_LINE, StaffRefused, deactivate, find_by_email

    user = find_by_email(db.session, email)
    if user is None:
        raise click.BadParameter(f"no staff account {email.strip().lower()!r}",
                                 param_hint="EMAIL")
    try:
        changed = deactivate(db.session, user, COMMAND_LINE)
    except StaffRefused as refused:
        db.session.rollback()
        raise click.ClickException(refused.message) from None
    db.session.commit()
    click.echo(f"{user.email} deactivated" if changed else f"{user.email} was already inactive")


@staff_group.command("partners")
@with_appcontext
def staff_partners() -> None:
    """Partners' ids and names, for `rewards create-staff --role partner --partner-id ID`."""
    from .extensions import db
    from .models import Partner

    partners = list(db.session.scalars(select(Partner).order_by(Partner.name)))
    if not partners:
        click.echo("no partners yet (rewards demo loads some; staff add them with "
                   "POST /v1/admin/partners)")
    for partner in partners:
        state = "" if partner.active else "  (inactive)"
        click.echo(f"{partner.id}  {partner.kind}  {partner.name}{state}")


@staff_group.command("seal-totp")
@with_appcontext
def staff_seal_totp() -> None:
    """Encrypt TOTP seeds still stored in clear (from before encryption at rest) or
    under TOTP_KEY_PREVIOUS, under the current key. Safe to run again."""
    from .extensions import db
    from .models import StaffUser
    from .sealed import reseal

    users = db.session.scalars(select(StaffUser).where(StaffUser.totp_secret.is_not(None)))
    changed = sum(1 for user in users if reseal(user))
    db.session.commit()
    click.echo(f"{changed} TOTP seed(s) sealed under the current key")


@staff_group.command("purge-logins")
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="Keep this many days (default LOGIN_RECORDS_RETENTION_DAYS).")
@with_appcontext
def staff_purge_logins(days: int | None) -> None:
    """Delete login sessions that ended, and lockout counters left idle, more than
    --days ago, and login codes asked for more than a day ago (also scheduled nightly by
    `rewards cron`)."""
    from workers.logins import purge_login_records

    counts = purge_login_records(days=days)
    click.echo(f"{counts['sessions']} login session(s), {counts['throttles']} lockout "
               f"counter(s) and {counts['login_codes']} login code(s) deleted")
