"""The HTTP API: one flask-smorest blueprint per audience."""

from __future__ import annotations

from flask_smorest import Api


def register_api(api: Api) -> None:
    from . import admin, admin_members, auth_views, health, me, partner, source
    from .catalogue import admin_blp as catalogue_admin_blp
    from .catalogue import offers_blp
    from .donations import blp as donations_blp
    from .settlement import blp as settlement_blp
    from .ways_in import BLUEPRINTS as ways_in_blueprints

    api.register_blueprint(health.blp)
    api.register_blueprint(auth_views.blp)
    api.register_blueprint(me.blp)
    api.register_blueprint(offers_blp)
    api.register_blueprint(source.blp)
    api.register_blueprint(partner.blp)
    api.register_blueprint(admin.blp)
    api.register_blueprint(catalogue_admin_blp)
    api.register_blueprint(settlement_blp)
    api.register_blueprint(donations_blp)
    api.register_blueprint(admin_members.blp)
    from .admin_staff import blp as admin_staff_blp

    api.register_blueprint(admin_staff_blp)
    for blueprint in ways_in_blueprints:
        api.register_blueprint(blueprint)
    from .dashboard import blp as dashboard_blp  # the staff dashboard's figures

    api.register_blueprint(dashboard_blp)
    # Privacy: link secrets, export, consents (rewards/api/admin_privacy.py, me_privacy.py).
    from .admin_privacy import blp as admin_privacy_blp
    from .me_privacy import blp as me_privacy_blp

    api.register_blueprint(admin_privacy_blp)
    api.register_blueprint(me_privacy_blp)
    from .devices import blp as devices_blp
    from .email_change import blp as email_change_blp
    from .partner_keys import blp as partner_keys_blp
    from .places import blp as places_blp
    from .scheme import blp as scheme_blp
    api.register_blueprint(partner_keys_blp)
    api.register_blueprint(scheme_blp)
    api.register_blueprint(places_blp)
    api.register_blueprint(devices_blp)
    api.register_blueprint(email_change_blp)

    from .contract import finish_spec  # last: it finishes what the blueprints declared
    finish_spec(api.spec)
