"""The blueprints of the ways actions reach the scheme (besides source.py's batches):
source keys and CSV uploads, events and claim codes, self-reports and reviews, desks."""

from __future__ import annotations

from . import admin_sources, desk, events, me_actions, reviews

BLUEPRINTS = (admin_sources.blp, events.blp, reviews.blp, desk.blp, me_actions.blp)
