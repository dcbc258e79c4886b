"""`rewards link-code`, `rewards link-secret`, `rewards privacy ...`: privacy commands."""

from __future__ import annotations

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
    """Retention of personal data."""


@privacy_group.command("retention")
@click.option("--days", type=int, default=None,
              help="Override ACTION_DETAIL_RETENTION_DAYS for this run.")
@with_appcontext
def retention_command(days: int | None) -> None:
    """Coarsen the details (places, routes) of actions older than the retention period."""
    from flask import current_app

    from .extensions import db
    from .models import utcnow
    from .retention import coarsen_old_actions

    period = days if days is not None else int(current_app.config["ACTION_DETAIL_RETENTION_DAYS"])
    count = coarsen_old_actions(db.session, utcnow(), period)
    click.echo(f"{count} actions older than {period} days coarsened")


COMMANDS = [link_code_command, link_secret_command, privacy_group]
