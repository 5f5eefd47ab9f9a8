"""A real Prometheus (Debian's package) scrapes a real `corral server` and a simulated agent it
finds through the control plane's HTTP service discovery; an injected XID 79 comes back from
PromQL over Prometheus' HTTP API, the shipped alert rules load and fire, and every dashboard
query runs. Also, without Prometheus: every metric the dashboards and rules name is exported."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import REPO, Agent, Api, Proc, Server, cli, submit, wait_for, write_spec
from tests.unit.test_metrics_alerts import (
    ALERTS,
    dashboard_queries,
    exported_names,
    metric_names,
    rule_queries,
    with_variables,
)

NODE = "sim-h100-0"  # a node examples/power.yaml places in rack r-h100


@dataclass
class Cluster:
    server: Server
    agent: Agent
    http: str  # the control plane's dashboard and /metrics, http://host:port

    def get(self, url: str) -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def targets(self) -> list[dict[str, Any]]:
        return list(json.loads(self.get(f"{self.http}/prometheus/targets")))

    def agent_metrics_url(self) -> str:
        group = self.targets()[0]
        return f"http://{group['targets'][0]}{group['labels']['__metrics_path__']}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("prometheus-cluster")
    server = Server(root / "server", "127.0.0.1:0", "--power-topology", str(REPO / "examples" / "power.yaml"))
    agent = Agent(server.address, NODE, "h100-sxm-8", root / "agent")
    try:
        http = wait_for(lambda: (server.data_dir / "http.addr").read_text().strip(), 30, what="http.addr")
        c = Cluster(server, agent, http)
        wait_for(
            lambda: [g for g in c.targets() if g["labels"]["node"] == NODE], 30, what="the agent's exporter"
        )
        yield c
    finally:
        agent.stop()
        server.stop()


def test_dashboards_and_rules_name_only_exported_metrics(cluster: Cluster) -> None:
    exported = exported_names(cluster.get(f"{cluster.http}/metrics"))
    exported |= exported_names(cluster.get(cluster.agent_metrics_url()))
    for where, expr in [*dashboard_queries(), *rule_queries()]:
        missing = metric_names(expr) - exported
        assert not missing, f"{where} names metrics nothing exports: {sorted(missing)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus(Proc):
    def __init__(self, root: Path, cluster: Cluster, binary: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        host_port = urllib.parse.urlsplit(cluster.http).netloc
        rules = root / "alerts.yaml"
        shutil.copy(ALERTS, rules)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": "corral-controlplane", "static_configs": [{"targets": [host_port]}]},
                {
                    "job_name": "corral-agents",
                    "http_sd_configs": [
                        {"url": f"{cluster.http}/prometheus/targets", "refresh_interval": "1s"}
                    ],
                },
            ],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        super().__init__(
            [
                binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            root / "prometheus.log",
        )
        wait_for(self._ready, 60, 0.2, what="prometheus /-/ready")

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"prometheus exited:\n{self.output()}")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a bad query answers 400 with the reason
            body = json.loads(exc.read())
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])


@pytest.fixture(scope="module")
def prometheus(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (Debian: apt-get install prometheus)")
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), cluster, binary)
    yield prom
    prom.stop()


def test_prometheus_sees_an_injected_xid_79_as_an_interruption(
    cluster: Cluster, prometheus: Prometheus, tmp_path: Path
) -> None:
    def healthy_targets() -> set[str]:
        active = prometheus.api("targets")["activeTargets"]
        return {t["labels"]["job"] for t in active if t["health"] == "up"}

    wait_for(
        lambda: healthy_targets() == {"corral-controlplane", "corral-agents"}, 30, what="both targets up"
    )
    groups = {g["name"] for g in prometheus.api("rules")["groups"]}
    assert {"corral-devices", "corral-nodes", "corral-reliability", "corral-controlplane"} <= groups

    spec = write_spec(
        tmp_path / "sleeper.yaml",
        name="sleeper",
        command=["python", "-c", "import time; time.sleep(600)"],
        workers=1,
        devices_per_worker=1,
        working_dir=str(REPO),
    )
    job_id = submit(cluster.server, spec)
    api = Api(cluster.server.address)
    try:
        job = api.wait_state(job_id, "RUNNING", timeout=60)
        # `corral submit` went through the control plane's gRPC interceptor.
        submitted = 'grpc_server_handled_total{grpc_method="Submit", grpc_code="OK"}'
        wait_for(lambda: prometheus.query(submitted), 30, 0.5, what="the Submit call counted")
        placed = 'corral_scheduler_pass_duration_seconds_count{result="placed"} > 0'
        wait_for(lambda: prometheus.query(placed), 30, 0.5, what="the pass that placed it timed")
        worker = job.attempts[0].workers[0]
        device = str(worker.device_indices[0])
        # Running jobs have a checkpoint age series of their own.
        wait_for(lambda: prometheus.query(f'corral_job_checkpoint_age_seconds{{job_id="{job_id}"}}'), 30)

        injected = cli(
            cluster.server.address,
            "sim",
            "inject",
            "--node",
            worker.node_name,
            "--device",
            device,
            "--fault",
            "xid:79",
        )
        assert injected.returncode == 0, injected.stderr

        found = wait_for(
            lambda: prometheus.query('corral_job_interruptions_total{component="gpu"} > 0'),
            60,
            0.5,
            what="the interruption in Prometheus",
        )
        assert len(found) == 1
        labels = found[0]["metric"]
        assert labels["job"] == "corral-controlplane"
        assert (labels["detected_by"], labels["blame"]) == ("xid", "hardware")
        assert labels["cause"] == "faulty_gpu_fell_off_the_bus"
        assert float(found[0]["value"][1]) == 1

        xids = wait_for(
            lambda: prometheus.query('corral_device_xid_errors_total{xid="79"} > 0'), 30, 0.5, what="XID 79"
        )
        assert [(x["metric"]["node"], x["metric"]["device"], x["metric"]["job"]) for x in xids] == [
            (worker.node_name, device, "corral-agents")
        ]
        assert float(xids[0]["value"][1]) == 1
        assert xids[0]["metric"]["simulated"] == "true"

        firing = wait_for(
            lambda: prometheus.query('ALERTS{alertname="CorralDeviceXidCritical", alertstate="firing"}'),
            30,
            0.5,
            what="the XID alert firing",
        )
        assert firing[0]["metric"]["node"] == worker.node_name and firing[0]["metric"]["severity"] == "page"
        # The device's node is now unhealthy in the control plane's state set.
        node_state = f'corral_node_state{{node="{worker.node_name}", state="unhealthy"}} == 1'
        wait_for(lambda: prometheus.query(node_state), 30, 0.5, what="the node unhealthy")
    finally:
        cli(cluster.server.address, "cancel", job_id)
        api.close()


def test_every_dashboard_query_runs_on_prometheus(prometheus: Prometheus) -> None:
    time.sleep(2)  # at least a couple of scrapes in, so rate() windows have points
    for where, expr in dashboard_queries():
        if expr.startswith("label_values("):
            metric = expr.removeprefix("label_values(").split(",")[0]
            assert prometheus.query(metric), f"{where}: {metric} has no series to take values from"
            continue
        prometheus.query(with_variables(expr))  # a parse or evaluation error fails in `api`
