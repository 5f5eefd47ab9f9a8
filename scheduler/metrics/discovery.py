"""Prometheus HTTP service discovery for the agents' exporters (placeholder)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane


def scrape_targets(cp: ControlPlane) -> list[dict[str, Any]]:
    """Prometheus `http_sd_configs` answer: one target group per agent that serves metrics."""
    return []
