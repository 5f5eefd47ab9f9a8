"""`corral report`: what the fleet lost to failures and why, from the control plane's store."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from scheduler.cli.common import DEFAULT_SERVER, ServerOpt, print_json
from scheduler.cli.errors import CliError, ExitCode
from scheduler.cli.events import SINCE_FORMS, parse_since

EVERYTHING = "all"


class ReportFormat(StrEnum):
    md = "md"
    json = "json"
    html = "html"


def window_s(text: str, now: float) -> float:
    """--since as a window length in seconds (0: everything stored). Raises ValueError."""
    if text.strip().lower() == EVERYTHING:
        return 0.0
    window = now - parse_since(text, now)
    if not window > 0:
        raise ValueError(f"{text!r} is not in the past; use {SINCE_FORMS}, or {EVERYTHING!r}")
    return window


def report(
    since: Annotated[
        str,
        typer.Option("--since", help=f"The window: {SINCE_FORMS}; or {EVERYTHING!r} for everything stored."),
    ] = "30d",
    output: Annotated[
        ReportFormat,
        typer.Option(
            "--output", "-o", help="md (Markdown tables), json (the report message) or html (one page)."
        ),
    ] = ReportFormat.md,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Write the report here instead of to stdout.", dir_okay=False),
    ] = None,
    server: ServerOpt = DEFAULT_SERVER,
) -> None:
    """The cluster's reliability report: interruptions by component and cause with counts and
    shares, MTBF per component and device model, ETTR fleet-wide and per large job, the GPU-time
    split, lost GPU-hours and recovery phase percentiles (docs/reliability.md)."""
    try:
        since_s = window_s(since, time.time())
    except ValueError as exc:
        raise CliError(f"--since: {exc}", ExitCode.BAD_INPUT) from None

    from corral.v1 import cluster_pb2

    from scheduler.cli.client import connect

    with connect(server) as client:
        reply = client.cluster.GetReliabilityReport(
            cluster_pb2.GetReliabilityReportRequest(since_s=since_s), timeout=client.timeout
        )
    if output is ReportFormat.json and file is None:
        print_json(reply)
        return
    text = _render(reply, output)
    if file is None:
        typer.echo(text, nl=False)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--file: cannot write {file}: {exc.strerror or exc}", ExitCode.BAD_INPUT) from None
    typer.echo(f"wrote {file}", err=True)


def _render(reply: object, output: ReportFormat) -> str:
    if output is ReportFormat.json:
        import json

        from scheduler.cli.common import message_dict

        return json.dumps(message_dict(reply), indent=2, ensure_ascii=False) + "\n"
    from scheduler.cli import render_report

    return render_report.html_page(reply) if output is ReportFormat.html else render_report.markdown(reply)
