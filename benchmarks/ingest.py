#!/usr/bin/env python3
"""Telemetry ingest: how many 8-device nodes can one control plane take at 1 Hz?

What runs: a real control-plane process (`corral server --listen 127.0.0.1:PORT --data-dir
DIR`) and --generators load-generator processes (benchmarks/ingest_generator.py), each
holding many real `AgentService/Connect` streams in one asyncio loop, one TCP connection per
simulated node. Every node registers 8 simulated H100-SXM5-80GB devices and then sends one
Telemetry message (8 device samples) per second, phases spread evenly over the second.

The ramp: node counts step up (--steps). At each step the generators connect the new nodes
and wait for every register_ack, the fleet settles (--settle-s, stretched to cover the
server's lag window), then for --hold-s we measure:
  * telemetry lag p50/p99/max -- receive time minus `sampled_at`, computed by the SERVER over
    its recent window (ClusterService/GetStatus -> IngestStats), polled every 2 s; the step's
    p50 is the median of the polls, p99 and max the largest polled. A client cannot see when
    the server handled a message, so lag is necessarily the server's figure. It includes
    client-side queueing after the stamp, which is why generator health is measured too;
  * messages/s the server actually counted (delta of telemetry_messages_total / wall time);
  * server CPU % (psutil: CPU-time delta of the server process / wall; 100 % = one core),
    load-generator CPU % (summed over generators), and "other": the machine's busy time not
    spent by either (anything else running on the box, which skews the result);
  * generator send lateness (how late after its scheduled second each send went out), whole
    periods missed, and the send rate against the 1 Hz target.
A step PASSES when p99 lag <= --p99-limit-s (1 s), the server counted >= 95 % of the target
rate, and the generators kept their schedule (sent >= 97 % of target, at most 1 % of periods
missed; a late but not missed send still keeps 1 Hz and is flagged, not failed).
The ramp stops at the first step that fails, says why (lag, server throughput, or generators
unable to keep 1 Hz -- on a 2-core machine they compete with the server for CPU), and the
result is the largest node count that passed. The anchor: 5,000 nodes on this machine; the
same path must later carry 10,000+.

Results: a table on stdout, <out>/ingest.json and <out>/ingest.md. Everything listens on
127.0.0.1 only; every process started is stopped on exit, error, Ctrl-C or SIGTERM, and the
run is bounded (--deadline-s).

    .venv/bin/python benchmarks/ingest.py                      # the full ramp, ~5 minutes
    .venv/bin/python benchmarks/ingest.py --quick --out /tmp/x  # 50 and 100 nodes, < 60 s
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import queue
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import psutil
from corral.v1 import cluster_pb2, cluster_pb2_grpc

HERE = Path(__file__).resolve().parent
GOAL_NODES = 5000
DEFAULT_STEPS = "250,500,1000,2000,3000,4000,5000"
POLL_S = 2.0


class BenchError(RuntimeError):
    """The harness could not measure (server did not start, a generator died ...)."""


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when this benchmark dies, even by SIGKILL (Linux)."""
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it after grace_s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class GeneratorProc:
    """One load-generator process and its JSON-lines conversation."""

    def __init__(self, index: int, count: int, target: str, connect_rate: float) -> None:
        self.index = index
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "ingest_generator.py"), "--proc", str(index), "--procs", str(count),
             "--target", target, "--connect-rate", str(connect_rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        self.ps = psutil.Process(self.proc.pid)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def ask(self, cmd: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=timeout)
        except (BrokenPipeError, queue.Empty) as exc:
            raise BenchError(f"generator {self.index} did not answer {cmd!r}: {exc!r}") from None
        if line is None:
            raise BenchError(f"generator {self.index} exited (code {self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        stop_process(self.proc, grace_s=5)


# ----------------------------------------------------------------------------- measurement


@dataclass
class Step:
    nodes: int
    registered: int = 0
    register_s: float = 0.0
    window_s: float = 0.0
    messages_per_s: float = 0.0
    lag_p50_s: float = 0.0
    lag_p99_s: float = 0.0
    lag_max_s: float = 0.0
    server_window_s: float = 0.0
    server_cpu_pct: float = 0.0
    server_cpu_self_pct: float = 0.0  # from IngestStats.process_cpu_s, a cross-check
    generator_cpu_pct: float = 0.0
    machine_busy_pct: float = 0.0
    other_cpu_pct: float = 0.0  # busy minus server minus generators: whatever else ran
    sent_per_s: float = 0.0
    gen_late_p50_s: float = 0.0
    gen_late_p99_s: float = 0.0
    gen_late_max_s: float = 0.0
    gen_missed: int = 0
    stream_errors: dict[str, int] = field(default_factory=dict)
    passed: bool = False
    verdict: str = ""


def get_status(stub: Any) -> Any:
    return stub.GetStatus(cluster_pb2.GetStatusRequest(), timeout=5)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
    }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = time.monotonic() + args.deadline_s
        self.server: subprocess.Popen[bytes] | None = None
        self.generators: list[GeneratorProc] = []
        self.steps: list[Step] = []
        self.stop_reason = ""
        self.server_version = ""
        self.server_log: Path | None = None

    def check_time(self, need_s: float = 0.0) -> None:
        if time.monotonic() + need_s > self.deadline:
            raise BenchError(f"--deadline-s {self.args.deadline_s:.0f} reached")

    def start_server(self, data_dir: Path) -> tuple[str, Any]:
        port = free_port()
        address = f"127.0.0.1:{port}"
        cmd = [*shlex.split(self.args.server_cmd), "--listen", address, "--data-dir", str(data_dir)]
        self.server_log = data_dir.parent / "server.log"
        with open(self.server_log, "wb") as log:
            self.server = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent
            )
        stub = cluster_pb2_grpc.ClusterServiceStub(grpc.insecure_channel(address))
        deadline = time.monotonic() + self.args.startup_timeout_s
        while True:
            if self.server.poll() is not None:
                raise BenchError(f"server exited with code {self.server.returncode}:\n{self.server_tail()}")
            try:
                self.server_version = get_status(stub).version
                return address, stub
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"server not answering GetStatus on {address}: {exc}") from None
                time.sleep(0.2)

    def server_tail(self) -> str:
        if self.server_log is None or not self.server_log.exists():
            return ""
        return "\n".join(self.server_log.read_text(errors="replace").splitlines()[-20:])

    def ask_all(self, cmd: str, **fields: Any) -> list[dict[str, Any]]:
        return [g.ask(cmd, **fields) for g in self.generators]

    def run_step(self, nodes: int, stub: Any, server_ps: psutil.Process) -> Step:
        args, step = self.args, Step(nodes)
        count = len(self.generators)
        shares = [nodes // count + (1 if i < nodes % count else 0) for i in range(count)]
        t0 = time.monotonic()
        for g, share in zip(self.generators, shares, strict=True):
            g.ask("scale", nodes=share)
        register_timeout = args.register_timeout_s + nodes / 100
        while True:
            stats = self.ask_all("stats")
            step.registered = sum(s["acked"] for s in stats)
            failed = sum(s["failed"] + s["ended"] for s in stats)
            if step.registered >= nodes:
                break
            if failed or time.monotonic() - t0 > register_timeout:
                errors = "; ".join(s["last_error"] for s in stats if s["last_error"])
                step.verdict = (
                    f"only {step.registered}/{nodes} registered ({failed} streams failed: {errors})"
                )
                return step
            self.check_time()
            time.sleep(0.25)
        step.register_s = time.monotonic() - t0

        time.sleep(args.settle_s)
        status = get_status(stub)
        step.server_window_s = status.ingest.window_s
        extra = min(status.ingest.window_s, args.max_window_wait_s) - args.settle_s
        if extra > 0:  # let the server's window hold only this step's traffic
            self.check_time(extra + args.hold_s)
            time.sleep(extra)

        def status_at() -> tuple[Any, float]:
            before = time.monotonic()
            ingest = get_status(stub).ingest
            return ingest, (before + time.monotonic()) / 2

        self.ask_all("window")
        w0, cpu0, busy0 = time.monotonic(), server_ps.cpu_times(), psutil.cpu_times()
        gen0 = sum(g.cpu_s() for g in self.generators)
        polls = [status_at()]
        while time.monotonic() - w0 < args.hold_s:
            time.sleep(min(POLL_S, max(0.0, args.hold_s - (time.monotonic() - w0))))
            polls.append(status_at())
        w1, cpu1, busy1 = time.monotonic(), server_ps.cpu_times(), psutil.cpu_times()
        gen1 = sum(g.cpu_s() for g in self.generators)
        stats = self.ask_all("window")
        wall = step.window_s = w1 - w0
        (s0, t0), (s1, t1) = polls[0], polls[-1]
        held = polls[1:]

        step.messages_per_s = (s1.telemetry_messages_total - s0.telemetry_messages_total) / (t1 - t0)
        step.lag_p50_s = statistics.median(p.lag_p50_s for p, _ in held)
        step.lag_p99_s = max(p.lag_p99_s for p, _ in held)
        step.lag_max_s = max(p.lag_max_s for p, _ in held)
        step.server_cpu_self_pct = 100 * (s1.process_cpu_s - s0.process_cpu_s) / (t1 - t0)
        step.server_cpu_pct = 100 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall
        step.generator_cpu_pct = 100 * (gen1 - gen0) / wall
        idle = (busy1.idle - busy0.idle) + (getattr(busy1, "iowait", 0) - getattr(busy0, "iowait", 0))
        total = sum(busy1) - sum(busy0)
        step.machine_busy_pct = 100 * (1 - idle / total) * (psutil.cpu_count() or 1) if total else 0.0
        step.other_cpu_pct = max(0.0, step.machine_busy_pct - step.server_cpu_pct - step.generator_cpu_pct)
        step.sent_per_s = sum(s["late_n"] / s["window_s"] for s in stats)
        step.gen_late_p50_s = max(s["late_p50_s"] for s in stats)
        step.gen_late_p99_s = max(s["late_p99_s"] for s in stats)
        step.gen_late_max_s = max(s["late_max_s"] for s in stats)
        step.gen_missed = sum(s["window_missed"] for s in stats)
        for s in stats:
            for code, n in s["errors"].items():
                step.stream_errors[code] = step.stream_errors.get(code, 0) + n
        self.judge(step)
        return step

    def judge(self, step: Step) -> None:
        limit = self.args.p99_limit_s
        reasons = []
        if step.lag_p99_s > limit:
            reasons.append(f"lag p99 {step.lag_p99_s:.3f} s > {limit:g} s")
        if step.messages_per_s < 0.95 * step.nodes:
            reasons.append(f"server counted {step.messages_per_s:.0f} msg/s of {step.nodes} expected")
        expected = step.nodes * step.window_s
        if step.sent_per_s < 0.97 * step.nodes or step.gen_missed > 0.01 * expected:
            reasons.append(
                f"generators could not keep 1 Hz (sent {step.sent_per_s:.0f}/s of {step.nodes}, "
                f"{step.gen_missed} periods missed, lateness p99 {step.gen_late_p99_s:.3f} s)"
            )
        if step.stream_errors:
            reasons.append(f"streams ended: {step.stream_errors}")
        step.passed = not reasons
        step.verdict = "ok" if step.passed else "; ".join(reasons)
        if step.passed and step.gen_late_p99_s > 0.25:
            step.verdict += f" (generators CPU-starved: sends up to {step.gen_late_p99_s:.2f} s late at p99)"

    def run(self) -> None:
        args = self.args
        with tempfile.TemporaryDirectory(prefix="corral-ingest-") as tmp:
            data_dir = Path(tmp) / "data"
            data_dir.mkdir()
            try:
                address, stub = self.start_server(data_dir)
                assert self.server is not None
                server_ps = psutil.Process(self.server.pid)
                print(f"server {self.server_version or '?'} on {address} (pid {self.server.pid})", flush=True)
                for i in range(args.generators):
                    self.generators.append(GeneratorProc(i, args.generators, address, args.connect_rate))
                print_header()
                for nodes in args.step_list:
                    self.check_time(args.settle_s + args.hold_s)
                    step = self.run_step(nodes, stub, server_ps)
                    self.steps.append(step)
                    print_row(step)
                    if not step.passed:
                        self.stop_reason = f"stopped at {nodes} nodes: {step.verdict}"
                        break
                else:
                    self.stop_reason = "every step passed"
            except (BenchError, grpc.RpcError) as exc:
                self.stop_reason = f"harness stopped: {exc}"
                if self.server is not None and self.server.poll() is not None:
                    self.stop_reason += f"\nserver log tail:\n{self.server_tail()}"
            except KeyboardInterrupt:
                self.stop_reason = "interrupted"
            finally:
                for g in self.generators:
                    g.stop()
                if self.server is not None:
                    stop_process(self.server)
                if args.keep_server_log and self.server_log is not None and self.server_log.exists():
                    shutil.copy(self.server_log, Path(args.out) / "ingest-server.log")


# ----------------------------------------------------------------------------- report

COLUMNS = (
    ("nodes", 6), ("msg/s", 7), ("lag p50", 8), ("lag p99", 8), ("lag max", 8), ("srv CPU", 8),
    ("gen CPU", 8), ("other", 6), ("late p99", 9), ("result", 0),
)  # fmt: skip


def row_cells(step: Step) -> list[str]:
    return [
        str(step.nodes), f"{step.messages_per_s:.0f}", f"{step.lag_p50_s:.3f}", f"{step.lag_p99_s:.3f}",
        f"{step.lag_max_s:.3f}", f"{step.server_cpu_pct:.0f}%", f"{step.generator_cpu_pct:.0f}%",
        f"{step.other_cpu_pct:.0f}%", f"{step.gen_late_p99_s:.3f}", step.verdict,
    ]  # fmt: skip


def print_header() -> None:
    print("  ".join(name.rjust(width) for name, width in COLUMNS), flush=True)


def print_row(step: Step) -> None:
    cells = row_cells(step)
    print("  ".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)), flush=True)


def summary(bench: Bench, command: str) -> dict[str, Any]:
    held = max((s.nodes for s in bench.steps if s.passed), default=0)
    return {
        "benchmark": "ingest",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "machine": machine_info(),
        "server_version": bench.server_version,
        "settings": {k: v for k, v in vars(bench.args).items() if k != "step_list"},
        "steps": [asdict(s) for s in bench.steps],
        "largest_nodes_held": held,
        "p99_limit_s": bench.args.p99_limit_s,
        "stop_reason": bench.stop_reason,
        "goal_nodes": GOAL_NODES,
        "goal_met": held >= GOAL_NODES,
        "lag_source": "server (IngestStats over its recent window); not measurable client-side",
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    held, goal = result["largest_nodes_held"], result["goal_nodes"]
    lines = [
        "# Telemetry ingest benchmark",
        "",
        f"Run {result['finished_at']} with `{result['command']}`.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"grpcio {m['grpcio']}, {m['platform']}. Server version: {result['server_version'] or 'unknown'}.",
        "",
        "Each node is a real `AgentService/Connect` stream (own TCP connection) with 8 simulated "
        "H100-SXM5-80GB devices sending one Telemetry message per second. Lag is receive time minus "
        "`sampled_at` as the server measures it over its recent window (the client cannot see when the "
        "server handled a message); p99/max are the largest values polled during the hold. CPU: 100 % = "
        "one core; the load generators run on the same machine and compete with the server; 'other CPU' "
        "is the rest of the machine's busy time (anything else running skews the result). Send lateness: "
        "how late after its scheduled second a generator actually sent.",
        "",
        "| nodes | msg/s | lag p50 s | lag p99 s | lag max s | server CPU | generator CPU | other CPU "
        "| send lateness p99 s | result |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in result["steps"]:
        lines.append(
            f"| {s['nodes']} | {s['messages_per_s']:.0f} | {s['lag_p50_s']:.3f} | {s['lag_p99_s']:.3f} | "
            f"{s['lag_max_s']:.3f} | {s['server_cpu_pct']:.0f}% | {s['generator_cpu_pct']:.0f}% | "
            f"{s['other_cpu_pct']:.0f}% | {s['gen_late_p99_s']:.3f} | {s['verdict']} |"
        )
    verdict = "met" if result["goal_met"] else "NOT met"
    if result["settings"]["quick"]:
        verdict = "not tried (a --quick smoke run)"
    lines += [
        "",
        f"**Largest node count held with p99 lag ≤ {result['p99_limit_s']:g} s: {held}.** "
        f"Goal: {goal:,} nodes on this {m['nproc']}-CPU machine: {verdict}. The same ingest path must "
        "later carry 10,000+ nodes.",
        "",
        f"Why the ramp ended: {result['stop_reason']}",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    venv_corral = Path(sys.executable).parent / "corral"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--steps", default=DEFAULT_STEPS, help=f"node counts to ramp through (default {DEFAULT_STEPS})"
    )
    p.add_argument("--max-nodes", type=int, default=None, help="drop steps above this")
    p.add_argument("--hold-s", type=float, default=20.0, help="measurement window per step")
    p.add_argument("--settle-s", type=float, default=10.0, help="wait after all nodes registered")
    p.add_argument("--max-window-wait-s", type=float, default=30.0,
                   help="stretch the settle up to the server's lag window, at most this long")  # fmt: skip
    p.add_argument("--generators", type=int, default=2, help="load-generator processes")
    p.add_argument("--connect-rate", type=float, default=500.0, help="new streams per second per generator")
    p.add_argument("--p99-limit-s", type=float, default=1.0)
    p.add_argument("--register-timeout-s", type=float, default=30.0, help="plus 1 s per 100 nodes")
    p.add_argument("--startup-timeout-s", type=float, default=60.0)
    p.add_argument("--deadline-s", type=float, default=1200.0, help="the whole run stops by then")
    p.add_argument("--server-cmd", default=f"{venv_corral} server", help="control plane command")
    p.add_argument("--out", default=str(HERE / "results"), help="directory for ingest.json and ingest.md")
    p.add_argument("--keep-server-log", action="store_true", help="copy the server log next to the results")
    p.add_argument("--quick", action="store_true", help="steps 50,100 with short holds (a smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.hold_s, args.settle_s, args.max_window_wait_s = "50,100", 4.0, 2.0, 0.0
        args.deadline_s = min(args.deadline_s, 90.0)
    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        p.error(f"--steps: expected comma-separated node counts (got {args.steps!r})")
    if args.max_nodes is not None:
        steps = [s for s in steps if s <= args.max_nodes]
    if not steps or any(s < 1 for s in steps) or steps != sorted(set(steps)):
        p.error(f"--steps: need increasing positive node counts (got {args.steps!r}, max {args.max_nodes})")
    if args.generators < 1:
        p.error("--generators: must be ≥ 1")
    args.step_list = steps
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "benchmarks/ingest.py", *(sys.argv[1:] if argv is None else argv)])

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    bench = Bench(args)
    bench.run()
    result = summary(bench, command)
    (out / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ingest.md").write_text(markdown(result))
    print(f"\n{bench.stop_reason}")
    goal = "a --quick smoke run" if args.quick else "met" if result["goal_met"] else "not met"
    print(f"largest node count held with p99 ≤ {args.p99_limit_s:g} s: {result['largest_nodes_held']} "
          f"(goal {GOAL_NODES:,}: {goal})")  # fmt: skip
    print(f"wrote {out / 'ingest.json'} and {out / 'ingest.md'}")
    return 0 if bench.steps and not bench.stop_reason.startswith(("harness", "interrupted")) else 1


if __name__ == "__main__":
    sys.exit(main())
