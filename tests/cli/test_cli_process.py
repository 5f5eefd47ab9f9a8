"""The real `corral` executable in a subprocess: help, start-up cost, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

COMMANDS = (
    "up", "server", "agent", "status", "submit", "jobs", "job", "cancel", "logs",
    "nodes", "node", "cordon", "uncordon", "drain", "sim", "queues",
)  # fmt: skip


def corral_argv() -> list[str]:
    script = Path(sys.executable).parent / "corral"
    return [str(script)] if script.exists() else [sys.executable, "-m", "scheduler.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [*corral_argv(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_help_lists_every_command_and_exit_codes() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert f" {command} " in result.stdout, command
    assert "Exit codes" in result.stdout
    expected = ("1  the job ended FAILED", "2  bad input", "3  no such job or node",
                "4  the control plane is unreachable", "5  the job ended CANCELLED",
                "6  refused")  # fmt: skip
    for line in expected:
        assert line in result.stdout, line
    sim = run("sim", "--help")
    assert "inject" in sim.stdout


def test_help_is_fast_and_imports_no_grpc() -> None:
    code = (
        "import sys; import scheduler.cli.main; "
        "print(sorted(m for m in ('grpc', 'corral.v1.job_pb2') if m in sys.modules))"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"
    run("--help")  # warm the bytecode cache
    started = time.monotonic()
    assert run("--help").returncode == 0
    assert time.monotonic() - started < 1.5  # well under a second on a quiet machine


def test_unreachable_server_exits_4_with_hint(dead_address: str) -> None:
    result = run("jobs", env={"CORRAL_SERVER": dead_address})
    assert result.returncode == 4
    assert f"cannot reach the control plane at {dead_address}" in result.stderr
    assert "is `corral server` running?" in result.stderr and "CORRAL_SERVER" in result.stderr
    flag = run("nodes", "--server", dead_address)
    assert flag.returncode == 4 and dead_address in flag.stderr


def test_submit_bad_spec_exits_2_listing_all_fields(tmp_path: Path) -> None:
    pytest.importorskip("scheduler.spec", reason="scheduler.spec is not there yet")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: Not_Valid\nworkers: -3\ndevices_per_worker: 100\nenv: {RANK: '1'}\ncheckpoint_dir: rel\n"
    )
    result = run("submit", str(bad), env={"CORRAL_SERVER": "127.0.0.1:1"})
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr
    for field in ("name:", "command: required", "workers: must be ≥ 1 (got -3)", "devices_per_worker:",
                  "env.RANK", "checkpoint_dir:"):  # fmt: skip
        assert field in result.stderr, field
    assert result.stdout == ""


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("submit", str(tmp_path / "missing.yaml")).returncode == 2
    assert run("jobs", "--limit", "-1").returncode == 2
    assert run("sim", "inject", "--node", "n", "--device", "0", "--fault", "xid").returncode == 2
    assert run("frobnicate").returncode == 2


def test_agent_rejects_unknown_profile(tmp_path: Path) -> None:
    pytest.importorskip("agents.profiles", reason="agents.profiles is not there yet")
    result = run("agent", "--simulate", "no-such-profile", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "h100-sxm-8" in result.stderr


def test_agent_without_devices_exits_2(tmp_path: Path) -> None:
    pytest.importorskip("agents.main", reason="the node agent is not there yet")
    from scheduler.cli.up import nvml_probe

    if nvml_probe()[0]:
        pytest.skip("this machine has NVIDIA devices")
    result = run("agent", "--server", "127.0.0.1:1", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--simulate" in result.stderr
