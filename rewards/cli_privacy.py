"""`rewards link-code`, `rewards link-secret`, `rewards privacy ...`: privacy commands."""

from __future__ import annotations

import uuid

import click
from flask.cli import with_appcontext

KINDS = ("travel_card", "leisure_card", "library_card", "resident_card")


@click.command("link-code")
@click.option("--kind", type=click.Choice(KINDS), default="travel_card", show_default=True)
@click.option("--number", required=True, help="The card number, as printed.")
@with_appcontext
def link_code_command(kind: str, number: str) -> None:
    """Today's link code for a card (a council desk, having seen the card)."""
    from .extensions import db
    from .linking import link_code, secret_for
    from .models import utcnow

    secret = secret_for(db.session, kind)
    if secret is None:
        raise click.ClickException(f"no link secret for {kind} yet: make one with "
                                   f"`rewards link-secret --kind {kind}`")
    click.echo(link_code(secret, kind, number, utcnow().date()))


@click.command("link-secret")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@with_appcontext
def link_secret_command(kind: str) -> None:
    """A new link secret for a card kind, printed once (old codes stop working)."""
    from .extensions import db
    from .linking import rotate_secret

    secret = rotate_secret(db.session, kind)
    db.session.commit()
    click.echo(secret)


@click.group("privacy")
def privacy_group() -> None:
    """Retention and erasure of personal data."""


@privacy_group.command("erase")
@click.argument("member_id", type=click.UUID)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def erase_command(member_id: uuid.UUID, yes: bool) -> None:
    """Erase a member's personal data, as DELETE /v1/me does: for a resident without
    the app (enrolled at a desk with a card and PIN) or asking in writing, once the
    council has checked who they are. Audited."""
    from .erasure import erase_member
    from .extensions import db
    from .models import AuditEntry, Member, utcnow

    member = db.session.get(Member, member_id)
    if member is None or member.erased_at is not None:
        raise click.ClickException(f"no member {member_id} to erase")
    if not yes:
        click.confirm(f"Erase member {member_id}? This cannot be undone", abort=True)
    erase_member(db.session, member, utcnow())
    db.session.add(AuditEntry(actor_id=None, actor_role="system", action="erase",
                              target_type="member", target_id=str(member_id),
                              details={"via": "rewards privacy erase"}))
    db.session.commit()
    click.echo(f"member {member_id} erased")


@privacy_group.command("retention")
@click.option("--days", type=int, default=None,
              help="Override ACTION_DETAIL_RETENTION_DAYS for this run.")
@with_appcontext
def retention_command(days: int | None) -> None:
    """Coarsen the details (places, routes) of actions older than the retention period,
    delete stored idempotent answers past IDEMPOTENCY_RETENTION_DAYS and decided
    self-reports' photos past SELF_REPORT_PHOTO_RETENTION_DAYS (as the nightly run does)."""
    from flask import current_app

    from .extensions import db
    from .models import utcnow
    from .retention import coarsen_old_actions, purge_idempotency_records, remove_decided_photos

    config, now = current_app.config, utcnow()
    period = days if days is not None else int(config["ACTION_DETAIL_RETENTION_DAYS"])
    count = coarsen_old_actions(db.session, now, period)
    click.echo(f"{count} actions older than {period} days coarsened")
    answer_days = int(config["IDEMPOTENCY_RETENTION_DAYS"])
    answers = purge_idempotency_records(db.session, now, answer_days)
    click.echo(f"{answers} idempotent answers older than {answer_days} days deleted")
    photo_days = int(config["SELF_REPORT_PHOTO_RETENTION_DAYS"])
    photos = remove_decided_photos(db.session, now, photo_days)
    click.echo(f"{photos} self-report photos decided over {photo_days} days ago deleted")


COMMANDS = [link_code_command, link_secret_command, privacy_group]
