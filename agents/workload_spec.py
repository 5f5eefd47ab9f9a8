"""What a StartWorkload means on this node: why it may be refused, and the worker's environment.

Pure functions, kept apart from process handling so the rules read (and test) on their own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

from corral.v1 import agent_pb2

_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_.@:+-]+$")
_PER_WORKLOAD = frozenset(
    {"CORRAL_CONTROL_DIR", "CORRAL_RESUME_PATH", "CORRAL_RESUME_STEP", "CORRAL_CHECKPOINT_INTERVAL_S"}
)


def refusal(spec: agent_pb2.StartWorkload, *, draining: str | None, device_count: int | None) -> str | None:
    """Why this workload cannot start here, or None; the text goes to the user as is."""
    if draining is not None:
        return f"node is draining ({draining}); not accepting new workloads"
    if not spec.command:
        return "command is empty"
    # Both end up in file paths under the data dir: no separators, no "..".
    for name, value in (("job_id", spec.job_id), ("workload_id", spec.workload_id)):
        if not _SAFE_COMPONENT.match(value) or value in (".", ".."):
            return f"{name} {value!r} is not usable as a file name"
    if device_count is not None:
        bad = [i for i in spec.device_indices if i >= device_count]
        if bad:
            return f"device(s) {bad} do not exist on this node (devices 0-{device_count - 1})"
    if spec.working_dir and not Path(spec.working_dir).is_dir():
        return f"working_dir {spec.working_dir} does not exist or is not a directory"
    return None


def worker_environment(
    spec: agent_pb2.StartWorkload,
    *,
    base_env: Mapping[str, str],
    visibility_env: str,
    checkpoint_dir: Path,
    control_dir: Path | None = None,
) -> dict[str, str]:
    """The agent's environment, then the job's, then the platform's: the platform wins.

    The checkpoint variables are set only when they apply; an agent that itself runs with
    them set (under another Corral, say) must not hand its own to its workers.
    """
    env = {k: v for k, v in base_env.items() if k not in _PER_WORKLOAD}
    env.update(spec.env)
    env.update(
        {
            visibility_env: ",".join(str(i) for i in spec.device_indices),
            "RANK": str(spec.rank),
            "LOCAL_RANK": str(spec.local_rank),
            "WORLD_SIZE": str(spec.world_size),
            "LOCAL_WORLD_SIZE": str(spec.local_world_size),
            "MASTER_ADDR": spec.master_addr,
            "MASTER_PORT": str(spec.master_port),
            "CORRAL_JOB_ID": spec.job_id,
            "CORRAL_ATTEMPT": str(spec.attempt),
            "CORRAL_WORKLOAD_ID": spec.workload_id,
            "CORRAL_CHECKPOINT_DIR": str(checkpoint_dir),
        }
    )
    if control_dir is not None:
        env["CORRAL_CONTROL_DIR"] = str(control_dir)
    if spec.resume_path:
        env["CORRAL_RESUME_PATH"] = spec.resume_path
        env["CORRAL_RESUME_STEP"] = str(spec.resume_step)
    if spec.checkpoint_interval_s > 0 and math.isfinite(spec.checkpoint_interval_s):
        env["CORRAL_CHECKPOINT_INTERVAL_S"] = repr(spec.checkpoint_interval_s)
    return env
