"""Sends outbox rows that were not dispatched after their commit."""

from __future__ import annotations

from rewards import jobs

from . import job


@job
def relay() -> int:
    return jobs.relay()
