"""Log shipping: 64 KiB chunks with offsets, resume points, lost connections."""

from __future__ import annotations

import functools
from pathlib import Path

from corral.v1 import agent_pb2

from agents.logship import CHUNK_BYTES, LogShipper
from agents.outbox import Outbox


class Sink:
    def __init__(self, fail_after: int | None = None) -> None:
        self.chunks: list[agent_pb2.LogChunk] = []
        self.fail_after = fail_after

    async def __call__(self, message: agent_pb2.AgentMessage) -> bool:
        if self.fail_after is not None and len(self.chunks) >= self.fail_after:
            return False
        assert message.seq == 0  # best-effort
        self.chunks.append(message.log)
        return True


async def test_chunks_and_offsets(tmp_path: Path) -> None:
    data = bytes(range(256)) * 600  # 150 KiB
    path = tmp_path / "rank-0.log"
    path.write_bytes(data)
    shipper = LogShipper(lambda: {"j.0.0": path})
    sink = Sink()
    assert not await shipper.flush("j.0.0")  # no connection yet: nothing sent
    shipper.attach(sink, {})
    assert await shipper.flush("j.0.0")
    assert [c.offset for c in sink.chunks] == [0, CHUNK_BYTES, 2 * CHUNK_BYTES]
    assert all(len(c.data) <= CHUNK_BYTES for c in sink.chunks)
    assert b"".join(c.data for c in sink.chunks) == data
    with path.open("ab") as f:
        f.write(b"more\n")
    await shipper.ship_all()
    assert (sink.chunks[-1].offset, sink.chunks[-1].data) == (len(data), b"more\n")


async def test_resume_from_register_ack_offsets(tmp_path: Path) -> None:
    path = tmp_path / "rank-0.log"
    path.write_bytes(b"0123456789")
    shipper = LogShipper(lambda: {"j.0.0": path, "j.0.1": tmp_path / "never-started.log"})
    sink = Sink()
    shipper.attach(sink, {"j.0.0": 4})
    assert await shipper.ship_all()
    assert [(c.workload_id, c.offset, c.data) for c in sink.chunks] == [("j.0.0", 4, b"456789")]


async def test_lost_connection_stops_and_detaches(tmp_path: Path) -> None:
    path = tmp_path / "rank-0.log"
    path.write_bytes(b"x" * (3 * CHUNK_BYTES))
    shipper = LogShipper(lambda: {"j.0.0": path})
    shipper.attach(Sink(fail_after=1), {})
    assert not await shipper.flush("j.0.0")
    assert shipper.offset("j.0.0") == CHUNK_BYTES
    assert not await shipper.flush("j.0.0")  # detached until the next register_ack


def test_outbox_numbers_acks_and_bounds() -> None:
    acked: list[int] = []
    box = Outbox(capacity=3)
    for i in range(4):
        box.add(
            agent_pb2.AgentMessage(command_result=agent_pb2.CommandResult(command_seq=i)),
            on_ack=functools.partial(acked.append, i),
        )
    assert [m.seq for m in box.pending()] == [2, 3, 4] and box.dropped == 1
    assert box.ack(3) == 2 and acked == [1, 2]
    assert [m.seq for m in box.pending()] == [4] and box.ack(3) == 0
