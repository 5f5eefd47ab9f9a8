"""`corral events`: failures, recoveries, health changes and node events, cluster-wide."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated

import typer

from scheduler.cli.common import DEFAULT_SERVER, Output, OutputOpt, ServerOpt, console, print_json
from scheduler.cli.errors import CliError, ExitCode

# What the control plane records. Checked here so that a typo fails loudly instead of
# matching nothing and reading as "no failures".
EVENT_KINDS = ("failure", "recovery", "health", "checkpoint", "node", "state", "worker")
DEFAULT_KINDS = ("failure", "recovery", "health", "node")
SINCE_FORMS = "a duration back from now (90s, 10m, 1h, 2d) or a local ISO time (2026-11-23T04:00)"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


def parse_since(text: str, now: float) -> float:
    """Epoch seconds for --since: `now` minus a duration, or an ISO 8601 time (local time
    when it names no zone). Raises ValueError naming the accepted forms."""
    value = text.strip().lower()
    if match := _DURATION.fullmatch(value):
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"cannot read {text!r}; use {SINCE_FORMS}") from None
    return parsed.timestamp()  # a naive datetime is taken as local time


def _parse_kinds(kinds: list[str]) -> list[str]:
    wanted = [k.strip().lower() for k in kinds]
    unknown = [k for k in wanted if k not in EVENT_KINDS]
    if unknown:
        raise CliError(
            f"--kind: unknown event kind {', '.join(repr(k) for k in unknown)}; "
            f"one of: {', '.join(EVENT_KINDS)} (repeat --kind for several)",
            ExitCode.BAD_INPUT,
        )
    return list(dict.fromkeys(wanted))


def list_events(
    node: Annotated[str, typer.Option("--node", help="Only events on or naming this node.")] = "",
    cause: Annotated[
        str, typer.Option("--cause", help="Only events whose cause contains this (e.g. xid:79, heartbeat).")
    ] = "",
    since: Annotated[str, typer.Option("--since", help=f"Only events since: {SINCE_FORMS}.")] = "",
    job: Annotated[str, typer.Option("--job", help="Only events of this job.")] = "",
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            help=f"Only this kind (repeatable): {', '.join(EVENT_KINDS)}. "
            f"Default: {', '.join(DEFAULT_KINDS)}.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, max=10_000, help="At most this many, the newest (0: 200).")
    ] = 0,
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Failures, recoveries, health changes and node events across the cluster, newest last.

    Each failure shows its cause (the signal that ended the attempt) and blame (hardware,
    job or unknown).
    """
    kinds = _parse_kinds(kind or [])
    since_s: float | None = None
    if since:
        try:
            since_s = parse_since(since, time.time())
        except ValueError as exc:
            raise CliError(f"--since: {exc}", ExitCode.BAD_INPUT) from None

    from corral.v1 import cluster_pb2
    from google.protobuf.timestamp_pb2 import Timestamp

    from scheduler.cli.client import connect
    from scheduler.cli.render_events import events_table

    request = cluster_pb2.ListEventsRequest(node_name=node, cause=cause, kinds=kinds, job_id=job, limit=limit)
    if since_s is not None:
        stamp = Timestamp()
        stamp.FromNanoseconds(int(since_s * 1e9))
        request.since.CopyFrom(stamp)
    with connect(server) as client:
        reply = client.cluster.ListEvents(request, timeout=client.timeout)
    if output is Output.json:
        print_json(reply)
    elif not reply.events:
        console().print("no events match")
    else:
        console().print(events_table(reply.events))
