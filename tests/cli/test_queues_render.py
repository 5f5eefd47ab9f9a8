"""`corral queues` rendering, from a hand-built ListQueuesResponse; no server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from corral.v1 import cluster_pb2, cluster_pb2_grpc
from rich_text import text_of
from typer.testing import CliRunner

from scheduler.cli import render_queues
from scheduler.cli.common import message_dict, print_json
from scheduler.cli.errors import ExitCode
from scheduler.cli.main import app
from scheduler.cli.render_queues import format_devices, pool_label, queues_view


def pool(vendor: str, model: str = "", **fields: Any) -> Any:
    return cluster_pb2.QueuePoolUsage(vendor=vendor, model=model, **fields)


def response() -> Any:
    research = cluster_pb2.QueueInfo(
        name="research", weight=2, cohort="lab", in_use=72.25, running_jobs=5, pending_devices=16,
        pending_jobs=2,
        pools=[
            pool("ascend", "Ascend 910B", has_quota=True, nominal=64, has_borrowing_limit=True,
                 borrowing_limit=32, in_use=72, pending_devices=16, pending_jobs=2),
            pool("nvidia", has_quota=True, nominal=16, in_use=0.25),
        ],
    )  # fmt: skip
    batch = cluster_pb2.QueueInfo(
        name="batch", weight=1, in_use=3, running_jobs=1,
        pools=[pool("cambricon", "MLU370-X8", in_use=3, pending_jobs=1, pending_devices=1)],
    )  # fmt: skip
    default = cluster_pb2.QueueInfo(name="default", weight=1, in_use=0, pending_jobs=3, pending_devices=0.5)
    return cluster_pb2.ListQueuesResponse(queues=[research, batch, default], policy="binpack")


def rows(out: str) -> list[list[str]]:
    """Cells of each table row, split on the runs of spaces between columns."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def test_one_row_per_queue_and_pool_with_the_policy_below() -> None:
    out = text_of(queues_view(response()))
    lines = out.splitlines()
    assert lines[0].split() == ["QUEUE", "WEIGHT", "COHORT", "POOL", "IN", "USE/QUOTA", "PENDING", "RUNNING"]
    table = [line for line in lines[1:] if line.strip()]
    assert len(table) == 5  # research × 2 pools, batch × 1, default (no pools), the footer
    research_910b, research_nvidia, batch, default, footer = table
    for cell in ("research", "2", "lab", "ascend Ascend 910B", "72/64 (borrow ≤ 32)", "2 (16 devices)", "5"):
        assert cell in research_910b
    assert research_nvidia.split()[0] == "research"  # the queue on every row, for grep
    for cell in ("nvidia (all models)", "0.25/16 (borrow any)"):
        assert cell in research_nvidia
    assert "lab" not in research_nvidia  # the queue's own columns only on its first row
    for cell in ("batch", "cambricon MLU370-X8", "3/unlimited", "1 (1 device)"):
        assert cell in batch
    assert " - " in batch  # no cohort
    for cell in ("default", "(any pool)", "0/unlimited", "3 (0.5 devices)"):
        assert cell in default
    assert footer.strip() == "placement policy: binpack"


def test_cells_line_up() -> None:
    cells = rows(text_of(queues_view(response())))
    assert cells[1] == [
        "research",
        "2",
        "lab",
        "ascend Ascend 910B",
        "72/64 (borrow ≤ 32)",
        "2 (16 devices)",
        "5",
    ]
    assert cells[4] == ["default", "1", "-", "(any pool)", "0/unlimited", "3 (0.5 devices)", "0"]


def test_borrowing_is_highlighted() -> None:
    over = render_queues.quota_text(pool("nvidia", has_quota=True, nominal=8, in_use=10), "lab")
    within = render_queues.quota_text(pool("nvidia", has_quota=True, nominal=8, in_use=8), "lab")
    assert str(over.style) == render_queues.BORROWING_STYLE
    assert not str(within.style)


@pytest.mark.parametrize(
    ("fields", "cohort", "expected"),
    [
        ({}, "", "0/unlimited"),
        ({"in_use": 2.5}, "lab", "2.5/unlimited"),
        ({"has_quota": True, "nominal": 8, "in_use": 3}, "", "3/8"),
        ({"has_quota": True, "nominal": 8, "in_use": 3}, "lab", "3/8 (borrow any)"),
        ({"has_quota": True, "nominal": 8, "has_borrowing_limit": True, "borrowing_limit": 4}, "lab",
         "0/8 (borrow ≤ 4)"),
        ({"has_quota": True, "nominal": 8, "has_borrowing_limit": True}, "lab", "0/8"),
        ({"has_quota": True, "nominal": 0}, "", "0/0"),
    ],
)  # fmt: skip
def test_quota_text(fields: dict[str, Any], cohort: str, expected: str) -> None:
    assert render_queues.quota_text(pool("nvidia", **fields), cohort).plain == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0"), (8, "8"), (8.0, "8"), (0.25, "0.25"), (1.5, "1.5"), (2 / 3, "0.667"), (0.0001, "0"),
     (12.999999, "13")],
)  # fmt: skip
def test_format_devices(n: float, expected: str) -> None:
    assert format_devices(n) == expected


def test_pool_label() -> None:
    assert pool_label(pool("ascend", "Ascend 910B")) == "ascend Ascend 910B"
    assert pool_label(pool("nvidia")) == "nvidia (all models)"


def test_no_queues_and_no_policy() -> None:
    out = text_of(queues_view(cluster_pb2.ListQueuesResponse()))
    assert [line.strip() for line in out.splitlines() if line.strip()] == ["no queues", "placement policy: -"]


def test_names_are_shown_literally() -> None:
    reply = cluster_pb2.ListQueuesResponse(queues=[cluster_pb2.QueueInfo(name="[bold]q", cohort="[red]c")])
    out = text_of(queues_view(reply))
    assert "[bold]q" in out and "[red]c" in out


def test_json_output_has_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    print_json(response())
    data = json.loads(capsys.readouterr().out)
    assert data["policy"] == "binpack"
    assert [q["name"] for q in data["queues"]] == ["research", "batch", "default"]
    first = data["queues"][0]["pools"][0]
    assert first["borrowing_limit"] == 32 and first["has_quota"] is True and first["pending_jobs"] == 2
    assert data["queues"][2]["pools"] == [] and data["queues"][1]["cohort"] == ""


# ----------------------------------------------------------------------------- the command


class _Queues(cluster_pb2_grpc.ClusterServiceServicer):
    def ListQueues(self, request: Any, context: Any) -> Any:
        return response()


def _serve(servicer: Any) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def queues_server() -> Iterator[str]:
    server, address = _serve(_Queues())
    try:
        yield address
    finally:
        server.stop(grace=None)


def test_command_table_and_json(queues_server: str) -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["queues", "--server", queues_server])
    assert table.exit_code == 0, table.output
    assert "ascend Ascend 910B" in table.output and "placement policy: binpack" in table.output
    as_json = runner.invoke(app, ["queues", "-o", "json", "--server", queues_server])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == json.loads(json.dumps(message_dict(response())))


def test_command_against_a_server_without_list_queues() -> None:
    server, address = _serve(cluster_pb2_grpc.ClusterServiceServicer())  # every RPC UNIMPLEMENTED
    try:
        result = CliRunner().invoke(app, ["queues", "--server", address])
    finally:
        server.stop(grace=None)
    assert result.exit_code == ExitCode.ERROR
    assert "does not list queues (an older version?)" in result.output


def test_command_unreachable(dead_address: str) -> None:
    result = CliRunner().invoke(app, ["queues", "--server", dead_address])
    assert result.exit_code == ExitCode.UNREACHABLE
