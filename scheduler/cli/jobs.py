"""Job commands: submit, jobs, job, cancel, logs — and the follow/log helpers `corral up`
reuses."""

from __future__ import annotations

import getpass
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, TypeAlias

import typer

from scheduler.cli.common import DEFAULT_SERVER, Output, OutputOpt, ServerOpt, console, print_json
from scheduler.cli.errors import CliError, ExitCode

if TYPE_CHECKING:
    from corral.v1.job_pb2 import JobState

    from scheduler.cli.client import Client

    JobStateValue: TypeAlias = JobState.ValueType

JOB_STATE_NAMES = (
    "pending",
    "placed",
    "running",
    "checkpointing",
    "recovering",
    "succeeded",
    "failed",
    "cancelled",
)

JobIdArg = Annotated[str, typer.Argument(help="Job id, as `corral jobs` shows it.", show_default=False)]


# ----------------------------------------------------------------------------- helpers


def default_owner() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return ""


def load_job_spec(path: Path) -> Any:
    """Read and validate a job spec file locally; returns a corral.v1.JobSpec whose
    working_dir is the current directory when the spec names none (like sbatch)."""
    try:
        from scheduler.spec import SpecError, load_spec_file, spec_to_proto
    except ImportError as exc:  # pragma: no cover - only while the spec module is missing
        raise CliError(f"cannot validate job specs: {exc}", ExitCode.ERROR) from None
    try:
        spec = load_spec_file(path)
    except SpecError as exc:
        problems = [f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems]
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        raise CliError(f"invalid job spec {path} ({count}):", ExitCode.BAD_INPUT, problems) from None
    message = spec_to_proto(spec)
    if not message.working_dir:
        message.working_dir = str(Path.cwd())
    return message


def exit_code_for_job_state(state: int) -> ExitCode:
    from corral.v1 import job_pb2

    codes: dict[int, ExitCode] = {
        job_pb2.JOB_STATE_SUCCEEDED: ExitCode.OK,
        job_pb2.JOB_STATE_FAILED: ExitCode.JOB_FAILED,
        job_pb2.JOB_STATE_CANCELLED: ExitCode.JOB_CANCELLED,
    }
    return codes.get(int(state), ExitCode.ERROR)


def follow_job(client: Client, job_id: str, output: Output, *, detached_hint: bool = True) -> ExitCode:
    """Print a job's events (history first) until it ends; return the exit code of its end
    state: 0 SUCCEEDED, 1 FAILED, 5 CANCELLED. Reconnects if the server ends the stream
    while the job still runs."""
    from corral.v1 import job_pb2
    from rich.text import Text

    from scheduler.cli.render import TERMINAL_JOB_STATES, event_line, job_state_label, styled

    out = console()
    after = 0
    try:
        while True:
            request = job_pb2.WatchJobsRequest(job_id=job_id, after_event_id=after, history=True)
            stream = client.jobs.Watch(request)
            for event in stream:
                after = max(after, event.event_id)
                if output is Output.json:
                    print_json(event, compact=True)
                else:
                    out.print(event_line(event))
                if event.state in TERMINAL_JOB_STATES:
                    stream.cancel()
                    break
            job = client.jobs.Get(job_pb2.GetJobRequest(id=job_id), timeout=client.timeout)
            if job.state in TERMINAL_JOB_STATES:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        if detached_hint:
            console(stderr=True).print(
                f"stopped following; job {job_id} goes on (`corral cancel {job_id}` stops it)"
            )
        raise
    if output is not Output.json:
        reason = f": {job.reason}" if job.reason else ""
        out.print(Text.assemble(f"job {job_id} ", styled(job_state_label(job.state)), reason))
    return exit_code_for_job_state(job.state)


class LogWriter:
    """Writes LogsChunk bytes to a binary stream; with `prefix`, each line gets `[rank N] `
    (partial lines wait for their newline, per rank)."""

    def __init__(self, out: BinaryIO, prefix: bool) -> None:
        self.out = out
        self.prefix = prefix
        self.partial: dict[int, bytes] = {}

    def write(self, rank: int, data: bytes) -> None:
        if not self.prefix:
            self.out.write(data)
        else:
            lines = (self.partial.pop(rank, b"") + data).split(b"\n")
            rest = lines.pop()
            for line in lines:
                self.out.write(b"[rank %d] %s\n" % (rank, line))
            if rest:
                self.partial[rank] = rest
        self.out.flush()

    def close(self) -> None:
        for rank in sorted(self.partial):
            self.out.write(b"[rank %d] %s\n" % (rank, self.partial[rank]))
        self.partial.clear()
        self.out.flush()


def stream_logs(
    client: Client,
    job_id: str,
    rank: int | None,
    attempt: int,
    follow: bool,
    output: Output,
    timeout: float | None = None,
) -> None:
    from corral.v1 import job_pb2

    prefix = False
    if rank is None:
        job = client.jobs.Get(job_pb2.GetJobRequest(id=job_id), timeout=client.timeout)
        prefix = job.spec.workers > 1
    request = job_pb2.LogsRequest(
        job_id=job_id, rank=-1 if rank is None else rank, attempt=attempt, follow=follow
    )
    sys.stdout.flush()
    writer = LogWriter(sys.stdout.buffer, prefix)
    try:
        for chunk in client.jobs.Logs(request, timeout=timeout):
            if output is Output.json:
                print_json(chunk, compact=True)
            else:
                writer.write(chunk.rank, chunk.data)
    finally:
        writer.close()


# ----------------------------------------------------------------------------- commands


def submit(
    file: Annotated[Path, typer.Argument(help="Job spec (YAML).", dir_okay=False, show_default=False)],
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Print the job's events until it ends; exit with its result."),
    ] = False,
    owner: Annotated[str | None, typer.Option(help="Owner recorded with the job (default: $USER).")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Validate a job spec and submit it; print the job id.

    working_dir defaults to the current directory. With --follow the exit code is the job's:
    0 SUCCEEDED, 1 FAILED, 5 CANCELLED.
    """
    from corral.v1 import job_pb2
    from rich.text import Text

    from scheduler.cli.client import connect

    spec = load_job_spec(file)
    with connect(server) as client:
        request = job_pb2.SubmitJobRequest(spec=spec, owner=default_owner() if owner is None else owner)
        job = client.jobs.Submit(request, timeout=client.timeout)
        if output is Output.json:
            print_json(job, compact=follow)
        elif follow:
            console().print(Text.assemble("submitted job ", (job.id, "bold"), f" ({job.spec.name})"))
        else:
            sys.stdout.write(job.id + "\n")
        if follow:
            code = follow_job(client, job.id, output)
            if code is not ExitCode.OK:
                raise typer.Exit(int(code))


def _parse_states(states: list[str]) -> list[JobStateValue]:
    from corral.v1 import job_pb2

    values = []
    for state in states:
        name = state.strip().upper().removeprefix("JOB_STATE_")
        if name.lower() not in JOB_STATE_NAMES:
            raise CliError(
                f"unknown job state {state!r}; one of: {', '.join(JOB_STATE_NAMES)}", ExitCode.BAD_INPUT
            )
        values.append(job_pb2.JobState.Value(f"JOB_STATE_{name}"))
    return values


def list_jobs(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state", "-s", help=f"Only jobs in this state (repeatable): {', '.join(JOB_STATE_NAMES)}."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many jobs (0: server default).")] = 0,
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """List jobs, newest first."""
    from corral.v1 import job_pb2

    from scheduler.cli.client import connect
    from scheduler.cli.render import jobs_table

    states = _parse_states(state or [])
    with connect(server) as client:
        reply = client.jobs.List(job_pb2.ListJobsRequest(states=states, limit=limit), timeout=client.timeout)
    if output is Output.json:
        print_json(reply)
    elif not reply.jobs:
        console().print("no jobs")
    else:
        console().print(jobs_table(reply.jobs, time.time()))


def show_job(job_id: JobIdArg, server: ServerOpt = DEFAULT_SERVER, output: OutputOpt = Output.table) -> None:
    """Show one job: spec, state, attempts (workers, failure cause and blame), checkpoints.

    A failed attempt shows the signal that ended it, whose fault it was, and the work lost.
    """
    from corral.v1 import job_pb2

    from scheduler.cli.client import connect
    from scheduler.cli.render import job_detail

    with connect(server) as client:
        job = client.jobs.Get(job_pb2.GetJobRequest(id=job_id), timeout=client.timeout)
    if output is Output.json:
        print_json(job)
    else:
        console().print(job_detail(job, time.time()))


def cancel(
    job_id: JobIdArg,
    reason: Annotated[str, typer.Option(help="Why, recorded with the job.")] = "",
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Cancel a job: its workers are stopped."""
    from corral.v1 import job_pb2
    from rich.text import Text

    from scheduler.cli.client import connect
    from scheduler.cli.render import job_state_label, styled

    with connect(server) as client:
        job = client.jobs.Cancel(job_pb2.CancelJobRequest(id=job_id, reason=reason), timeout=client.timeout)
    if output is Output.json:
        print_json(job)
    else:
        reason = f" ({job.reason})" if job.reason else ""
        console().print(Text.assemble(f"job {job.id}: ", styled(job_state_label(job.state)), reason))


def logs(
    job_id: JobIdArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the job ends.")
    ] = False,
    rank: Annotated[int | None, typer.Option(min=0, help="Only this worker (default: every rank).")] = None,
    attempt: Annotated[int, typer.Option(min=0, help="Attempt number (0: the latest).")] = 0,
    server: ServerOpt = DEFAULT_SERVER,
    output: OutputOpt = Output.table,
) -> None:
    """Print a job's worker logs. With several ranks each line is prefixed `\\[rank N] `.

    With -o json, one LogsChunk per line (data base64-encoded).
    """
    from scheduler.cli.client import connect

    with connect(server) as client:
        stream_logs(client, job_id, rank, attempt, follow, output)
