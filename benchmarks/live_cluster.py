"""A live Corral cluster of real processes on loopback, for the benchmarks that need one.

`LiveCluster` starts `corral server` (own data directory, any free port) and any number of
`corral agent --simulate PROFILE` processes, each in its own process group; every process it
started is stopped on exit, error or Ctrl-C. `EventLog` follows the control plane's event
log the way an operator's tools do: JobService.Watch for job events (state, worker,
failure ...) and ClusterService.ListEvents for node, health and failure events with their
structured data. Where a control plane does not implement ListEvents yet, it reads the same
event rows from the server's store (SQLite, read-only): the figures are the same either way,
stamped by the server's clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil
from corral.v1 import cluster_pb2, cluster_pb2_grpc, job_pb2, job_pb2_grpc, node_pb2, node_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

T = TypeVar("T")
BIN = Path(sys.executable).parent
CORRAL = str(BIN / "corral")


class ClusterError(RuntimeError):
    """The harness could not run the cluster (a process did not start, a wait timed out)."""


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (grpc.RpcError, OSError, ClusterError) as exc:  # not up yet, or restarting
            last = exc
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:g} s waiting for {what} (last error: {last!r})")
        time.sleep(interval)


def die_with_parent(args: list[str]) -> list[str]:
    """`args` under `setpriv --pdeathsig TERM` where there is one: SIGTERMed when the benchmark
    dies, even by SIGKILL. Not a preexec_fn: Python code between fork and exec in a process
    whose gRPC threads are busy can leave the child broken (seen: an agent dying at start)."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", "--", *args] if setpriv else args


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # workers' `python` is this one
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("CORRAL_SERVER", None)
    return env


class Proc:
    """One process in its own group, output to a log file."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                die_with_parent(args),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process (it stops its own workers), then SIGKILL its group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)  # a hung (stopped) agent must hear the TERM
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class AgentProc(Proc):
    def __init__(self, server: str, node: str, profile: str, data_dir: Path) -> None:
        self.node = node
        self.data_dir = data_dir
        super().__init__(
            [
                CORRAL,
                "agent",
                "--server",
                server,
                "--simulate",
                profile,
                "--node-name",
                node,
                "--data-dir",
                str(data_dir),
            ],
            data_dir / "agent.log",
        )

    def workers(self) -> list[psutil.Process]:
        """The agent's worker processes (each the leader of its own group)."""
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.pid).children()
        return []


def worker_of(agent: AgentProc, workload_id: str) -> psutil.Process | None:
    """The worker process running `workload_id` under this agent (by CORRAL_WORKLOAD_ID)."""
    for child in agent.workers():
        with contextlib.suppress(psutil.Error):
            if child.environ().get("CORRAL_WORKLOAD_ID") == workload_id:
                return child
    return None


def kill_groups(processes: Iterable[psutil.Process]) -> int:
    """SIGKILL each process's group (a worker and whatever it started); how many were killed."""
    killed = 0
    for proc in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
    return killed


def ts_seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos * 1e-9


@dataclass
class Event:
    id: int
    at: float
    kind: str
    job_id: str = ""
    node_name: str = ""
    state: str = ""  # job state name without the JOB_STATE_ prefix, for "state" events
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class Api:
    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(address)
        self.jobs = job_pb2_grpc.JobServiceStub(self.channel)
        self.nodes = node_pb2_grpc.NodeServiceStub(self.channel)
        self.cluster = cluster_pb2_grpc.ClusterServiceStub(self.channel)

    def job(self, job_id: str) -> job_pb2.Job:
        job: job_pb2.Job = self.jobs.Get(job_pb2.GetJobRequest(id=job_id), timeout=5)
        return job

    def ready_nodes(self) -> set[str]:
        resp = self.nodes.List(node_pb2.ListNodesRequest(), timeout=5)
        return {n.name for n in resp.nodes if n.state == node_pb2.NODE_STATE_READY}

    def close(self) -> None:
        self.channel.close()


def state_name(state: int) -> str:
    return str(job_pb2.JobState.Name(state)).removeprefix("JOB_STATE_")  # type: ignore[arg-type]


class EventLog:
    """The control plane's events as they happen: Watch for jobs, ListEvents (or the store) for
    the rest. All timestamps are the server's (the same host clock as the benchmark's)."""

    CLUSTER_KINDS = ("failure", "recovery", "health", "checkpoint", "node", "worker")

    def __init__(self, api: Api, data_dir: Path) -> None:
        self.api = api
        self.db = data_dir / "corral.db"
        self.source = "ListEvents"
        self._lock = threading.Lock()
        self._job_events: dict[int, Event] = {}
        self._last_id = 0
        self._stop = threading.Event()
        self._call: Any = None
        self._thread = threading.Thread(target=self._follow, name="watch", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            req = job_pb2.WatchJobsRequest(history=True, after_event_id=self._last_id)
            try:
                self._call = self.api.jobs.Watch(req)
                for ev in self._call:
                    event = Event(
                        id=ev.event_id,
                        at=ts_seconds(ev.at),
                        kind=ev.kind,
                        job_id=ev.job_id,
                        state=state_name(ev.state) if ev.kind == "state" else "",
                        message=ev.message,
                    )
                    with self._lock:
                        self._job_events[event.id] = event
                        self._last_id = max(self._last_id, event.id)
            except grpc.RpcError:
                if not self._stop.is_set():
                    time.sleep(0.2)  # reconnect and replay what was missed

    def job_events(self, job_id: str, since: float) -> list[Event]:
        with self._lock:
            events = [e for e in self._job_events.values() if e.job_id == job_id and e.at >= since]
        return sorted(events, key=lambda e: e.id)

    def cluster_events(self, since: float) -> list[Event]:
        """Node, health, failure, recovery and worker events stamped at or after `since`."""
        if self.source == "ListEvents":
            stamp = Timestamp()
            stamp.FromNanoseconds(int(since * 1e9))
            req = cluster_pb2.ListEventsRequest(since=stamp, kinds=list(self.CLUSTER_KINDS), limit=1000)
            try:
                resp = self.api.cluster.ListEvents(req, timeout=10)
            except grpc.RpcError as exc:
                if exc.code() not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN):
                    raise
                self.source = "store (ListEvents unavailable)"
            else:
                return sorted(
                    (
                        Event(
                            id=e.id,
                            at=ts_seconds(e.at),
                            kind=e.kind,
                            job_id=e.job_id,
                            node_name=e.node_name,
                            message=e.message,
                            data=_json_dict(e.data_json),
                        )
                        for e in resp.events
                        if ts_seconds(e.at) >= since
                    ),
                    key=lambda e: e.id,
                )
        return self._from_store(since)

    def _from_store(self, since: float) -> list[Event]:
        marks = ",".join("?" for _ in self.CLUSTER_KINDS)
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)) as conn:
            rows = conn.execute(
                f"SELECT id, at, kind, job_id, node_name, state, message, data FROM events "
                f"WHERE at >= ? AND kind IN ({marks}) ORDER BY id",
                (since, *self.CLUSTER_KINDS),
            ).fetchall()
        return [
            Event(
                id=r[0],
                at=r[1],
                kind=r[2],
                job_id=r[3] or "",
                node_name=r[4] or "",
                state=r[5] or "",
                message=r[6] or "",
                data=_json_dict(r[7]),
            )
            for r in rows
        ]

    def close(self) -> None:
        self._stop.set()
        if self._call is not None:
            with contextlib.suppress(Exception):
                self._call.cancel()
        self._thread.join(5)


def _json_dict(text: str | bytes | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class LiveCluster:
    """`corral server` and simulated agents under one directory; a context manager."""

    def __init__(self, root: Path, server_flags: list[str], profile: str = "h100-sxm-8") -> None:
        self.root = root
        self.server_flags = server_flags
        self.profile = profile
        self.server: Proc | None = None
        self.address = ""
        self.agents: dict[str, AgentProc] = {}
        self._incarnation: dict[str, int] = {}
        self.api: Api | None = None

    def __enter__(self) -> LiveCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def data_dir(self) -> Path:
        return self.root / "server"

    def start_server(self, timeout: float = 60.0) -> Api:
        addr_file = self.data_dir / "server.addr"
        addr_file.unlink(missing_ok=True)
        self.server = server = Proc(
            [
                CORRAL,
                "server",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data_dir),
                *self.server_flags,
            ],
            self.root / "server.log",
        )

        def address() -> str:
            if not server.alive():
                raise ClusterError(f"corral server exited:\n{server.tail()}")
            return addr_file.read_text().strip() if addr_file.exists() else ""

        try:
            self.address = wait_for(address, timeout, "server.addr")
        except ClusterError as exc:
            raise ClusterError(f"{exc}\n{server.tail()}") from None
        self.api = Api(self.address)
        return self.api

    def start_agent(self, node: str) -> AgentProc:
        """A fresh agent process for `node` (a new data directory each time: a replaced machine)."""
        n = self._incarnation[node] = self._incarnation.get(node, 0) + 1
        agent = AgentProc(self.address, node, self.profile, self.root / "agents" / node / str(n))
        self.agents[node] = agent
        return agent

    def wait_ready(self, nodes: Iterable[str], timeout: float = 60.0) -> None:
        assert self.api is not None
        api, want = self.api, set(nodes)

        def ready() -> bool:
            for name in want:
                agent = self.agents.get(name)
                if agent is not None and not agent.alive():
                    raise ClusterError(f"agent {name} exited:\n{agent.tail()}")
            return want <= api.ready_nodes()

        wait_for(ready, timeout, f"nodes {sorted(want)} READY", interval=0.2)

    def close(self) -> None:
        if self.api is not None:
            self.api.close()
        for agent in self.agents.values():
            kill_groups(agent.workers())  # a killed or hung agent's orphans too
            agent.stop(grace_s=5)
        if self.server is not None:
            self.server.stop(grace_s=10)
