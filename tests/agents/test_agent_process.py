"""The agent as `corral up` runs it: a real process, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.v1 import agent_pb2, common_pb2

if TYPE_CHECKING:  # fixtures come from conftest.py; never import it at run time
    from conftest import ServerHandle  # type: ignore[import-not-found]

Wait = Callable[..., Any]
Py = Callable[[str], list[str]]


async def test_sigterm_stops_workers_and_reports(
    control_plane: ServerHandle, tmp_path: Path, wait_until: Wait, py: Py
) -> None:
    cp = control_plane.servicer
    boot = (
        "from pathlib import Path\n"
        "from agents.main import AgentConfig, main_sync\n"
        f"main_sync(AgentConfig(server={control_plane.target!r}, node_name='proc-node',"
        f" simulate=Path('ascend-910b-8'), data_dir=Path({str(tmp_path / 'agent')!r}), worker_grace_s=3))\n"
    )
    agent = await asyncio.create_subprocess_exec(sys.executable, "-c", boot, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_until(lambda: cp.registers, timeout=15, what="register from the agent process")
        assert cp.registers[0].devices[0].model == "Ascend 910B"
        worker = (
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('bye', flush=True), sys.exit(0)))\n"
            "print('hello', flush=True)\n"
            "time.sleep(60)\n"
        )
        await cp.command(
            start=agent_pb2.StartWorkload(
                workload_id="j.0.0",
                job_id="j",
                command=py(worker),
                device_indices=[4, 5, 6, 7],
                world_size=1,
            )
        )
        await wait_until(lambda: cp.logs.get("j.0.0") == b"hello\n", what="worker running")
        agent.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(agent.communicate(), 15)
    finally:
        if agent.returncode is None:
            agent.kill()
            await agent.wait()
    log_text = stderr.decode()
    assert agent.returncode == 0, log_text
    exited = [w for w in cp.of("workload") if w.phase == common_pb2.WORKLOAD_PHASE_EXITED]
    assert exited and (exited[0].exit_code, exited[0].signal) == (0, 0)
    assert bytes(cp.logs["j.0.0"]) == b"hello\nbye\n"
    assert "SIGTERM received: stopping" in log_text and "stopping 1 workload(s)" in log_text
