"""The queues command: quotas per pool, what is in use and what waits."""

from __future__ import annotations

from scheduler.cli.common import DEFAULT_SERVER, Output, OutputOpt, ServerOpt, console, print_json
from scheduler.cli.errors import CliError, ExitCode


def list_queues(server: ServerOpt = DEFAULT_SERVER, output: OutputOpt = Output.table) -> None:
    """List queues: weight, cohort, quota in use per device pool, pending and running jobs."""
    import grpc
    from corral.v1 import cluster_pb2

    from scheduler.cli.client import connect
    from scheduler.cli.render_queues import queues_view

    with connect(server) as client:
        try:
            reply = client.cluster.ListQueues(cluster_pb2.ListQueuesRequest(), timeout=client.timeout)
        except grpc.RpcError as err:
            if hasattr(err, "code") and err.code() is grpc.StatusCode.UNIMPLEMENTED:
                raise CliError(
                    f"the control plane at {server} does not list queues (an older version?)",
                    ExitCode.ERROR,
                ) from None
            raise
    if output is Output.json:
        print_json(reply)
    else:
        console().print(queues_view(reply))
