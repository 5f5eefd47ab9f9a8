"""The control plane's /metrics (placeholder until the metrics work lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane


def render_metrics(cp: ControlPlane) -> tuple[bytes, str]:
    """The exposition text for one scrape, and its content type."""
    return generate_latest(CollectorRegistry()), CONTENT_TYPE_LATEST
