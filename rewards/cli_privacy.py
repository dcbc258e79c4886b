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


COMMANDS = [link_code_command, link_secret_command]
