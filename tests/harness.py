"""Real processes on loopback for integration and end-to-end tests.

Each helper starts the actual `corral` console script as a subprocess in its own process
group, so a test can kill a control plane hard (SIGKILL) and start it again on the same
port and data directory, exactly as an operator's crash would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
BIN = Path(sys.executable).parent
CORRAL = str(BIN / "corral")
REPO = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Workers started by agents run `python ...`: make that this environment's interpreter.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("CORRAL_SERVER", None)
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}: {last_exc!r}")


class Proc:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=env or child_env(), start_new_session=True
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.alive():
            try:
                os.kill(self.popen.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.popen.returncode

    def kill_hard(self) -> None:
        """SIGKILL to the process only (not its group): a crash, nothing cleaned up."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class Server(Proc):
    def __init__(self, data_dir: Path, listen: str = "127.0.0.1:0", *extra: str) -> None:
        self.data_dir = data_dir
        (data_dir / "server.addr").unlink(missing_ok=True)
        super().__init__(
            [CORRAL, "server", "--listen", listen, "--data-dir", str(data_dir), *extra],
            data_dir / "server.log",
        )
        self.address = wait_for(self._read_addr, 30, what="server.addr")

    def _read_addr(self) -> str:
        if not self.alive():
            raise RuntimeError(f"server exited:\n{self.output()}")
        path = self.data_dir / "server.addr"
        return path.read_text().strip() if path.exists() else ""


class Agent(Proc):
    def __init__(self, server: str, node_name: str, profile: str, data_dir: Path) -> None:
        self.node_name = node_name
        super().__init__(
            [
                CORRAL,
                "agent",
                "--server",
                server,
                "--simulate",
                profile,
                "--node-name",
                node_name,
                "--data-dir",
                str(data_dir),
            ],
            data_dir / "agent.log",
        )


def cli(
    server: str, *args: str, timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORRAL, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(CORRAL_SERVER=server),
        cwd=cwd or REPO,
    )


def cli_json(server: str, *args: str) -> Any:
    result = cli(server, *args, "--output", "json")
    assert result.returncode == 0, f"corral {' '.join(args)} failed ({result.returncode}): {result.stderr}"
    return json.loads(result.stdout)


class Api:
    """Direct gRPC stubs, for asserting on state without parsing CLI output."""

    def __init__(self, address: str) -> None:
        import grpc
        from corral.v1 import cluster_pb2_grpc, job_pb2_grpc, node_pb2_grpc

        self.channel = grpc.insecure_channel(address)
        self.jobs = job_pb2_grpc.JobServiceStub(self.channel)
        self.nodes = node_pb2_grpc.NodeServiceStub(self.channel)
        self.cluster = cluster_pb2_grpc.ClusterServiceStub(self.channel)

    def job(self, job_id: str) -> Any:
        from corral.v1 import job_pb2

        return self.jobs.Get(job_pb2.GetJobRequest(id=job_id), timeout=5)

    def state(self, job_id: str) -> str:
        from corral.v1 import job_pb2

        return str(job_pb2.JobState.Name(self.job(job_id).state).removeprefix("JOB_STATE_"))

    def wait_state(self, job_id: str, *states: str, timeout: float = 60.0) -> Any:
        wait_for(lambda: self.state(job_id) in states, timeout, 0.2, what=f"job {job_id} in {states}")
        return self.job(job_id)

    def node(self, name: str) -> Any:
        from corral.v1 import node_pb2

        return self.nodes.Get(node_pb2.GetNodeRequest(name=name), timeout=5)

    def ready_nodes(self) -> set[str]:
        from corral.v1 import node_pb2

        resp = self.nodes.List(node_pb2.ListNodesRequest(), timeout=5)
        return {n.name for n in resp.nodes if n.state == node_pb2.NODE_STATE_READY}

    def wait_ready(self, *names: str, timeout: float = 30.0) -> None:
        wait_for(lambda: set(names) <= self.ready_nodes(), timeout, 0.2, what=f"nodes {names} READY")

    def close(self) -> None:
        self.channel.close()


def submit(server: Server, spec: Path) -> str:
    """`corral submit` through the real CLI; the new job's id."""
    result = cli(server.address, "submit", str(spec), "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    return str(json.loads(result.stdout)["id"])


def write_spec(path: Path, **fields: Any) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path
