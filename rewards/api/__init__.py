"""The HTTP API: one flask-smorest blueprint per audience."""

from __future__ import annotations

from flask_smorest import Api


def register_api(api: Api) -> None:
    from . import admin, admin_members, auth_views, health, me, partner, source

    api.register_blueprint(health.blp)
    api.register_blueprint(auth_views.blp)
    api.register_blueprint(me.blp)
    api.register_blueprint(me.offers_blp)
    api.register_blueprint(source.blp)
    api.register_blueprint(partner.blp)
    api.register_blueprint(admin.blp)
    api.register_blueprint(admin_members.blp)
