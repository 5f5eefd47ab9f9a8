"""The openb replay end to end on a tiny trace in the trace's own format, and its bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import openb
from scheduler.sim.openb import TraceError, load_nodes, load_tasks

NODES = """sn,cpu_milli,memory_mib,gpu,model
n-0,32000,131072,4,V100M16
n-1,32000,131072,4,V100M16
n-2,96000,393216,8,G2
n-3,16000,65536,0,
"""
# Shapes as in openb: whole GPUs, shares of one GPU, multi-GPU, CPU-only, a model constraint.
PODS = """name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec
p-0,4000,8192,1,1000,
p-1,2000,4096,1,500,
p-2,2000,4096,1,460,
p-3,8000,16384,2,1000,
p-4,4000,8192,0,0,
p-5,4000,8192,1,1000,V100M16
p-6,6000,12288,4,1000,G2
p-7,2000,4096,1,250,
"""


def write(tmp_path: Path, nodes: str = NODES, pods: str = PODS) -> tuple[Path, Path]:
    (tmp_path / "nodes.csv").write_text(nodes)
    (tmp_path / "pods.csv").write_text(pods)
    return tmp_path / "nodes.csv", tmp_path / "pods.csv"


def test_replay_reports_every_policy(tmp_path: Path) -> None:
    nodes, pods = write(tmp_path)
    out = tmp_path / "out.json"
    code = openb.main(
        ["--nodes", str(nodes), "--pods", str(pods), "--policy", "all", "--seeds", "2", "--jobs", "1",
         "--json", str(out), "--report-dir", str(tmp_path / "r")]
    )  # fmt: skip
    assert code == 0
    mapping = json.loads(out.read_text())
    assert set(mapping) == {"corral", "fgd", "best-fit", "first-fit"}
    for figures in mapping.values():
        assert figures["seeds"] == 2
        # 16 GPUs, 130% of them arrive: no policy can allocate more than all of them.
        assert 50.0 <= figures["alloc_130"] <= 100.0
    report = json.loads((tmp_path / "r" / "openb_pods.json").read_text())
    assert report["policies"] == mapping and len(report["per_run"]) == 8
    assert "| `corral` (default) |" in (tmp_path / "r" / "openb_pods.md").read_text()


def test_workload_is_tuned_to_130_percent_and_seeded() -> None:
    tasks = load_tasks_from_text(PODS)
    a = openb.workload(tasks, 16_000, 42)
    assert a == openb.workload(tasks, 16_000, 42)
    assert a != openb.workload(tasks, 16_000, 43)
    total = sum(t.total_milli for t in a)
    assert total <= 1.3 * 16_000 < total + max(t.total_milli for t in tasks) + 1


def load_tasks_from_text(text: str) -> list[openb.TraceTask]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "pods.csv"
        path.write_text(text)
        return load_tasks(path)


def test_cpu_only_nodes_are_left_out(tmp_path: Path) -> None:
    nodes, _ = write(tmp_path)
    assert [n.name for n in load_nodes(nodes)] == ["n-0", "n-1", "n-2"]


@pytest.mark.parametrize(
    ("pods", "message"),
    [
        ("name,cpu_milli,memory_mib,num_gpu\np,1,1,1\n", "missing column(s) gpu_milli"),
        (
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,two,1000\n",
            ":2: num_gpu must be a whole number (got 'two')",
        ),
        (
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,2,500\n",
            ":2: gpu_milli must be 1000 when num_gpu is 2",
        ),
        (
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,1,1500\n",
            ":2: gpu_milli must be between 0 and 1000",
        ),
        ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,-5,1,1,100\n", ":2: cpu_milli must be ≥ 0 (got -5)"),
    ],
)
def test_bad_pod_lists_name_the_line_and_column(tmp_path: Path, pods: str, message: str) -> None:
    _, path = write(tmp_path, pods=pods)
    with pytest.raises(TraceError, match=None) as err:
        load_tasks(path)
    assert message in str(err.value)


def test_bad_input_exits_2_with_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes, pods = write(tmp_path, nodes="sn,cpu_milli,memory_mib,gpu\nn,1,1,1\n")
    assert openb.main(["--nodes", str(nodes), "--pods", str(pods), "--report-dir", str(tmp_path)]) == 2
    assert "missing column(s) model" in capsys.readouterr().err


def test_simulating_the_trace_with_its_own_times(tmp_path: Path) -> None:
    from benchmarks import sim_openb

    timed = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,creation_time,deletion_time\n" + "".join(
        f"p-{i},2000,4096,1,500,{i * 10},{i * 10 + 100}\n" for i in range(40)
    )
    nodes, pods = write(tmp_path, pods=timed)
    assert sim_openb.main(["--nodes", str(nodes), "--pods", str(pods), "--report-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "sim_openb_pods.json").read_text())
    s = report["summary"]
    # 40 half-GPU tasks of 100 s, one every 10 s: at most 10 at once, which 16 GPUs hold.
    assert s["jobs_finished"] == 40 and s["queueing_delay_mean_s"] == 0
    assert s["jct_mean_s"] == 100
