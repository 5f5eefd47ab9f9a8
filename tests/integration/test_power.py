"""Power budgets end to end, with real processes: a budget cut is enforced by caps within
seconds, every job keeps running, and a job that would overrun the budget waits for power."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from corral.v1 import cluster_pb2

from tests.harness import Api, Server, cli, cli_json, submit, wait_for, write_spec

PY = sys.executable
SLEEPER = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(600)"
TOPOLOGY = """
zones:
  - {name: z1, capacity_kw: 20}
racks:
  - {name: r1, zone: z1, budget_kw: 20, overhead_w_per_node: 1000, nodes: [n0, n1, n2]}
"""


def power(api: Api) -> Any:
    return api.cluster.GetPower(cluster_pb2.GetPowerRequest(), timeout=5)


def zone_draw(status: Any) -> float:
    return float(next(d.draw_w for d in status.domains if d.kind == "zone" and d.name == "z1"))


def test_a_budget_cut_is_enforced_by_caps_and_no_job_stops(tmp_path: Path, start_agent: Any) -> None:
    topology = tmp_path / "power.yaml"
    topology.write_text(TOPOLOGY)
    server = Server(tmp_path / "server", "127.0.0.1:0", "--power-topology", str(topology))
    try:
        for name in ("n0", "n1", "n2"):
            start_agent(server.address, name)
        api = Api(server.address)
        api.wait_ready("n0", "n1", "n2")
        jobs = [
            submit(
                server,
                write_spec(
                    tmp_path / f"j{i}.yaml",
                    name=f"job-{i}",
                    command=[PY, "-c", SLEEPER],
                    devices_per_worker=8,
                ),
            )
            for i in range(2)
        ]
        for job_id in jobs:
            api.wait_state(job_id, "RUNNING")
        # Two busy 8 × H100 nodes and an idle one draw about 2 × (8 × 650 + 1000) + 8 × 90 +
        # 1000 = 14.1 kW: inside 20 kW.
        wait_for(lambda: zone_draw(power(api)) > 13_000, 15, what="the zone drawing under load")
        assert not power(api).caps

        cut = cli(server.address, "power", "budget", "--zone", "z1", "--kw", "12")
        assert cut.returncode == 0, cut.stderr
        status = wait_for(
            lambda: (s := power(api)) and zone_draw(s) <= 12_000 and s, 15, what="draw under the cut"
        )
        assert status.caps and all(c.cap_w < c.default_w for c in status.caps)
        assert all(api.state(j) == "RUNNING" for j in jobs)  # capped, not stopped
        shown = cli_json(server.address, "power")
        assert any(d["name"] == "z1" and d["budget_w"] == 12000 for d in shown["domains"])

        # A third job would push the zone over at its expected draw: it waits, and says why.
        waiting = submit(
            server,
            write_spec(tmp_path / "j3.yaml", name="job-3", command=[PY, "-c", SLEEPER], devices_per_worker=1),
        )
        reason = wait_for(
            lambda: "power" in (r := api.job(waiting).reason) and r, 15, what="waiting for power"
        )
        assert "waiting for power" in reason and api.state(waiting) == "PENDING"

        # An inlet reading at the zone's limit (27 °C default) derates it to 80%: 16 kW of 20.
        assert cli(server.address, "power", "budget", "--zone", "z1", "--kw", "20").returncode == 0
        hot = cli(server.address, "power", "inlet", "--zone", "z1", "--c", "27")
        assert hot.returncode == 0, hot.stderr
        derated = wait_for(
            lambda: (
                (s := power(api))
                and any(d.name == "z1" and d.effective_budget_w == 16_000 for d in s.domains)
                and s
            ),
            10,
            what="the zone derated by its inlet temperature",
        )
        assert next(d for d in derated.domains if d.name == "z1").inlet_c == 27
        bad = cli(server.address, "power", "inlet", "--zone", "z9", "--c", "25")
        assert bad.returncode == 2 and "unknown zone" in bad.stderr
        assert cli(server.address, "power", "inlet", "--zone", "z1", "--c", "20").returncode == 0
        wait_for(lambda: not power(api).caps, 30, what="caps lifted once the budget is back")
        assert all(api.state(j) == "RUNNING" for j in jobs)
        api.close()
    finally:
        server.stop()
