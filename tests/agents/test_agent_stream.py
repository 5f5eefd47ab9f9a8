"""The stream client against a real grpc.aio AgentService on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from corral.v1 import agent_pb2, common_pb2
from tenacity import wait_fixed

from agents.backends.simulated import SimulatedBackend
from agents.executor import Executor
from agents.health_watch import Thresholds
from agents.main import AgentConfig, run_agent
from agents.profiles import builtin_profile, load_profile
from agents.stream import NodeIdentity, StreamClient

if TYPE_CHECKING:  # fixtures come from conftest.py; never import it at run time
    from conftest import ServerHandle  # type: ignore[import-not-found]

Wait = Callable[..., Any]
Py = Callable[[str], list[str]]
EXITED = common_pb2.WORKLOAD_PHASE_EXITED


@dataclass
class Agent:
    client: StreamClient
    executor: Executor
    backend: SimulatedBackend


@pytest.fixture
async def agent(control_plane: ServerHandle, tmp_path: Path) -> AsyncIterator[Agent]:
    backend = SimulatedBackend(load_profile(builtin_profile("h100-sxm-8")), node_name="node-a")
    executor = Executor(tmp_path / "data", backend.visibility_env, device_count=8, on_busy=backend.set_busy)
    client = StreamClient(
        control_plane.target,
        NodeIdentity("node-a", "10.1.2.3", {"rack": "r1"}),
        backend,
        executor,
        wait=wait_fixed(0.05),
        log_interval_s=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    yield Agent(client, executor, backend)
    stop.set()
    await asyncio.wait_for(task, 5)
    executor.kill_all()
    for wid in executor.running_ids():
        await executor.wait(wid)


def start_command(
    command: list[str], rank: int = 0, devices: tuple[int, ...] = (0,)
) -> agent_pb2.StartWorkload:
    return agent_pb2.StartWorkload(
        workload_id=f"job-7.0.{rank}",
        job_id="job-7",
        attempt=0,
        rank=rank,
        world_size=1,
        device_indices=list(devices),
        command=command,
        master_addr="10.1.2.3",
        master_port=29500,
    )


async def test_register_and_telemetry(agent: Agent, control_plane: ServerHandle, wait_until: Wait) -> None:
    cp = control_plane.servicer
    await wait_until(lambda: cp.registers, what="register")
    reg = cp.registers[0]
    assert (reg.node_name, reg.address, reg.backend) == ("node-a", "10.1.2.3", "simulated")
    assert len(reg.devices) == 8 and all(d.simulated for d in reg.devices)
    assert reg.devices[0].model == "H100-SXM5-80GB" and dict(reg.labels) == {"rack": "r1"}
    assert (reg.cpu_count, reg.memory_bytes) == (224, 2048 * 1024**3)
    assert reg.instance_id and reg.hostname and reg.agent_version and list(reg.workloads) == []
    samples = await wait_until(lambda: len(cp.of("telemetry")) >= 3 and cp.of("telemetry"), what="telemetry")
    assert all(m.seq == 0 for m in cp.received if m.HasField("telemetry"))
    assert len(samples[0].devices) == 8 and samples[0].sampled_at.seconds > 0
    assert agent.client.telemetry_interval_s == pytest.approx(0.1)


async def test_worker_log_arrives_before_its_exit(
    agent: Agent, control_plane: ServerHandle, wait_until: Wait, py: Py
) -> None:
    cp = control_plane.servicer
    await wait_until(lambda: agent.client.connected.is_set(), what="connection")
    code = "import sys\nfor i in range(3000): print(f'line {i:05d} ' + 'x' * 40)\nsys.exit(4)"
    seq = await cp.command(start=start_command(py(code)))
    await wait_until(lambda: seq in cp.results(), what="start result")
    assert cp.results()[seq].ok, cp.results()[seq].message
    await wait_until(lambda: any(w.phase == EXITED for w in cp.of("workload")), what="exit")
    log_file = agent.executor.data_dir / "logs" / "job-7" / "0" / "rank-0.log"
    assert bytes(cp.logs["job-7.0.0"]) == log_file.read_bytes() and len(cp.logs["job-7.0.0"]) > 64 * 1024
    assert not cp.log_gaps
    kinds = [m.WhichOneof("body") for m in cp.received]
    exit_at = next(
        i for i, m in enumerate(cp.received) if m.HasField("workload") and m.workload.phase == EXITED
    )
    assert max(i for i, k in enumerate(kinds) if k == "log") < exit_at
    exited = cp.received[exit_at].workload
    assert (exited.exit_code, exited.signal) == (4, 0)
    # acked: the outbox empties and the executor forgets the finished workload
    await wait_until(lambda: len(agent.client.outbox) == 0 and not agent.executor.statuses(), what="acks")
    seqs = [m.seq for m in cp.reliable()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_unacked_messages_resent_after_restart(
    agent: Agent, control_plane: ServerHandle, wait_until: Wait
) -> None:
    cp = control_plane.servicer
    cp.auto_ack = False
    await wait_until(lambda: agent.client.connected.is_set(), what="connection")
    await cp.command(inject_fault=agent_pb2.InjectFault(device_index=2, fault="xid:31"))
    await cp.command(inject_fault=agent_pb2.InjectFault(device_index=3, fault="ecc-dbe"))
    await wait_until(lambda: len(cp.reliable()) >= 4, what="health events and results")
    sent = [(m.seq, m.WhichOneof("body")) for m in cp.reliable()]
    assert len(agent.client.outbox) == 4
    first_instance = cp.registers[0].instance_id

    await control_plane.stop()
    await wait_until(lambda: not agent.client.connected.is_set(), what="disconnect")
    cp.received.clear()
    cp.auto_ack = True
    await control_plane.start()
    await wait_until(lambda: len(cp.registers) == 2, what="re-register")
    assert cp.registers[1].instance_id == first_instance
    await wait_until(lambda: len(cp.reliable()) >= 4, what="resend")
    assert [(m.seq, m.WhichOneof("body")) for m in cp.reliable()][:4] == sent
    events = {e.device_index: e for e in cp.of("health")}
    assert events[2].code == 31 and events[3].kind == common_pb2.HEALTH_EVENT_KIND_ECC_DBE
    await wait_until(lambda: len(agent.client.outbox) == 0, what="outbox drained by acks")


async def test_worker_survives_losing_the_control_plane(
    agent: Agent, control_plane: ServerHandle, wait_until: Wait, py: Py
) -> None:
    cp = control_plane.servicer
    await wait_until(lambda: agent.client.connected.is_set(), what="connection")
    await cp.command(start=start_command(py("import time; time.sleep(60)"), devices=(0, 1)))
    running = await wait_until(lambda: [w for w in cp.of("workload") if w.phase == 2], what="running")
    pid = running[0].pid

    await control_plane.stop()
    await wait_until(lambda: not agent.client.connected.is_set(), what="disconnect")
    await asyncio.sleep(1.0)
    assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert agent.executor.running_ids() == ["job-7.0.0"]

    await control_plane.start()
    await wait_until(lambda: len(cp.registers) == 2, what="re-register")
    assert [(w.workload_id, w.phase, w.pid) for w in cp.registers[1].workloads] == [
        ("job-7.0.0", common_pb2.WORKLOAD_PHASE_RUNNING, pid)
    ]
    await wait_until(lambda: agent.client.connected.is_set(), what="reconnection")
    await cp.command(stop=agent_pb2.StopWorkload(workload_id="job-7.0.0", grace_period_s=2, reason="test"))
    exited = await wait_until(lambda: [w for w in cp.of("workload") if w.phase == EXITED], what="exit")
    assert exited[0].signal == 15 and "test" in exited[0].message


async def test_power_fault_drain_commands(
    agent: Agent, control_plane: ServerHandle, wait_until: Wait, py: Py
) -> None:
    cp = control_plane.servicer
    await wait_until(lambda: agent.client.connected.is_set(), what="connection")
    ok = await cp.command(set_power_limit=agent_pb2.SetPowerLimit(device_index=0, limit_w=300))
    low = await cp.command(set_power_limit=agent_pb2.SetPowerLimit(device_index=0, limit_w=100))
    bad_fault = await cp.command(inject_fault=agent_pb2.InjectFault(device_index=0, fault="melt"))
    ckpt = await cp.command(checkpoint=agent_pb2.RequestCheckpoint(workload_id="nope.0.0"))
    stop_unknown = await cp.command(stop=agent_pb2.StopWorkload(workload_id="nope.0.0"))
    drain = await cp.command(drain=agent_pb2.Drain(reason="maintenance"))
    start = await cp.command(start=start_command(py("print(1)")))
    results = await wait_until(lambda: len(cp.results()) == 7 and cp.results(), what="results")
    assert results[ok].ok and agent.backend.get_power_limit(0) == 300
    assert not results[low].ok and "outside its range 200-700 W" in results[low].message
    assert not results[bad_fault].ok and "accepted forms" in results[bad_fault].message
    assert not results[ckpt].ok and results[stop_unknown].ok
    assert results[drain].ok and "maintenance" in results[drain].message
    assert not results[start].ok and "draining" in results[start].message
    refused = await wait_until(lambda: cp.of("workload"), what="refused status")
    assert refused[0].phase == common_pb2.WORKLOAD_PHASE_FAILED_TO_START
    await wait_until(
        lambda: any(d.index == 0 and d.power_limit_w == 300 for t in cp.of("telemetry") for d in t.devices),
        what="telemetry with the new limit",
    )


async def test_checkpoint_command_and_report_precede_the_exit(
    agent: Agent, control_plane: ServerHandle, wait_until: Wait, py: Py
) -> None:
    cp = control_plane.servicer
    await wait_until(lambda: agent.client.connected.is_set(), what="connection")
    code = (
        "import sys, time\nfrom agents import sdk\nsdk.install()\nsdk.report_progress(1)\n"
        "for step in range(2, 3000):\n"
        "    time.sleep(0.01)\n"
        "    if sdk.checkpoint_requested():\n"
        "        path = sdk.checkpoint_dir() / 'ckpt'\n"
        "        path.write_text('weights')\n"
        "        sdk.report_checkpoint(step, path, trigger='requested')\n"
        "        sys.exit(0)\n"
        "sys.exit(5)\n"
    )
    start = await cp.command(start=start_command(py(code)))
    await wait_until(lambda: start in cp.results(), what="start result")
    await wait_until(lambda: any(w.progress_step == 1 for w in cp.of("workload")), what="progress")
    ask = await cp.command(
        checkpoint=agent_pb2.RequestCheckpoint(workload_id="job-7.0.0", reason="drill", request_id=17)
    )
    await wait_until(lambda: any(w.phase == EXITED for w in cp.of("workload")), what="exit")
    assert cp.results()[ask].ok and "SIGUSR1 sent" in cp.results()[ask].message
    (report,) = cp.of("checkpoint")
    assert (report.request_id, report.trigger, report.complete) == (17, "requested", True)
    kinds = [m.WhichOneof("body") for m in cp.reliable()]
    exit_at = next(
        i for i, m in enumerate(cp.reliable()) if m.HasField("workload") and m.workload.phase == EXITED
    )
    assert kinds.index("checkpoint") < exit_at
    exited = cp.reliable()[exit_at].workload
    assert exited.exit_code == 0 and exited.checkpoint_step == report.step


async def test_run_agent_stops_workers_on_exit(
    control_plane: ServerHandle, tmp_path: Path, wait_until: Wait, py: Py
) -> None:
    cp = control_plane.servicer
    config = AgentConfig(
        server=control_plane.target,
        node_name="node-z",
        simulate=builtin_profile("mlu370-x8-4"),
        data_dir=tmp_path / "agent",
        worker_grace_s=2.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(config, stop))
    await wait_until(lambda: cp.registers, what="register")
    assert cp.registers[0].node_name == "node-z" and cp.registers[0].devices[0].vendor == "cambricon"
    await cp.command(
        start=start_command(
            py("import time, os; print(os.environ['MLU_VISIBLE_DEVICES'], flush=True); time.sleep(60)"),
            devices=(2, 3),
        )
    )
    running = await wait_until(lambda: [w for w in cp.of("workload") if w.phase == 2], what="running")
    await wait_until(lambda: cp.logs.get("job-7.0.0") == b"2,3\n", what="worker output shipped")
    stop.set()
    await asyncio.wait_for(task, 10)
    exited = [w for w in cp.of("workload") if w.phase == EXITED]
    assert exited and exited[0].signal == 15 and "agent stopping" in exited[0].message
    assert not psutil.pid_exists(running[0].pid) or psutil.Process(running[0].pid).status() == "zombie"


def _health(cp: Any, index: int, kind: int) -> list[common_pb2.HealthEvent]:
    return [e for e in cp.of("health") if e.device_index == index and e.kind == kind]


@pytest.mark.parametrize(
    ("fault", "kind", "severity"),
    [
        ("ecc-sbe", common_pb2.HEALTH_EVENT_KIND_ECC_SBE, common_pb2.SEVERITY_WARNING),
        ("remap-pending", common_pb2.HEALTH_EVENT_KIND_ROW_REMAP_PENDING, common_pb2.SEVERITY_WARNING),
        ("remap-failed", common_pb2.HEALTH_EVENT_KIND_ROW_REMAP_FAILED, common_pb2.SEVERITY_CRITICAL),
    ],
)
async def test_telemetry_faults_reach_the_stream_through_the_watch(
    agent: Agent, control_plane: ServerHandle, wait_until: Wait, fault: str, kind: int, severity: int
) -> None:
    cp = control_plane.servicer
    await wait_until(lambda: len(cp.of("telemetry")) >= 2, what="baseline telemetry")
    seq = await cp.command(inject_fault=agent_pb2.InjectFault(device_index=5, fault=fault))
    (event,) = await wait_until(lambda: _health(cp, 5, kind), what=f"{fault} health event")
    assert cp.results()[seq].ok
    assert (event.severity, event.injected, event.vendor) == (severity, False, "nvidia")
    assert any(m.seq for m in cp.received if m.HasField("health"))  # reliable, like the backend's
    # Edge-triggered: more samples of the same state add nothing.
    seen = len(cp.of("telemetry"))
    await wait_until(lambda: len(cp.of("telemetry")) >= seen + 5, what="more telemetry")
    assert len(_health(cp, 5, kind)) == 1 and not _health(cp, 4, kind)


async def test_thermal_fault_is_reported_once_by_the_watch(
    agent: Agent, control_plane: ServerHandle, wait_until: Wait
) -> None:
    cp = control_plane.servicer
    agent.client.watch.thresholds = {0: Thresholds(slowdown_c=87, throttle_s=0.3)}
    await wait_until(lambda: len(cp.of("telemetry")) >= 2, what="baseline telemetry")
    await cp.command(inject_fault=agent_pb2.InjectFault(device_index=0, fault="thermal"))
    thermal = common_pb2.HEALTH_EVENT_KIND_THERMAL
    (event,) = await wait_until(lambda: _health(cp, 0, thermal), what="thermal event")
    assert event.severity == common_pb2.SEVERITY_WARNING and "slowdown threshold 87" in event.message
    seen = len(cp.of("telemetry"))
    await wait_until(lambda: len(cp.of("telemetry")) >= seen + 5, what="more telemetry")
    assert len(_health(cp, 0, thermal)) == 1


async def test_injected_dbe_is_not_reported_twice(
    agent: Agent, control_plane: ServerHandle, wait_until: Wait
) -> None:
    cp = control_plane.servicer
    await wait_until(lambda: len(cp.of("telemetry")) >= 2, what="baseline telemetry")
    await cp.command(inject_fault=agent_pb2.InjectFault(device_index=6, fault="ecc-dbe"))
    dbe = common_pb2.HEALTH_EVENT_KIND_ECC_DBE
    await wait_until(lambda: _health(cp, 6, dbe), what="the backend's event")
    seen = len(cp.of("telemetry"))
    await wait_until(
        lambda: (
            any(
                d.index == 6 and d.ecc_uncorrected_total == 1
                for t in cp.of("telemetry")[seen:]
                for d in t.devices
            )
            and len(cp.of("telemetry")) >= seen + 5
        ),
        what="telemetry showing the counter",
    )
    (event,) = _health(cp, 6, dbe)
    assert event.injected  # the simulator's own event; the watch's counter rise stood down
