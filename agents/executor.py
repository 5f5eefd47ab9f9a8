"""Runs workers: one process group per workload, one log file per workload.

Every change of a workload's phase is put on `updates` for the stream client to send as a
reliable message. Finished workloads are kept until the control plane acknowledges their
exit, so a re-register after a lost stream still reports them.

Each worker also gets a local channel (agents/channel.py): its progress lines update
`progress_step` (pushed on `updates` at most once a second), its checkpoint reports go on
`checkpoints`. The channel is drained one last time before the exit is queued, so a final
checkpoint reaches the control plane before the exit it precedes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral.v1 import agent_pb2, common_pb2

from agents import procgroup
from agents.channel import Progress, WorkerChannel
from agents.timeutil import timestamp
from agents.workload_spec import refusal, worker_environment

log = logging.getLogger("corral.agent.executor")

DEFAULT_GRACE_S = 10.0
CHANNEL_POLL_S = 0.25
PROGRESS_PUSH_S = 1.0

Phase = common_pb2.WorkloadPhase


@dataclass
class _Workload:
    spec: agent_pb2.StartWorkload
    status: common_pb2.WorkloadStatus
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str | None = None
    grace_s: float = 0.0
    escalated: bool = False
    killer: asyncio.Task[None] | None = None
    waiter: asyncio.Task[None] | None = None
    channel: WorkerChannel | None = None
    watcher: asyncio.Task[None] | None = None
    progress_pushed_at: float = -math.inf
    progress_dirty: bool = False

    @property
    def running(self) -> bool:
        return self.status.phase in (common_pb2.WORKLOAD_PHASE_STARTING, common_pb2.WORKLOAD_PHASE_RUNNING)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _exit_message(returncode: int, w: _Workload) -> str:
    text = f"killed by {signal_name(-returncode)}" if returncode < 0 else f"exited with code {returncode}"
    if w.stop_reason is not None:
        text += f" after stop ({w.stop_reason})"
        if w.escalated:
            text += f"; SIGKILL after {w.grace_s:g} s grace"
    return text


class Executor:
    def __init__(
        self,
        data_dir: Path,
        visibility_env: str,
        *,
        device_count: int | None = None,
        on_busy: Callable[[frozenset[int]], None] | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.visibility_env = visibility_env
        self.device_count = device_count
        self.updates: asyncio.Queue[common_pb2.WorkloadStatus] = asyncio.Queue()
        self.checkpoints: asyncio.Queue[agent_pb2.CheckpointReport] = asyncio.Queue()
        self.draining: str | None = None
        self._on_busy = on_busy
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._workloads: dict[str, _Workload] = {}
        self._retired: set[str] = set()
        self._busy: frozenset[int] = frozenset()

    # -- queries -------------------------------------------------------------------------

    def log_path(self, spec: agent_pb2.StartWorkload) -> Path:
        return self.data_dir / "logs" / spec.job_id / str(spec.attempt) / f"rank-{spec.rank}.log"

    def control_dir(self, workload_id: str) -> Path:
        return self.data_dir / "control" / workload_id

    def log_paths(self) -> dict[str, Path]:
        return {wid: w.log_path for wid, w in self._workloads.items()}

    def statuses(self) -> list[common_pb2.WorkloadStatus]:
        """What a register reports: running workloads and finished ones not yet acknowledged."""
        return [_copy(w.status) for w in self._workloads.values()]

    def status(self, workload_id: str) -> common_pb2.WorkloadStatus | None:
        w = self._workloads.get(workload_id)
        return _copy(w.status) if w else None

    def running_ids(self) -> list[str]:
        return [wid for wid, w in self._workloads.items() if w.running]

    def acknowledge_exit(self, workload_id: str) -> None:
        w = self._workloads.get(workload_id)
        if w is not None and not w.running:
            del self._workloads[workload_id]
            self._retired.add(workload_id)
            if w.channel is not None:
                w.channel.remove()

    async def wait(self, workload_id: str) -> common_pb2.WorkloadStatus:
        w = self._workloads[workload_id]
        await w.done.wait()
        return _copy(w.status)

    # -- start ---------------------------------------------------------------------------

    async def start(self, spec: agent_pb2.StartWorkload) -> common_pb2.WorkloadStatus:
        """Start a worker, or change nothing when its id was seen before (idempotent)."""
        wid = spec.workload_id
        if wid in self._workloads:
            return _copy(self._workloads[wid].status)
        if wid in self._retired:
            return common_pb2.WorkloadStatus(
                workload_id=wid,
                job_id=spec.job_id,
                attempt=spec.attempt,
                rank=spec.rank,
                phase=common_pb2.WORKLOAD_PHASE_EXITED,
                message="already finished and acknowledged",
            )
        status = common_pb2.WorkloadStatus(
            workload_id=wid,
            job_id=spec.job_id,
            attempt=spec.attempt,
            rank=spec.rank,
            phase=common_pb2.WORKLOAD_PHASE_STARTING,
        )
        problem = refusal(spec, draining=self.draining, device_count=self.device_count)
        log_path = self.log_path(spec) if problem is None else self.data_dir / "logs" / "_invalid.log"
        w = _Workload(spec=spec, status=status, log_path=log_path)
        self._workloads[wid] = w
        if problem is None:
            problem = await self._spawn(w)
        if problem is not None:
            self._finish(w, common_pb2.WORKLOAD_PHASE_FAILED_TO_START, message=problem)
            log.warning("workload %s failed to start: %s", wid, problem)
        else:
            assert w.process is not None
            log.info(
                "started workload %s (pid %d, devices %s)",
                wid,
                w.process.pid,
                ",".join(map(str, spec.device_indices)) or "none",
            )
        return _copy(w.status)

    async def _spawn(self, w: _Workload) -> str | None:
        """Start the process; returns why it could not start, or None."""
        spec = w.spec
        checkpoint_dir = (
            Path(spec.checkpoint_dir)
            if spec.checkpoint_dir
            else (self.data_dir / "checkpoints" / spec.job_id)
        )
        channel = WorkerChannel(
            spec.workload_id,
            self.control_dir(spec.workload_id),
            Path(spec.working_dir) if spec.working_dir else None,
        )
        w.channel = channel
        try:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            channel.prepare()
            w.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(w.log_path, "ab")  # noqa: SIM115 - the child owns it once spawned
        except OSError as e:
            return f"cannot prepare {e.filename}: {e.strerror}"
        try:
            w.process = await asyncio.create_subprocess_exec(
                *spec.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                cwd=spec.working_dir or None,
                env=worker_environment(
                    spec,
                    base_env=self._base_env,
                    visibility_env=self.visibility_env,
                    checkpoint_dir=checkpoint_dir,
                    control_dir=channel.directory,
                ),
                start_new_session=True,
            )
        except OSError as e:
            message = f"cannot start {spec.command[0]!r}: {e.strerror or e}"
            log_file.write(f"corral: {message}\n".encode())
            return message
        finally:
            log_file.close()
        w.status.phase = common_pb2.WORKLOAD_PHASE_RUNNING
        w.status.pid = w.process.pid
        w.status.at.CopyFrom(timestamp())
        self.updates.put_nowait(_copy(w.status))
        self._update_busy()
        w.watcher = asyncio.create_task(self._watch(w), name=f"channel {spec.workload_id}")
        w.waiter = asyncio.create_task(self._reap(w), name=f"reap {spec.workload_id}")
        return None

    # -- the local channel ---------------------------------------------------------------

    async def _watch(self, w: _Workload) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHANNEL_POLL_S)
            self._drain_channel(w)
            # Reliable messages cost the control plane a store write each: progress is
            # coalesced to one status a second, the latest step winning.
            now = loop.time()
            if w.progress_dirty and w.running and now - w.progress_pushed_at >= PROGRESS_PUSH_S:
                w.progress_pushed_at = now
                w.progress_dirty = False
                self.updates.put_nowait(_copy(w.status))

    def _drain_channel(self, w: _Workload, *, final: bool = False) -> None:
        # A bug here must neither stop the polling for good nor keep an exit from being reported.
        try:
            self._relay(w, final=final)
        except Exception:
            log.exception("workload %s: relaying its channel failed", w.spec.workload_id)

    def _relay(self, w: _Workload, *, final: bool) -> None:
        if w.channel is None:
            return
        for event in w.channel.read(final=final):
            if isinstance(event, Progress):
                if event.step != w.status.progress_step:
                    w.status.progress_step = event.step
                    w.progress_dirty = True
                continue
            self.checkpoints.put_nowait(event)
            if event.complete:
                w.status.checkpoint_step = event.step
                w.status.checkpoint_path = event.path
                w.progress_dirty = True
            log.info(
                "workload %s: %s checkpoint of step %d at %s (%d bytes, %.3g s%s)",
                w.spec.workload_id,
                event.trigger or "unlabelled",
                event.step,
                event.path,
                event.size_bytes,
                event.duration_s,
                "" if event.complete else ", INCOMPLETE",
            )

    # -- exit ----------------------------------------------------------------------------

    async def _reap(self, w: _Workload) -> None:
        assert w.process is not None
        returncode = await w.process.wait()
        if w.watcher is not None:
            w.watcher.cancel()
        # The worker wrote its last lines before exiting: relay them ahead of the exit, and
        # let the exit status carry the final progress_step instead of a separate push.
        self._drain_channel(w, final=True)
        # The group ends with its leader: leftovers would hold the devices of the next job.
        if procgroup.signal_group(w.process.pid, signal.SIGKILL):
            log.info("workload %s: killed processes left in its group", w.spec.workload_id)
        if w.killer is not None:
            w.killer.cancel()
        message = _exit_message(returncode, w)
        self._finish(
            w,
            common_pb2.WORKLOAD_PHASE_EXITED,
            message=message,
            exit_code=max(returncode, 0),
            signum=max(-returncode, 0),
        )
        log.info("workload %s %s", w.spec.workload_id, message)

    def _finish(
        self,
        w: _Workload,
        phase: common_pb2.WorkloadPhase.ValueType,
        *,
        message: str,
        exit_code: int = 0,
        signum: int = 0,
    ) -> None:
        w.status.phase = phase
        w.status.exit_code = exit_code
        w.status.signal = signum
        w.status.message = message
        w.status.at.CopyFrom(timestamp())
        self.updates.put_nowait(_copy(w.status))
        self._update_busy()
        w.done.set()

    def _update_busy(self) -> None:
        busy = frozenset(i for w in self._workloads.values() if w.running for i in w.spec.device_indices)
        if busy != self._busy:
            self._busy = busy
            if self._on_busy is not None:
                self._on_busy(busy)

    # -- stop, signal --------------------------------------------------------------------

    def stop(self, workload_id: str, grace_s: float = DEFAULT_GRACE_S, reason: str = "") -> bool:
        """SIGTERM the group now, SIGKILL it after the grace period; False if not running.

        Returns at once: the exit arrives on `updates` like any other.
        """
        w = self._workloads.get(workload_id)
        if w is None or not w.running or w.process is None:
            return False
        if w.stop_reason is not None:
            return True
        w.stop_reason = reason or "stop requested"
        w.grace_s = grace_s if math.isfinite(grace_s) and grace_s > 0 else DEFAULT_GRACE_S
        procgroup.signal_group(w.process.pid, signal.SIGTERM)
        w.killer = asyncio.create_task(self._escalate(w), name=f"escalate {workload_id}")
        log.info("stopping workload %s (%s; grace %g s)", workload_id, w.stop_reason, w.grace_s)
        return True

    async def _escalate(self, w: _Workload) -> None:
        assert w.process is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(w.process.wait()), timeout=w.grace_s)
            return
        w.escalated = True
        log.warning("workload %s ignored SIGTERM for %g s: SIGKILL", w.spec.workload_id, w.grace_s)
        procgroup.signal_group(w.process.pid, signal.SIGKILL)

    def request_checkpoint(self, workload_id: str, reason: str = "", request_id: int = 0) -> tuple[bool, str]:
        """Write the request to the worker's channel, then SIGUSR1 the group members that handle it.

        ok means the request is in the channel: the SDK reads it at its next poll even with
        no signal. Processes without a SIGUSR1 handler are never signalled (it would kill them).
        """
        w = self._workloads.get(workload_id)
        if w is None or not w.running or w.process is None or w.channel is None:
            return False, f"workload {workload_id} is not running here"
        try:
            w.channel.write_request(request_id, reason)
        except OSError as e:
            return False, f"cannot write the checkpoint request for {workload_id}: {e}"
        sent, members = procgroup.signal_handlers_in_group(w.process.pid, signal.SIGUSR1)
        text = f"checkpoint request {request_id} written for {workload_id}; "
        if not sent:
            return True, text + (
                f"no process handles SIGUSR1 (of {members}), none signalled as it would kill them;"
                " the SDK sees the request when it next polls"
            )
        return True, text + f"SIGUSR1 sent to {sent} of {members} process(es)"

    def kill_all(self) -> None:
        """SIGKILL every running group now: for an operator who will not wait for the grace."""
        for wid in self.running_ids():
            w = self._workloads[wid]
            if w.process is not None:
                w.stop_reason = w.stop_reason or "killed"
                w.escalated = True
                procgroup.signal_group(w.process.pid, signal.SIGKILL)

    async def stop_all(self, grace_s: float = DEFAULT_GRACE_S, reason: str = "agent stopping") -> None:
        """Stop everything because the agent itself is going away; refuses new starts."""
        self.draining = reason
        running = [self._workloads[wid] for wid in self.running_ids()]
        for w in running:
            w.status.agent_shutdown = True
            self.stop(w.spec.workload_id, grace_s, reason)
        await asyncio.gather(*(w.done.wait() for w in running))


def _copy(status: common_pb2.WorkloadStatus) -> common_pb2.WorkloadStatus:
    out = common_pb2.WorkloadStatus()
    out.CopyFrom(status)
    return out
