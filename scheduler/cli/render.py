"""Formatting: durations, sizes, states, and the job tables. Pure functions of protobuf
messages and a clock, so they are tested without a server."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable, Sequence
from typing import Any

from corral.v1 import job_pb2
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

DASH = "-"
TERMINAL_JOB_STATES = frozenset(
    {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}
)
_STATE_STYLE = {
    "PENDING": "yellow",
    "PLACED": "cyan",
    "RUNNING": "blue",
    # Still running while it writes a checkpoint; back in the queue after a failure.
    "CHECKPOINTING": "blue",
    "RECOVERING": "yellow",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "READY": "green",
    "DISCONNECTED": "bold red",
    "HEALTHY": "green",
    "SUSPECT": "yellow",
    "UNHEALTHY": "bold red",
    "QUARANTINED": "bold magenta",
}
# Fault-tolerance events stand out from the routine ones in `submit --follow` and `corral events`.
EVENT_STYLE = {"failure": "bold red", "recovery": "green", "health": "yellow", "checkpoint": "cyan"}
BLAME_STYLE = {"hardware": "bold red", "job": "yellow", "unknown": "dim"}
# How many of the job's checkpoints `corral job` lists; -o json has every one the server sent.
CHECKPOINTS_SHOWN = 5


# ----------------------------------------------------------------------------- primitives


def format_duration(seconds: float) -> str:
    """Compact duration: 0s, 45s, 3m12s, 2h05m, 3d04h. Negative counts as 0."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def timestamp_s(ts: Any) -> float | None:
    """A google.protobuf.Timestamp as epoch seconds; None when unset (zero)."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return float(ts.seconds + ts.nanos / 1e9)


def format_age(ts: Any, now: float | None = None) -> str:
    """How long ago a timestamp was, or '-' when it is unset."""
    at = timestamp_s(ts)
    if at is None:
        return DASH
    return format_duration((time.time() if now is None else now) - at)


def format_clock(ts: Any) -> str:
    """Local wall-clock time HH:MM:SS of a timestamp, '-' when unset."""
    at = timestamp_s(ts)
    return DASH if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def format_time(ts: Any) -> str:
    """Local date and time of a timestamp, '-' when unset: for lists that span days."""
    at = timestamp_s(ts)
    return DASH if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def format_bytes(n: int | float) -> str:
    """Binary units with at most one decimal: 0 B, 512 B, 1.5 KiB, 80 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            if unit == "B":
                return f"{int(value)} B"
            text = f"{value:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_latency(seconds: float) -> str:
    """A short latency: 850 µs, 12 ms, 1.25 s."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def enum_label(enum_type: Any, value: int, prefix: str) -> str:
    """RUNNING for JOB_STATE_RUNNING; the number itself for a value this build does not know."""
    try:
        name: str = enum_type.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(prefix)


def job_state_label(state: int) -> str:
    return enum_label(job_pb2.JobState, state, "JOB_STATE_")


def styled(label: str) -> Text:
    return Text(label, style=_STATE_STYLE.get(label, ""))


def format_indices(indices: Iterable[int]) -> str:
    """Device indices as ranges: [0, 1, 2, 3, 6] -> 0-3,6."""
    values = sorted(set(indices))
    if not values:
        return DASH
    parts: list[str] = []
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(parts)


def short_list(items: Sequence[str], limit: int = 3) -> str:
    if not items:
        return DASH
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} +{len(items) - limit}"


def add_row(table: Table, *cells: str | Text) -> None:
    """Add a row; plain strings are shown literally (never parsed as rich markup)."""
    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def new_table(*columns: str) -> Table:
    """A plain, kubectl-like table: bold header, no borders, greppable when piped."""
    table = Table(
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


# ----------------------------------------------------------------------------- jobs


def latest_attempt(job: Any) -> Any | None:
    return max(job.attempts, key=lambda a: a.number) if job.attempts else None


def job_nodes(job: Any) -> list[str]:
    """Distinct nodes of the latest attempt, in rank order."""
    attempt = latest_attempt(job)
    if attempt is None:
        return []
    ordered = sorted(attempt.workers, key=lambda w: w.rank)
    return list(dict.fromkeys(w.node_name for w in ordered if w.node_name))


def jobs_table(jobs: Sequence[Any], now: float | None = None) -> Table:
    table = new_table("ID", "NAME", "STATE", "WORKERS×DEVICES", "NODES", "RESTARTS", "AGE", "REASON")
    for job in jobs:
        spec = job.spec
        add_row(
            table,
            job.id,
            spec.name,
            styled(job_state_label(job.state)),
            f"{spec.workers}×{spec.devices_per_worker}",
            short_list(job_nodes(job)),
            str(job.restarts),
            format_age(job.created_at, now),
            Text(job.reason or DASH),
        )
    return table


def _constraint(spec: Any) -> str:
    if not spec.HasField("accelerator"):
        return "any"
    acc = spec.accelerator
    parts = []
    if acc.vendors:
        parts.append("vendors " + ", ".join(acc.vendors))
    if acc.models:
        parts.append("models " + ", ".join(acc.models))
    if acc.min_memory_bytes:
        parts.append(f"≥ {format_bytes(acc.min_memory_bytes)} memory")
    return "; ".join(parts) or "any"


def _fields_table(rows: Iterable[tuple[str, str | Text]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        add_row(table, key, value)
    return table


def _worker_outcome(worker: Any) -> str:
    if worker.signal:
        return f"signal {worker.signal}"
    if worker.phase == "exited":
        return f"exit {worker.exit_code}"
    return DASH


def attempt_view(attempt: Any, now: float | None = None) -> RenderableType:
    """An attempt's heading line (when, where its master was, how it ended) and its workers."""
    started = timestamp_s(attempt.started_at)
    ended = timestamp_s(attempt.ended_at)
    span = "not started" if started is None else f"started {format_age(attempt.started_at, now)} ago"
    if started is not None and ended is not None:
        span += f", ran {format_duration(ended - started)}"
    master = f", master {attempt.master_addr}:{attempt.master_port}" if attempt.master_addr else ""
    outcome = f" — {attempt.outcome}" if attempt.outcome else ""
    heading = Text(f"attempt {attempt.number}", style="bold")
    heading.append(f": {span}{master}{outcome}")
    lines: list[RenderableType] = [heading, *attempt_fault_lines(attempt)]
    table = new_table("RANK", "NODE", "DEVICES", "PHASE", "EXIT", "STEP")
    for w in sorted(attempt.workers, key=lambda w: w.rank):
        add_row(
            table,
            str(w.rank),
            w.node_name or DASH,
            format_indices(w.device_indices),
            w.phase or DASH,
            _worker_outcome(w),
            str(w.progress_step) if w.progress_step else DASH,
        )
    return Group(*lines, table)


def attempt_fault_lines(attempt: Any) -> list[Text]:
    """What fault tolerance knows of an attempt, indented under its heading: where it resumed
    from, and for a failed one the cause, whose fault, and the work and time it cost."""
    lines: list[Text] = []
    if attempt.resumed_from_step:
        path = f" ({attempt.resume_path})" if attempt.resume_path else ""
        lines.append(Text(f"  resumed from step {attempt.resumed_from_step}{path}"))
    elif attempt.number > 1:
        # Worth saying: every step of the earlier attempts is being redone.
        lines.append(Text("  started over from step 0 (no complete checkpoint)", style="yellow"))
    if attempt.cause or attempt.blame:
        line = Text("  cause: ")
        line.append(attempt.cause or "unknown")
        if attempt.blame:
            line.append("  blame: ")
            line.append(attempt.blame, style=BLAME_STYLE.get(attempt.blame, ""))
        if timestamp_s(attempt.failed_at) is not None:
            line.append(f"  failed at {format_clock(attempt.failed_at)}")
        lines.append(line)
    costs = []
    if attempt.lost_s:
        costs.append(f"lost {format_duration(attempt.lost_s)} of work")
    if attempt.detect_s:
        costs.append(f"detected in {format_seconds(attempt.detect_s)}")
    if attempt.restart_s:
        costs.append(f"restarted in {format_seconds(attempt.restart_s)}")
    if costs:
        lines.append(Text("  " + ", ".join(costs)))
    return lines


def format_seconds(seconds: float) -> str:
    """Sub-minute spans with a decimal (detection and restart times are often under 1 s)."""
    return f"{seconds:.1f}s" if seconds < 60 else format_duration(seconds)


def format_device_hours(device_s: float) -> str:
    hours = device_s / 3600
    if hours < 0.01:
        return "< 0.01 device-hours"
    return f"{hours:.2f} device-hours" if hours < 100 else f"{hours:,.0f} device-hours"


def checkpoints_view(job: Any, now: float | None = None) -> RenderableType:
    """The newest CHECKPOINTS_SHOWN checkpoints, newest last."""
    shown = list(job.checkpoints)[-CHECKPOINTS_SHOWN:]
    older = len(job.checkpoints) - len(shown)
    title = Text("checkpoints", style="bold")
    if older:
        title.append(f" (newest {len(shown)}; {older} older with -o json)", style="dim")
    table = new_table("ATTEMPT/RANK", "STEP", "WRITTEN", "SIZE", "TOOK", "COMPLETE", "TRIGGER", "PATH")
    for c in shown:
        add_row(
            table,
            f"{c.attempt}/{c.rank}",
            str(c.step),
            ago(c.at, now),
            format_bytes(c.size_bytes) if c.size_bytes else DASH,
            format_seconds(c.duration_s) if c.duration_s else DASH,
            Text("yes", style="green") if c.complete else Text("no", style="bold red"),
            c.trigger or DASH,
            c.path or DASH,
        )
    return Group(title, table)


def ago(ts: Any, now: float | None = None) -> str:
    age = format_age(ts, now)
    return age if age == DASH else f"{age} ago"


def job_detail(job: Any, now: float | None = None) -> RenderableType:
    spec = job.spec
    state = styled(job_state_label(job.state))
    rows: list[tuple[str, str | Text]] = [
        ("id", job.id),
        ("name", spec.name),
        ("state", state),
        ("reason", job.reason or DASH),
        ("owner", job.owner or DASH),
        ("queue", f"{spec.queue or 'default'} (priority {spec.priority})"),
        ("command", shlex.join([*spec.command, *spec.args])),
        ("workers", f"{spec.workers} × {spec.devices_per_worker} devices"),
        ("accelerator", _constraint(spec)),
        ("working dir", spec.working_dir or DASH),
        ("checkpoint dir", spec.checkpoint_dir or DASH),
        ("restarts", f"{job.restarts} of at most {spec.max_restarts}"),
        ("created", ago(job.created_at, now)),
        ("updated", ago(job.updated_at, now)),
    ]
    if spec.env:
        rows.append(("env", ", ".join(f"{k}={v}" for k, v in sorted(spec.env.items()))))
    if job.checkpoint_interval:
        rows.append(("checkpoint interval", job.checkpoint_interval))
    if job.lost_device_s > 0:
        rows.append(("lost", f"{format_device_hours(job.lost_device_s)} to failures"))
    parts: list[RenderableType] = [_fields_table(rows)]
    for attempt in sorted(job.attempts, key=lambda a: a.number):
        parts.append(Text(""))
        parts.append(attempt_view(attempt, now))
    if not job.attempts:
        parts.append(Text("\nno attempts yet", style="dim"))
    if job.checkpoints:
        parts += [Text(""), checkpoints_view(job, now)]
    return Group(*parts)


def event_line(event: Any) -> Text:
    """One line of `submit --follow`: time, state, kind and message."""
    line = Text(f"{format_clock(event.at)}  ")
    label = job_state_label(event.state) if event.state else ""
    if event.kind == "state":
        line.append(f"{label:<10}", style=_STATE_STYLE.get(label, "bold"))
        line.append(f" {event.message}")
    else:
        style = EVENT_STYLE.get(event.kind, "dim")
        line.append(f"{'':<10} {event.kind}: {event.message}", style=style)
    return line
