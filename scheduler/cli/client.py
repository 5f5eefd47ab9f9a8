"""The gRPC channel to the control plane, and the one place gRPC errors become exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from corral.v1 import cluster_pb2_grpc, job_pb2_grpc, node_pb2_grpc

from scheduler.cli.errors import CliError, ExitCode

# Deadline for unary calls; streams (Watch, Logs) have none.
CALL_TIMEOUT_S = 15.0

_EXIT_CODES: dict[grpc.StatusCode, ExitCode] = {
    grpc.StatusCode.OK: ExitCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT: ExitCode.BAD_INPUT,
    grpc.StatusCode.ALREADY_EXISTS: ExitCode.BAD_INPUT,
    grpc.StatusCode.OUT_OF_RANGE: ExitCode.BAD_INPUT,
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNREACHABLE,
    grpc.StatusCode.FAILED_PRECONDITION: ExitCode.PRECONDITION,
    grpc.StatusCode.CANCELLED: ExitCode.INTERRUPTED,
}


def exit_code_for(code: grpc.StatusCode) -> ExitCode:
    """The CLI exit code for a gRPC status code (see scheduler.cli.errors)."""
    return _EXIT_CODES.get(code, ExitCode.ERROR)


def unreachable_message(server: str) -> str:
    return (
        f"cannot reach the control plane at {server} — is `corral server` running? "
        "(set --server or CORRAL_SERVER)"
    )


def error_from_rpc(err: grpc.RpcError, server: str) -> CliError:
    """Turn a failed call into the error the user reads."""
    code: grpc.StatusCode = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details: str = (err.details() if hasattr(err, "details") else None) or ""
    exit_code = exit_code_for(code)
    if exit_code is ExitCode.UNREACHABLE:
        return CliError(unreachable_message(server), exit_code, [details] if details else [])
    lines = [line for line in details.splitlines() if line.strip()]
    if code is grpc.StatusCode.INVALID_ARGUMENT and len(lines) > 1:
        return CliError("the control plane rejected the request:", exit_code, lines)
    text = details or code.name.lower().replace("_", " ")
    if exit_code is ExitCode.ERROR:
        text = f"the control plane answered {code.name}: {text}"
    return CliError(text, exit_code)


class Client:
    """Stubs for the three client-facing services on one channel."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(server)
        self.jobs = job_pb2_grpc.JobServiceStub(self.channel)
        self.nodes = node_pb2_grpc.NodeServiceStub(self.channel)
        self.cluster = cluster_pb2_grpc.ClusterServiceStub(self.channel)
        self.timeout = CALL_TIMEOUT_S

    def close(self) -> None:
        self.channel.close()

    def error(self, err: grpc.RpcError) -> CliError:
        return error_from_rpc(err, self.server)


@contextmanager
def connect(server: str) -> Iterator[Client]:
    """A client whose gRPC errors, raised anywhere in the block (streams included), come out
    as CliError with the mapped exit code."""
    client = Client(server)
    try:
        yield client
    except grpc.RpcError as err:
        raise client.error(err) from None
    finally:
        client.close()
