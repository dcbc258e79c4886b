"""Citizen rewards scheme backend. `create_app()` builds everything; importing does nothing."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from .config import Config
from .flaskapp import RewardsFlask


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    if config is None:
        config = Config()
    elif isinstance(config, dict):
        config = Config(**config)
    app = RewardsFlask(__name__)
    app.config.from_object(config)
    # Keys and login safety: refuse to start with a key anyone can know (rewards/keys.py).
    from . import logs, metrics
    from .keys import check_login_settings, settle_keys

    settle_keys(app.config)
    check_login_settings(app.config)
    logs.configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    from .api import register_api
    from .extensions import api, db
    from .web import bp as web_bp
    from .web.events import bp as event_pages
    from .web.partner import bp as partner_pages

    db.init_app(app)
    logs.init_app(app)  # request ids, first so every later hook and log line has one
    metrics.init_app(app)
    api.init_app(app)
    register_api(api)
    app.register_blueprint(web_bp)
    app.register_blueprint(partner_pages)
    app.register_blueprint(event_pages)
    from .web.staff import bp as staff_pages  # the council staff dashboard pages
    app.register_blueprint(staff_pages)
    # Security headers, JSON nesting limit, /docs served from a package (no CDN).
    from . import hardening
    from .web.docs import bp as docs_pages

    hardening.init_app(app)
    app.register_blueprint(docs_pages)
    from .limits import init_limits

    init_limits(app)  # after every route exists: it wraps the limited ones

    from . import jobs

    @app.after_request
    def _dispatch_jobs(response):
        # Jobs written to the outbox by this request's committed transaction.
        try:
            jobs.dispatch_pending()
        except Exception:  # the change is committed; the relay will send it later
            app.logger.exception("could not dispatch jobs after commit")
        return response

    # `flask --app rewards ...` has the `rewards ...` commands.
    from .cli import register_commands

    register_commands(app)
    return app
