"""benchmarks/ingest.py --quick against a real `corral server`: 50 then 100 simulated nodes.

Skipped until `corral server` exists. CORRAL_INGEST_SERVER_CMD overrides the server command
(the benchmark appends `--listen 127.0.0.1:PORT --data-dir DIR`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_CMD = os.environ.get("CORRAL_INGEST_SERVER_CMD") or f"{Path(sys.executable).parent / 'corral'} server"


def server_available() -> str:
    """Why `corral server` cannot run here, or "" when it can."""
    argv = shlex.split(SERVER_CMD)
    if not Path(argv[0]).exists():
        return f"{argv[0]} does not exist"
    try:
        done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{SERVER_CMD} --help` failed: {exc}"
    if done.returncode != 0:
        return (
            f"`{SERVER_CMD} --help` exited {done.returncode}: {(done.stderr or done.stdout).strip()[-200:]}"
        )
    return ""


def test_ingest_quick(tmp_path: Path) -> None:
    why = server_available()
    if why:
        pytest.skip(f"the control plane is not available yet ({why})")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "ingest.py"), "--quick", "--out", str(tmp_path),
         "--server-cmd", SERVER_CMD],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "ingest.json").read_text())
    report = (tmp_path / "ingest.md").read_text()
    assert [s["nodes"] for s in result["steps"]] == [50, 100], report
    for step in result["steps"]:
        assert step["registered"] == step["nodes"]
        assert step["messages_per_s"] > 0.9 * step["nodes"], report
        assert 0 < step["lag_p99_s"] <= 1.0, report
        assert step["server_cpu_pct"] > 0
    assert result["largest_nodes_held"] == 100, report
    assert result["machine"]["nproc"] >= 1 and result["machine"]["cpu_model"]
    assert "| 100 |" in report and "10,000+" in report
