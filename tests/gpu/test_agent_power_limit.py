"""A power limit set down the agent stream reaches the device and reads back in telemetry.

The agent is the real `corral agent` process. The control plane here is a minimal
AgentService written in the test, because no public API sets power limits until the power
issue lands. It runs against the simulated backend everywhere, and against NVML where a GPU
is present (root needed to set limits). With CORRAL_GPU_REPORT=DIR the NVML run writes what
the agent reported to DIR/nvml-agent-report.json (the record in docs/gpu.md comes from it).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from corral.v1 import agent_pb2, agent_pb2_grpc

from agents.backends.nvml import nvml_device_count
from tests.harness import CORRAL, Proc

BACKENDS = [
    pytest.param(["--simulate", "h100-sxm-8"], id="simulated"),
    pytest.param(
        [],
        id="nvml",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(
                nvml_device_count() == 0, reason="no NVML device (nvmlInit failed or found none)"
            ),
            pytest.mark.skipif(os.geteuid() != 0, reason="setting a power limit needs root"),
        ],
    ),
]


class PowerLimitProbe(agent_pb2_grpc.AgentServiceServicer):
    """Registers the agent, sets device 0's limit to `fraction` of max, then restores it."""

    def __init__(self, fraction: float = 0.6) -> None:
        self.fraction = fraction
        self.register: agent_pb2.Register | None = None
        self.samples: list[dict[str, Any]] = []
        self.results: list[agent_pb2.CommandResult] = []
        self.done = asyncio.Event()
        self.target_w = 0.0
        self.original_w = 0.0
        self.applied_after_s: float | None = None
        self.restored = False

    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Any
    ) -> AsyncIterator[agent_pb2.ControlMessage]:
        first = await anext(aiter(request_iterator))
        self.register = first.register
        yield agent_pb2.ControlMessage(
            seq=1,
            register_ack=agent_pb2.RegisterAck(node_name=first.register.node_name, telemetry_interval_s=0.25),
        )
        dev = first.register.devices[0]
        sent_at = 0.0
        phase = "read-original"
        async for msg in request_iterator:
            body = msg.WhichOneof("body")
            if body == "command_result":
                self.results.append(msg.command_result)
            if msg.seq:
                yield agent_pb2.ControlMessage(ack_seq=msg.seq, ack=agent_pb2.Ack())
            if body != "telemetry":
                continue
            t = msg.telemetry.devices[0]
            self.samples.append(
                {
                    "t": time.time(),
                    "power_w": t.power_w,
                    "temperature_c": t.temperature_c,
                    "utilization_pct": t.utilization_pct,
                    "power_limit_w": t.power_limit_w,
                }
            )
            if phase == "read-original":
                self.original_w = t.power_limit_w
                self.target_w = float(
                    max(dev.power_limit_min_w, round(dev.power_limit_max_w * self.fraction))
                )
                sent_at = time.monotonic()
                phase = "lowering"
                yield agent_pb2.ControlMessage(
                    seq=2, set_power_limit=agent_pb2.SetPowerLimit(device_index=0, limit_w=self.target_w)
                )
            elif phase == "lowering" and abs(t.power_limit_w - self.target_w) < 1:
                self.applied_after_s = time.monotonic() - sent_at
                phase = "restoring"
                yield agent_pb2.ControlMessage(
                    seq=3, set_power_limit=agent_pb2.SetPowerLimit(device_index=0, limit_w=self.original_w)
                )
            elif phase == "restoring" and abs(t.power_limit_w - self.original_w) < 1:
                self.restored = True
                self.done.set()


@pytest.mark.parametrize("backend_args", BACKENDS)
async def test_power_limit_round_trip_through_the_agent(tmp_path: Path, backend_args: list[str]) -> None:
    probe = PowerLimitProbe()
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(probe, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    agent = Proc(
        [
            CORRAL,
            "agent",
            "--server",
            f"127.0.0.1:{port}",
            "--node-name",
            "probe",
            "--data-dir",
            str(tmp_path / "agent"),
            *backend_args,
        ],
        tmp_path / "agent.log",
    )
    try:
        await asyncio.wait_for(probe.done.wait(), timeout=60)
    finally:
        agent.stop()
        await server.stop(grace=1)
    assert probe.register is not None
    dev = probe.register.devices[0]
    assert probe.applied_after_s is not None and probe.restored, agent.output()
    assert [r.ok for r in probe.results[:2]] == [True, True], [r.message for r in probe.results]
    assert probe.samples[-1]["power_limit_w"] == pytest.approx(probe.original_w, abs=1)
    assert dev.simulated == (backend_args != [])
    report_dir = os.environ.get("CORRAL_GPU_REPORT")
    if report_dir and not dev.simulated:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        (Path(report_dir) / "nvml-agent-report.json").write_text(
            json.dumps(
                {
                    "devices": [
                        {
                            "index": d.index,
                            "model": d.model,
                            "uuid": d.uuid,
                            "memory_bytes": d.memory_bytes,
                            "power_limit_min_w": d.power_limit_min_w,
                            "power_limit_max_w": d.power_limit_max_w,
                            "power_limit_default_w": d.power_limit_default_w,
                            "bus_id": d.bus_id,
                            "peer_indices": list(d.peer_indices),
                        }
                        for d in probe.register.devices
                    ],
                    "target_w": probe.target_w,
                    "original_w": probe.original_w,
                    "applied_after_s": probe.applied_after_s,
                    "samples": probe.samples,
                },
                indent=2,
            )
        )
