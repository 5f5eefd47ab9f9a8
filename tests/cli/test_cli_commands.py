"""Commands end to end against the in-process fake control plane (see conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_fakes import FakeControlPlane
from typer.testing import CliRunner, Result

from scheduler.cli.main import app

Fake = tuple[FakeControlPlane, str]
runner = CliRunner()


def corral(*args: str, server: str | None = None) -> Result:
    argv = list(args)
    env = {"CORRAL_SERVER": server} if server else {}
    return runner.invoke(app, argv, env=env)


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


GOOD = "name: hello\ncommand: [python, -c, 'print(1)']\nworkers: 2\ndevices_per_worker: 1\n"


def test_submit_prints_id_and_fills_working_dir(
    fake_server: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, address = fake_server
    monkeypatch.chdir(tmp_path)
    result = corral("submit", str(write_spec(tmp_path, GOOD)), "--owner", "ada", server=address)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "j1"
    request = fake.submitted[0]
    assert request.owner == "ada"
    assert request.spec.working_dir == str(tmp_path)
    assert list(request.spec.command) == ["python", "-c", "print(1)"]


@pytest.mark.parametrize(("outcome", "code", "word"), [("", 0, "SUCCEEDED"), ("failed", 1, "FAILED"),
                                                       ("cancelled", 5, "CANCELLED")])  # fmt: skip
def test_submit_follow_exit_codes(
    fake_server: Fake, tmp_path: Path, outcome: str, code: int, word: str
) -> None:
    _, address = fake_server
    spec = GOOD + (f"env: {{FAKE_OUTCOME: {outcome}}}\n" if outcome else "")
    result = corral("submit", str(write_spec(tmp_path, spec)), "-f", server=address)
    assert result.exit_code == code, result.output
    out = result.stdout
    assert "submitted job j1" in out and "PENDING" in out and "RUNNING" in out and "worker: rank 0 up" in out
    assert f"job j1 {word}" in out


def test_submit_follow_json_lines(fake_server: Fake, tmp_path: Path) -> None:
    _, address = fake_server
    result = corral("submit", str(write_spec(tmp_path, GOOD)), "-f", "-o", "json", server=address)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["id"] == "j1" and lines[0]["spec"]["workers"] == 2
    assert [e["state"] for e in lines[1:]][-1] == "JOB_STATE_SUCCEEDED"


def test_server_side_rejection_lists_problems(fake_server: Fake, tmp_path: Path) -> None:
    _, address = fake_server
    result = corral("submit", str(write_spec(tmp_path, "name: rejected\ncommand: [x]\n")), server=address)
    assert result.exit_code == 2
    err = result.stderr
    assert "rejected the request" in err and "workers: must be ≥ 1 (got 0)" in err and "name: required" in err


def test_submit_bad_spec_lists_every_problem(tmp_path: Path, dead_address: str) -> None:
    bad = write_spec(tmp_path, "name: Bad_Name\ncommand: []\nworkers: -3\npriority: 5000\nbogus: 1\n")
    result = corral("submit", str(bad), server=dead_address)
    assert result.exit_code == 2
    err = result.stderr
    assert f"invalid job spec {bad}" in err
    for field in ("name:", "command:", "workers: must be ≥ 1 (got -3)", "priority:", "bogus:"):
        assert field in err
    assert result.stdout == ""


def test_jobs_job_cancel(fake_server: Fake, tmp_path: Path) -> None:
    _, address = fake_server
    corral("submit", str(write_spec(tmp_path, GOOD)), server=address)
    table = corral("jobs", server=address)
    assert table.exit_code == 0
    assert "WORKERS×DEVICES" in table.stdout and "hello" in table.stdout and "2×1" in table.stdout
    as_json = json.loads(corral("jobs", "-o", "json", "--state", "succeeded", server=address).stdout)
    assert [j["id"] for j in as_json["jobs"]] == ["j1"]
    none = json.loads(corral("jobs", "-o", "json", "--state", "running", server=address).stdout)
    assert none == {"jobs": []}
    assert corral("jobs", "--state", "sleeping", server=address).exit_code == 2
    detail = corral("job", "j1", server=address)
    assert detail.exit_code == 0 and "attempt 1" in detail.stdout
    missing = corral("job", "nope", server=address)
    assert missing.exit_code == 3 and "no job 'nope'" in missing.stderr
    ended = corral("cancel", "j1", "--reason", "enough", server=address)
    assert ended.exit_code == 6 and "already ended" in ended.stderr


def test_logs_prefix_ranks_only_when_several(fake_server: Fake, tmp_path: Path) -> None:
    _, address = fake_server
    corral("submit", str(write_spec(tmp_path, GOOD)), server=address)
    both = corral("logs", "j1", server=address)
    assert both.exit_code == 0, both.output
    assert both.stdout.splitlines() == [
        "[rank 0] hello from 0",
        "[rank 0] partial line",
        "[rank 1] hello from 1",
        "[rank 1] partial line",
    ]
    one = corral("logs", "j1", "--rank", "1", server=address)
    assert one.stdout == "hello from 1\npartial line\n"


def test_nodes_node_and_actions(fake_server: Fake) -> None:
    _, address = fake_server
    table = corral("nodes", server=address)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert "simulated" in next(line for line in lines if line.startswith("sim-h100-0"))
    assert "nvml" in next(line for line in lines if line.startswith("real-0"))
    detail = corral("node", "sim-h100-0", server=address)
    assert "(simulated)" in detail.stdout and "POWER / LIMIT" in detail.stdout
    assert corral("node", "ghost", server=address).exit_code == 3
    cordoned = corral("cordon", "sim-h100-0", "--reason", "bad fan", server=address)
    assert "cordoned (bad fan)" in cordoned.stdout
    drained = json.loads(corral("drain", "sim-h100-0", "-o", "json", server=address).stdout)
    assert drained["draining"] is True and drained["name"] == "sim-h100-0"
    back = corral("uncordon", "sim-h100-0", server=address)
    assert "schedulable" in back.stdout


def test_sim_inject(fake_server: Fake) -> None:
    _, address = fake_server
    ok = corral("sim", "inject", "--node", "sim-h100-0", "--device", "3", "--fault", "XID:79", server=address)
    assert ok.exit_code == 0 and "injected xid:79 into sim-h100-0/3" in ok.stdout
    real = corral("sim", "inject", "--node", "real-0", "--device", "0", "--fault", "hang", server=address)
    assert real.exit_code == 6 and "simulated only" in real.stderr
    bad = corral(
        "sim", "inject", "--node", "sim-h100-0", "--device", "0", "--fault", "meltdown", server=address
    )
    assert bad.exit_code == 2 and "xid:<code>" in bad.stderr


def test_status(fake_server: Fake) -> None:
    _, address = fake_server
    table = corral("status", server=address)
    assert table.exit_code == 0 and "2 ready of 2" in table.stdout
    data = json.loads(corral("status", "-o", "json", server=address).stdout)
    assert data["version"] == "0.1.0" and data["ingest"]["lag_p99_s"] == 0.02 and data["nodes_ready"] == 2


def test_unreachable_server_exits_4(dead_address: str) -> None:
    for command in (["jobs"], ["nodes"], ["status"], ["job", "x"], ["logs", "x"]):
        result = corral(*command, server=dead_address)
        assert result.exit_code == 4, (command, result.output)
        assert f"cannot reach the control plane at {dead_address}" in result.stderr


def test_server_flag_overrides_env(fake_server: Fake, dead_address: str) -> None:
    _, address = fake_server
    result = runner.invoke(app, ["status", "--server", address], env={"CORRAL_SERVER": dead_address})
    assert result.exit_code == 0


def test_events_table_json_and_filters_reach_the_server(fake_server: Fake) -> None:
    fake, address = fake_server
    table = corral("events", server=address)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "KIND", "JOB", "NODE", "CAUSE", "BLAME", "MESSAGE"]
    assert [line.split()[2] for line in lines[1:]] == ["node", "failure", "recovery"]  # newest last
    assert "xid:79 on device 3" in lines[2] and "hardware" in lines[2]
    data = json.loads(corral("events", "--cause", "XID:79", "-o", "json", server=address).stdout)
    assert [e["id"] for e in data["events"]] == ["2"]  # uint64 is a string in proto JSON
    assert json.loads(data["events"][0]["data_json"])["blame"] == "hardware"
    none = corral("events", "--node", "ghost", server=address)
    assert none.exit_code == 0 and "no events match" in none.stdout
    result = corral(
        "events", "--node", "sim-h100-0", "--kind", "failure", "-k", "NODE", "--job", "j9",
        "--since", "10m", "--limit", "5", server=address,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    request = fake.event_requests[-1]
    assert list(request.kinds) == ["failure", "node"] and request.node_name == "sim-h100-0"
    assert request.job_id == "j9" and request.limit == 5
    assert abs(request.since.seconds - (time.time() - 600)) < 3600  # a point ten minutes back, not 0
    assert not fake.event_requests[0].HasField("since") and not fake.event_requests[0].kinds


@pytest.mark.parametrize(
    ("args", "flag", "hint"),
    [
        (["--since", "bogus"], "--since", "10m"),
        (["--since", "yesterday"], "--since", "2026-11-23T04:00"),
        (["--kind", "failures"], "--kind", "failure, recovery, health"),
        (["--limit", "-1"], "--limit", ""),
    ],
)
def test_events_bad_flags_exit_2_naming_the_flag(
    dead_address: str, args: list[str], flag: str, hint: str
) -> None:
    # Refused before any call: the address has nothing listening, which would be exit 4.
    result = corral("events", *args, server=dead_address)
    assert result.exit_code == 2, result.output
    assert flag in result.stderr and hint in result.stderr


def test_clear_health(fake_server: Fake) -> None:
    fake, address = fake_server
    fake.nodes["sim-h100-0"].health = "QUARANTINED"
    cleared = corral("clear-health", "sim-h100-0", "--reason", "reseated gpu 3", server=address)
    assert cleared.exit_code == 0, cleared.output
    assert "cleared node sim-h100-0; node health now HEALTHY" in cleared.stdout
    assert "still cordoned: `corral uncordon sim-h100-0`" in cleared.stdout
    one = json.loads(
        corral("clear-health", "sim-h100-0", "--device", "3", "-o", "json", server=address).stdout
    )
    assert one["health"] == "HEALTHY" and one["name"] == "sim-h100-0"
    assert corral("clear-health", "sim-h100-0", "--device", "42", server=address).exit_code == 3
    assert corral("clear-health", "ghost", server=address).exit_code == 3
    negative = corral("clear-health", "sim-h100-0", "--device", "-1", server=address)
    assert negative.exit_code == 2 and "--device" in negative.stderr
