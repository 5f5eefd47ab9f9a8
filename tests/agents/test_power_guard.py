"""The agent's power limits: the safe-cap decision, caps kept across restarts, and the safe
cap put on when the control plane is out of reach and lifted when it is back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from corral.v1 import agent_pb2

from agents.backends.simulated import SimulatedBackend
from agents.commands import CommandHandler
from agents.executor import Executor
from agents.main import Agent, AgentConfig
from agents.power_guard import (
    LIMITS_FILE,
    DeviceLimits,
    PowerLimits,
    SafeCapConfig,
    read_limits,
    safe_cap_due,
    safe_cap_w,
    safe_caps,
    write_limits,
)
from agents.profiles import builtin_profile, load_profile

Wait = Callable[..., Any]
H100 = DeviceLimits(index=0, min_w=200.0, max_w=700.0, default_w=700.0, settable=True)
ASCEND = DeviceLimits(index=1, min_w=310.0, max_w=310.0, default_w=310.0, settable=False)


def backend(profile: str = "h100-sxm-8") -> SimulatedBackend:
    return SimulatedBackend(load_profile(builtin_profile(profile)), seed=3)


# -- the pure decisions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "down_s", "due"),
    [
        (SafeCapConfig(after_s=60), 59.9, False),
        (SafeCapConfig(after_s=60), 60.0, True),
        (SafeCapConfig(after_s=0), 10_000.0, False),  # 0: off
    ],
)
def test_safe_cap_due(config: SafeCapConfig, down_s: float, due: bool) -> None:
    assert safe_cap_due(config, down_s) is due


@pytest.mark.parametrize(
    ("config", "current", "expected"),
    [
        (SafeCapConfig(), None, 490.0),  # 0.7 × 700
        (SafeCapConfig(fraction=0.2), None, 200.0),  # never below the minimum
        (SafeCapConfig(cap_w=450), None, 450.0),
        (SafeCapConfig(cap_w=900), None, 700.0),  # never above the maximum
        (SafeCapConfig(cap_w=100), None, 200.0),
        (SafeCapConfig(), 400.0, None),  # a lower cap is in force: left alone
        (SafeCapConfig(), 490.2, None),  # the same cap, within rounding
        (SafeCapConfig(), 600.0, 490.0),
    ],
)
def test_safe_cap_w(config: SafeCapConfig, current: float | None, expected: float | None) -> None:
    assert safe_cap_w(H100, config, current) == expected


def test_safe_caps_skip_devices_that_cannot_be_capped() -> None:
    assert safe_cap_w(ASCEND, SafeCapConfig()) is None
    assert safe_caps([H100, ASCEND], SafeCapConfig(), {0: 700.0, 1: 310.0}) == {0: 490.0}


@pytest.mark.parametrize(
    ("config", "flag"),
    [
        (SafeCapConfig(after_s=-1), "--safe-cap-after"),
        (SafeCapConfig(cap_w=0), "--safe-cap-w"),
        (SafeCapConfig(fraction=1.5), "--safe-cap-fraction"),
        (SafeCapConfig(fraction=0), "--safe-cap-fraction"),
    ],
)
def test_config_problems_name_the_flag(config: SafeCapConfig, flag: str) -> None:
    problems = config.problems()
    assert len(problems) == 1 and problems[0].startswith(f"{flag}: ")


def test_default_config_is_fine() -> None:
    assert SafeCapConfig().problems() == []


# -- persistence ----------------------------------------------------------------------------


def test_limits_file_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / LIMITS_FILE
    assert read_limits(path) == {}
    write_limits(path, {3: 450.0, 0: 500.0})
    assert read_limits(path) == {0: 500.0, 3: 450.0}
    assert not path.with_name(path.name + ".tmp").exists()
    path.write_text("{not json")
    assert read_limits(path) == {}
    path.write_text(json.dumps({"limits": {"0": 500, "x": 1, "2": -5}}))
    assert read_limits(path) == {0: 500.0}


async def test_cap_survives_an_agent_restart_and_default_clears_it(tmp_path: Path) -> None:
    before = backend()
    handler = CommandHandler(
        Executor(tmp_path, "CUDA_VISIBLE_DEVICES"), before, PowerLimits(before, tmp_path)
    )
    result = await handler.handle(
        agent_pb2.ControlMessage(seq=1, set_power_limit=agent_pb2.SetPowerLimit(device_index=2, limit_w=450))
    )
    assert result.ok, result.message
    assert before.get_power_limit(2) == 450.0
    assert read_limits(tmp_path / LIMITS_FILE) == {2: 450.0}

    after = backend()  # a restarted agent: the device starts at its default
    assert after.get_power_limit(2) == 700.0
    PowerLimits(after, tmp_path).restore()
    assert after.get_power_limit(2) == 450.0

    handler = CommandHandler(Executor(tmp_path, "CUDA_VISIBLE_DEVICES"), after, PowerLimits(after, tmp_path))
    result = await handler.handle(
        agent_pb2.ControlMessage(seq=2, set_power_limit=agent_pb2.SetPowerLimit(device_index=2, limit_w=700))
    )
    assert result.ok and after.get_power_limit(2) == 700.0
    assert read_limits(tmp_path / LIMITS_FILE) == {}


async def test_refused_cap_is_not_persisted(tmp_path: Path) -> None:
    b = backend()
    handler = CommandHandler(Executor(tmp_path, "CUDA_VISIBLE_DEVICES"), b, PowerLimits(b, tmp_path))
    result = await handler.handle(
        agent_pb2.ControlMessage(seq=1, set_power_limit=agent_pb2.SetPowerLimit(device_index=0, limit_w=50))
    )
    assert not result.ok and "outside its range" in result.message
    assert read_limits(tmp_path / LIMITS_FILE) == {}


def test_restore_drops_limits_that_no_longer_apply(tmp_path: Path) -> None:
    write_limits(tmp_path / LIMITS_FILE, {0: 100.0, 9: 500.0})
    b = backend("mlu370-x8-4")  # 8 chips, 75-125 W each
    PowerLimits(b, tmp_path).restore()
    assert b.get_power_limit(0) == 100.0
    assert read_limits(tmp_path / LIMITS_FILE) == {0: 100.0}


# -- the safe cap ---------------------------------------------------------------------------


def test_safe_cap_on_then_lifted_to_the_persisted_caps(tmp_path: Path) -> None:
    b = backend()
    power = PowerLimits(b, tmp_path, SafeCapConfig(after_s=30))
    power.apply(0, 450.0)  # below the safe cap: stays
    power.apply(1, 600.0)
    power.check(29.0)
    assert not power.safe_capped and b.get_power_limit(2) == 700.0
    power.check(31.0)
    assert [b.get_power_limit(i) for i in range(3)] == [450.0, 490.0, 490.0]
    assert power.safe_capped == {1, 2, 3, 4, 5, 6, 7}
    assert read_limits(tmp_path / LIMITS_FILE) == {0: 450.0, 1: 600.0}  # safe caps are not persisted
    power.apply(3, 300.0)  # a cap from the control plane replaces the safe cap on that device
    power.lift()
    assert [b.get_power_limit(i) for i in range(5)] == [450.0, 600.0, 700.0, 300.0, 700.0]
    assert not power.safe_capped


async def test_agent_safe_caps_while_cut_off_and_lifts_on_reconnect(
    control_plane: Any, tmp_path: Path, wait_until: Wait
) -> None:
    b = backend("mlu370-x8-4")  # 125 W default per chip: safe cap 87 W (whole watts, rounded down)
    config = AgentConfig(
        server=control_plane.target,
        node_name="node-p",
        data_dir=tmp_path / "agent",
        safe_cap=SafeCapConfig(after_s=0.3),
    )
    agent = Agent(config, b)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_until(lambda: agent.client.connected.is_set(), what="connected")
        await control_plane.servicer.command(
            set_power_limit=agent_pb2.SetPowerLimit(device_index=1, limit_w=100)
        )
        await wait_until(lambda: b.get_power_limit(1) == 100.0, what="cap applied")
        await control_plane.stop()
        await wait_until(lambda: b.get_power_limit(0) == 87.0, what="safe cap")
        assert [b.get_power_limit(i) for i in range(4)] == [87.0, 87.0, 87.0, 87.0]
        await control_plane.start()
        await wait_until(lambda: b.get_power_limit(0) == 125.0, timeout=30.0, what="safe cap lifted")
        assert b.get_power_limit(1) == 100.0  # back to the control plane's cap, not the default
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_agent_reapplies_persisted_caps_at_start(tmp_path: Path, wait_until: Wait) -> None:
    write_limits(tmp_path / "agent" / LIMITS_FILE, {3: 90.0})
    b = backend("mlu370-x8-4")
    config = AgentConfig(server="127.0.0.1:1", node_name="node-q", data_dir=tmp_path / "agent")
    stop = asyncio.Event()
    task = asyncio.create_task(Agent(config, b).run(stop))
    try:
        await wait_until(lambda: b.get_power_limit(3) == 90.0, what="persisted cap re-applied")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
