"""Formatting of nodes, devices and the cluster status."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from corral.v1 import common_pb2, node_pb2
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from scheduler.cli.render import (
    DASH,
    add_row,
    ago,
    enum_label,
    format_age,
    format_bytes,
    format_duration,
    format_latency,
    format_time,
    new_table,
    styled,
)

SIMULATED_STYLE = "bold magenta"
# `corral node` lists this many of the newest health changes; -o json has all the server sent.
HEALTH_HISTORY_SHOWN = 20


def node_state_label(state: int) -> str:
    return enum_label(node_pb2.NodeState, state, "NODE_STATE_")


def health_label(health: int) -> str:
    return enum_label(common_pb2.DeviceHealth, health, "DEVICE_HEALTH_") if health else DASH


def throttle_label(reason: int) -> str:
    return enum_label(common_pb2.ThrottleReason, reason, "THROTTLE_REASON_").lower()


def device_summary(devices: Sequence[Any]) -> str:
    """'8× H100-SXM5-80GB', or several models joined: '4× A, 2× B'."""
    counts = Counter(d.model or d.vendor or "device" for d in devices)
    return ", ".join(f"{n}× {model}" for model, n in counts.items()) or DASH


def backend_text(node: Any) -> Text:
    if node.simulated or node.backend == "simulated":
        label = "simulated" if node.backend in ("", "simulated") else f"{node.backend} (simulated)"
        return Text(label, style=SIMULATED_STYLE)
    return Text(node.backend or DASH)


def node_flags(node: Any) -> str:
    flags = [name for name, on in (("cordoned", node.cordoned), ("draining", node.draining)) if on]
    return ",".join(flags) or DASH


def total_power_w(node: Any) -> float | None:
    return sum(t.power_w for t in node.telemetry) if node.telemetry else None


def max_temperature_c(node: Any) -> float | None:
    return max(t.temperature_c for t in node.telemetry) if node.telemetry else None


def node_health_text(node: Any) -> Text:
    """The node's health, '-' from a server that does not report it."""
    return styled(node.health) if node.health else Text(DASH)


def list_flags(node: Any) -> str:
    """node_flags plus the hot spare mark (`corral nodes` only: a spare is still schedulable)."""
    flags = [f for f in node_flags(node).split(",") if f != DASH]
    if node.hot_spare:
        flags.append("hot-spare")
    return ",".join(flags) or DASH


def nodes_table(nodes: Sequence[Any], now: float | None = None) -> Table:
    table = new_table(
        "NAME", "STATE", "HEALTH", "BACKEND", "DEVICES", "FREE", "POWER", "TEMP", "FLAGS", "LAST SEEN"
    )
    for node in nodes:
        power = total_power_w(node)
        temp = max_temperature_c(node)
        add_row(
            table,
            node.name,
            styled(node_state_label(node.state)),
            node_health_text(node),
            backend_text(node),
            device_summary(node.devices),
            f"{node.devices_free}/{len(node.devices)}",
            DASH if power is None else f"{power:.0f} W",
            DASH if temp is None else f"{temp:.0f}°C",
            list_flags(node),
            format_age(node.last_seen, now),
        )
    return table


def device_table(node: Any) -> Table:
    table = new_table(
        "IDX", "MODEL", "MEMORY", "POWER / LIMIT", "TEMP", "UTIL", "MEM USED", "THROTTLE", "ECC C/U", "HEALTH"
    )
    samples = {t.index: t for t in node.telemetry}
    for device in sorted(node.devices, key=lambda d: d.index):
        model = Text(device.model or DASH)
        if device.simulated:
            model.append(" (simulated)", style=SIMULATED_STYLE)
        sample = samples.get(device.index)
        if sample is None:
            live = [DASH] * 6
        else:
            limit = sample.power_limit_w or device.power_limit_default_w
            live = [
                f"{sample.power_w:.0f} / {limit:.0f} W" if limit else f"{sample.power_w:.0f} W",
                f"{sample.temperature_c:.0f}°C",
                f"{sample.utilization_pct:.0f}%",
                format_bytes(sample.memory_used_bytes),
                ",".join(throttle_label(r) for r in sample.throttle_reasons) or DASH,
                f"{sample.ecc_corrected_total}/{sample.ecc_uncorrected_total}",
            ]
        add_row(
            table,
            str(device.index),
            model,
            format_bytes(device.memory_bytes) if device.memory_bytes else DASH,
            *live,
            styled(health_label(device.health)),
        )
    return table


def node_detail(node: Any, now: float | None = None) -> RenderableType:
    info = Table(box=None, show_header=False, pad_edge=False)
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    reason = f" ({node.cordon_reason})" if node.cordon_reason else ""
    rows: list[tuple[str, str | Text]] = [
        ("name", node.name),
        ("state", styled(node_state_label(node.state))),
        ("health", node_health_text(node)),
        ("hot spare", "yes (held for gangs recovering from a failure)" if node.hot_spare else "no"),
        ("backend", backend_text(node)),
        ("address", node.address or DASH),
        ("agent", node.agent_version or DASH),
        ("flags", node_flags(node) + reason),
        ("devices", f"{device_summary(node.devices)} ({node.devices_free} free)"),
        ("last seen", ago(node.last_seen, now)),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(node.labels.items())) or DASH),
        ("workloads", ", ".join(node.workloads) or DASH),
    ]
    power = total_power_w(node)
    if power is not None:
        rows.append(("power", f"{power:.0f} W total"))
    for key, value in rows:
        add_row(info, key, value)
    parts: list[RenderableType] = [info, Text("")]
    parts.append(device_table(node) if node.devices else Text("no devices", style="dim"))
    if not node.telemetry and node.devices:
        parts.append(Text("no telemetry received yet", style="dim"))
    if node.lemon_evidence:
        parts += [Text(""), lemon_view(node)]
    parts += [Text(""), health_history_view(node)]
    return Group(*parts)


def health_history_view(node: Any) -> RenderableType:
    """The newest HEALTH_HISTORY_SHOWN health changes of the node and its devices, oldest first."""
    if not node.health_history:
        return Text("health history: no changes recorded", style="dim")
    shown = list(node.health_history)[-HEALTH_HISTORY_SHOWN:]
    older = len(node.health_history) - len(shown)
    title = Text("health history", style="bold")
    if older:
        title.append(f" (newest {len(shown)}; {older} older with -o json)", style="dim")
    table = new_table("TIME", "DEVICE", "CHANGE", "REASON")
    for change in shown:
        move = Text.assemble(styled(change.from_state), " → ", styled(change.to_state))
        device = "node" if change.device_index < 0 else str(change.device_index)
        add_row(table, format_time(change.at), device, move, change.reason or DASH)
    return Group(title, table)


def lemon_view(node: Any) -> RenderableType:
    """Why the node is quarantined: the hardware failures it was implicated in."""
    jobs = sorted({e.job_id for e in node.lemon_evidence})
    title = Text("quarantined", style="bold magenta")
    title.append(
        f": implicated in {len(node.lemon_evidence)} hardware failures across {len(jobs)} "
        f"job{'s' if len(jobs) != 1 else ''}; `corral clear-health {node.name}` once repaired"
    )
    table = new_table("TIME", "JOB", "ATTEMPT", "SIGNALS")
    for e in node.lemon_evidence:
        add_row(table, format_time(e.at), e.job_id or DASH, str(e.attempt), e.signals or DASH)
    return Group(title, table)


def status_view(status: Any, now: float | None = None) -> RenderableType:
    info = Table(box=None, show_header=False, pad_edge=False)
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    uptime = format_age(status.started_at, now)
    jobs = (
        ", ".join(
            f"{state.removeprefix('JOB_STATE_').lower()} {n}"
            for state, n in sorted(status.jobs_by_state.items())
            if n
        )
        or "none"
    )
    ingest = status.ingest
    rows = [
        ("version", status.version or DASH),
        ("uptime", uptime),
        (
            "nodes",
            f"{status.nodes_ready} ready of {status.nodes_total} ({status.agent_streams} agent streams)",
        ),
        ("devices", f"{status.devices_free} free of {status.devices_total}"),
        ("jobs", jobs),
        (
            "telemetry",
            f"{ingest.telemetry_messages_total} messages; {ingest.window_messages} in the last "
            f"{format_duration(ingest.window_s)}",
        ),
        (
            "ingest lag",
            (
                f"p50 {format_latency(ingest.lag_p50_s)}, p99 {format_latency(ingest.lag_p99_s)}, "
                f"max {format_latency(ingest.lag_max_s)}"
            )
            if ingest.window_messages
            else "- (no telemetry in the window)",
        ),
        ("cpu", f"{ingest.process_cpu_s:.1f} s used by the control plane"),
        ("data dir", status.data_dir or DASH),
        ("dashboard", status.dashboard_url or "- (off)"),
        ("metrics", status.metrics_url or "- (off)"),
    ]
    for key, value in rows:
        add_row(info, key, value)
    return info


def cluster_summary(nodes: Sequence[Any]) -> Table:
    """What `corral up` started: one row per node."""
    table = new_table("NODE", "DEVICES", "VENDOR", "BACKEND", "SIMULATED")
    for node in nodes:
        vendors = sorted({d.vendor for d in node.devices if d.vendor})
        simulated = node.simulated or any(d.simulated for d in node.devices)
        add_row(
            table,
            node.name,
            device_summary(node.devices),
            ", ".join(vendors) or DASH,
            backend_text(node),
            Text("yes", style=SIMULATED_STYLE) if simulated else Text("no"),
        )
    return table
