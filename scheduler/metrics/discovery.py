"""Prometheus HTTP service discovery for the agents' exporters.

`GET /prometheus/targets` on the control plane's HTTP port answers Prometheus'
`http_sd_configs` (https://prometheus.io/docs/prometheus/latest/http_sd/): a JSON list of
target groups. One group per connected agent that reported a `metrics_url` in Register, with
the labels a dashboard groups by. Prometheus takes `__scheme__` and `__metrics_path__` from
the URL; a disconnected agent drops out, so Prometheus stops scraping it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane
    from scheduler.server.nodes import NodeRuntime


def target_group(node: str, url: str, labels: dict[str, str]) -> dict[str, Any] | None:
    """One http_sd group for an exporter URL; None for a URL Prometheus could not scrape."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    group_labels = {
        "__scheme__": parts.scheme,
        "__metrics_path__": parts.path or "/metrics",
        "node": node,
        **labels,
    }
    return {"targets": [parts.netloc], "labels": group_labels}


def _labels(rt: NodeRuntime) -> dict[str, str]:
    r = rt.record
    return {
        "rack": r.labels.get("rack", ""),
        "backend": r.backend,
        "simulated": "true" if r.simulated else "false",
    }


def scrape_targets(cp: ControlPlane) -> list[dict[str, Any]]:
    """Prometheus `http_sd_configs` answer: one target group per agent that serves metrics."""
    groups = []
    for rt in sorted(cp.nodes, key=lambda rt: rt.record.name):
        if rt.session is None or not rt.metrics_url:
            continue
        group = target_group(rt.record.name, rt.metrics_url, _labels(rt))
        if group is not None:
            groups.append(group)
    return groups
