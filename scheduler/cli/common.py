"""What every command shares: the --server/--output options, the consoles, JSON output and
the error handling wrapper. Kept free of grpc so that `corral --help` starts fast."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from scheduler.cli.errors import CliError, ExitCode

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_SERVER = "127.0.0.1:7070"
SERVER_ENV = "CORRAL_SERVER"


class Output(StrEnum):
    table = "table"
    json = "json"


ServerOpt = Annotated[
    str,
    typer.Option(
        "--server",
        envvar=SERVER_ENV,
        help="Control plane address HOST:PORT.",
        show_envvar=True,
    ),
]
OutputOpt = Annotated[
    Output,
    typer.Option("--output", "-o", help="table for people, json for scripts."),
]

_consoles: dict[bool, Console] = {}


def console(stderr: bool = False) -> Console:
    """A rich console on stdout or stderr. Colours only on a terminal (rich decides, and
    honours NO_COLOR); when not a terminal, a wide page so tables do not wrap. Text lines
    are never broken (soft wrap); tables fit the width."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    cached = _consoles.get(stderr)
    if cached is not None and cached.file is stream:
        return cached
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 200
    made = Console(file=stream, width=width, highlight=False, soft_wrap=True)
    _consoles[stderr] = made
    return made


def message_dict(message: Any) -> dict[str, Any]:
    """A protobuf message as a dict with the .proto field names and every field present."""
    from google.protobuf.json_format import MessageToDict

    result: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


def print_json(message: Any, *, compact: bool = False) -> None:
    """Print one protobuf message (or a plain JSON-able value) as JSON on stdout."""
    data = message if isinstance(message, dict | list) else message_dict(message)
    text = (
        json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        if compact
        else json.dumps(data, indent=2, ensure_ascii=False)
    )
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_error(error: CliError) -> None:
    from rich.markup import escape

    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(error.message)}")
    for line in error.details:
        err.print(f"[red]  {escape(line)}[/]")


P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command: CliError -> its message on stderr and its exit code; Ctrl-C -> 130;
    a closed stdout (`corral jobs | head`) -> quiet exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CliError as exc:
            print_error(exc)
            raise typer.Exit(int(exc.code)) from None
        except KeyboardInterrupt:
            console(stderr=True).print("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:
            # Point stdout at /dev/null so the interpreter's final flush does not complain.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None

    return wrapper
