"""Load generator for benchmarks/ingest.py: many simulated node agents in one process.

Each simulated agent is a real `corral.v1.AgentService/Connect` stream on its own gRPC
channel (its own TCP connection, as real agents have): it sends `register` (node
`bench-<proc>-<i>`, 8 simulated H100-SXM5-80GB devices), waits for `register_ack`, then sends
one `Telemetry` for its 8 devices every second, stamped `sampled_at = now` just before the
write, on a phase of its own so the fleet's sends spread evenly over each second. Whatever the
control plane sends down is read and ignored.

The process is driven by its parent over stdin/stdout, one JSON object per line each way:
  {"cmd": "scale", "nodes": N}   grow to N agents (connecting at --connect-rate per second)
  {"cmd": "stats"}               counters so far
  {"cmd": "window"}              counters, then restart the send-lateness sample
  {"cmd": "stop"}                close every stream and exit (so does EOF on stdin)
"Lateness" is how long after its scheduled second an agent actually sent: the measure of
whether this process keeps its 1 Hz schedule while sharing the CPU with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from typing import Any

import grpc
import grpc.aio
from corral.v1 import agent_pb2, agent_pb2_grpc, common_pb2

GOLDEN = 0.6180339887498949  # low-discrepancy phases: uniform over the second at every count
DEVICES = 8
MODEL = "H100-SXM5-80GB"
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per agent


def register_message(name: str) -> agent_pb2.AgentMessage:
    devices = [
        common_pb2.Device(
            index=i,
            vendor="nvidia",
            model=MODEL,
            uuid=f"SIM-{name}-{i}",
            memory_bytes=80 * 2**30,
            power_limit_min_w=200.0,
            power_limit_max_w=700.0,
            power_limit_default_w=700.0,
            power_limit_settable=True,
            bus_id=f"0000:{0x18 + i:02x}:00.0",
            peer_indices=[j for j in range(DEVICES) if j != i],
            interconnect="nvlink",
            simulated=True,
            visibility_env="CUDA_VISIBLE_DEVICES",
        )
        for i in range(DEVICES)
    ]
    return agent_pb2.AgentMessage(
        register=agent_pb2.Register(
            node_name=name,
            hostname=name,
            address="127.0.0.1",
            agent_version="bench-ingest",
            backend="simulated",
            devices=devices,
            labels={"corral.dev/benchmark": "ingest"},
            cpu_count=224,
            memory_bytes=2 * 2**40,
            instance_id=uuid.uuid4().hex,
        )
    )


def telemetry_template() -> agent_pb2.AgentMessage:
    msg = agent_pb2.AgentMessage()
    for i in range(DEVICES):
        msg.telemetry.devices.add(
            index=i, power_w=650.0, temperature_c=62.0, utilization_pct=97.0,
            memory_used_bytes=71 * 2**30, power_limit_w=700.0, energy_j=1.0e6,
        )  # fmt: skip
    return msg


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Generator:
    def __init__(self, proc: int, procs: int, target: str, connect_rate: float) -> None:
        self.proc, self.procs, self.target, self.connect_rate = proc, procs, target, connect_rate
        self.tasks: list[asyncio.Task[None]] = []
        self.channels: list[grpc.aio.Channel] = []
        self.acked = self.failed = self.ended = self.sent = self.missed = 0
        self.late: list[float] = []
        self.window_start, self.window_missed = time.monotonic(), 0
        self.errors: Counter[str] = Counter()
        self.last_error = ""
        self.scaling: asyncio.Task[None] | None = None

    # -- one simulated agent
    async def agent(self, i: int) -> None:
        name = f"bench-{self.proc}-{i}"
        phase = ((i * self.procs + self.proc) * GOLDEN) % 1.0
        channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self.channels.append(channel)
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        registered = False
        try:
            await call.write(register_message(name))
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF:
                    raise ConnectionError("stream closed before register_ack")
                if reply.HasField("register_ack"):
                    break
            registered = True
            self.acked += 1
            drain = asyncio.create_task(self.drain(call))
            msg = telemetry_template()
            devices = msg.telemetry.devices
            now = time.time()
            due = now - (now % 1.0) + phase
            due += 1.0 if due < now else 0.0
            tick = 0
            while not drain.done():
                now = time.time()
                if due > now:
                    await asyncio.sleep(due - now)
                    now = time.time()
                if now - due >= 1.0:  # a whole period missed: skip it rather than burst
                    skipped = int(now - due)
                    self.missed += skipped
                    due += skipped
                self.late.append(now - due)
                tick += 1
                devices[tick % DEVICES].power_w = 600.0 + tick % 97  # values move a little
                msg.telemetry.sampled_at.FromNanoseconds(time.time_ns())
                await call.write(msg)
                self.sent += 1
                due += 1.0
            raise ConnectionError("control plane closed the stream")
        except asyncio.CancelledError:
            call.cancel()
            raise
        except Exception as exc:  # counted and reported to the parent, never fatal here
            code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
            self.errors[code] += 1
            self.last_error = f"{name}: {exc}"[:300]
            if registered:
                self.ended += 1
            else:
                self.failed += 1

    @staticmethod
    async def drain(call: Any) -> None:
        while await call.read() is not grpc.aio.EOF:
            pass

    # -- control
    async def scale(self, nodes: int) -> None:
        interval = 1.0 / self.connect_rate if self.connect_rate > 0 else 0.0
        start = time.monotonic()
        first = len(self.tasks)
        for n, i in enumerate(range(first, nodes)):
            self.tasks.append(asyncio.create_task(self.agent(i)))
            delay = start + (n + 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def stats(self, reset_window: bool) -> dict[str, Any]:
        now = time.monotonic()
        late, window_s, missed = sorted(self.late), now - self.window_start, self.missed - self.window_missed
        if reset_window:
            self.late, self.window_start, self.window_missed = [], now, self.missed
        return {
            "pid": os.getpid(),
            "nodes": len(self.tasks),
            "acked": self.acked,
            "failed": self.failed,
            "ended": self.ended,
            "sent": self.sent,
            "missed": self.missed,
            "window_s": window_s,  # since the last "window": late_n / window_s is the send rate
            "window_missed": missed,
            "late_n": len(late),
            "late_p50_s": percentile(late, 0.50),
            "late_p99_s": percentile(late, 0.99),
            "late_max_s": late[-1] if late else 0.0,
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "cpu_s": time.process_time(),
        }

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            cmd = command.get("cmd")
            if cmd == "stop":
                return
            if cmd == "scale":
                if self.scaling is not None and not self.scaling.done():
                    await self.scaling
                self.scaling = asyncio.create_task(self.scale(int(command["nodes"])))
                reply: dict[str, Any] = {"ok": True}
            else:
                reply = self.stats(reset_window=cmd == "window")
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.wait_for(
            asyncio.gather(*(c.close() for c in self.channels), return_exceptions=True), timeout=10
        )


async def amain(args: argparse.Namespace) -> None:
    generator = Generator(args.proc, args.procs, args.target, args.connect_rate)
    try:
        await generator.serve()
    finally:
        with contextlib.suppress(TimeoutError):
            await generator.close()


def main() -> None:
    p = argparse.ArgumentParser(description="ingest benchmark load generator (driven by ingest.py)")
    p.add_argument("--proc", type=int, required=True, help="this generator's index")
    p.add_argument("--procs", type=int, required=True, help="how many generators there are")
    p.add_argument("--target", required=True, help="control plane address, host:port")
    p.add_argument("--connect-rate", type=float, default=500.0, help="new streams per second")
    asyncio.run(amain(p.parse_args()))


if __name__ == "__main__":
    main()
