"""Exit codes of the `corral` CLI, and the one error type its commands raise.

    0  ok
    1  the job ended FAILED (`submit --follow`, `up --example`)
    2  bad input: a job spec, a flag, a fault string (typer's own usage errors are 2 as well),
       or the control plane answered INVALID_ARGUMENT / ALREADY_EXISTS / OUT_OF_RANGE
    3  not found: no such job or node (NOT_FOUND)
    4  the control plane is unreachable (UNAVAILABLE, DEADLINE_EXCEEDED)
    5  the job ended CANCELLED (`submit --follow`, `up --example`)
    6  the control plane refused in this state (FAILED_PRECONDITION), e.g. injecting a fault
       into a device that is not simulated
    7  any other error: the control plane failed (INTERNAL, UNIMPLEMENTED, ...), or a process
       `corral up` started did not come up
  130  interrupted (Ctrl-C)

gRPC status codes are mapped to these in one place: `scheduler.cli.client.exit_code_for`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    JOB_FAILED = 1
    BAD_INPUT = 2
    NOT_FOUND = 3
    UNREACHABLE = 4
    JOB_CANCELLED = 5
    PRECONDITION = 6
    ERROR = 7
    INTERRUPTED = 130


EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.JOB_FAILED: "the job ended FAILED (submit --follow, up --example)",
    ExitCode.BAD_INPUT: "bad input: job spec, flag, fault string, or rejected by the control plane",
    ExitCode.NOT_FOUND: "no such job or node",
    ExitCode.UNREACHABLE: "the control plane is unreachable",
    ExitCode.JOB_CANCELLED: "the job ended CANCELLED (submit --follow, up --example)",
    ExitCode.PRECONDITION: "refused in this state (e.g. fault injection into a real device)",
    ExitCode.ERROR: "any other error (control-plane failure, a process `corral up` started)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


class CliError(Exception):
    """An error the user should read: a one-line message, optional detail lines (printed
    indented below it), and the exit code the process ends with."""

    def __init__(self, message: str, code: ExitCode, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = list(details or [])
