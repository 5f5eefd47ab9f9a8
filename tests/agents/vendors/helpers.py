"""Fake vendor tools on PATH and stub vendor libraries, shared by the vendor backend tests.

A fake tool is a small Python script named like the vendor tool (npu-smi, cnmon, ...) that
answers each command line with a recorded output; the reader under test runs it through the
real subprocess path. A stub library is C source compiled with the machine's cc into a shared
object the library reader loads through ctypes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "vendors"

_SCRIPT = """#!{python}
import json, sys, time
answers = json.loads({answers!r})
key = " ".join(sys.argv[1:])
if {hang!r}:
    time.sleep(3600)
if key in answers:
    sys.stdout.buffer.write(answers[key].encode("utf-8"))
    sys.exit(0)
if "*" in answers:
    sys.stdout.buffer.write(answers["*"].encode("utf-8"))
    sys.exit(0)
sys.stderr.write("fake tool: no recorded answer for: " + key + "\\n")
sys.exit(3)
"""


def fixture(vendor: str, name: str) -> str:
    return (FIXTURES / vendor / name).read_text(encoding="utf-8")


def install_fake_tool(
    bin_dir: Path,
    name: str,
    answers: Mapping[str, str],
    *,
    hang: bool = False,
) -> Path:
    """Write `bin_dir/name`: it prints answers[" ".join(args)] ("*" answers any command line),
    exits 3 for a command it has no answer for, or sleeps for an hour when `hang`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(_SCRIPT.format(python=sys.executable, answers=json.dumps(dict(answers)), hang=hang))
    path.chmod(0o755)
    return path


@pytest.fixture
def tool_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bin directory put first on PATH for this test; install fake tools into it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return bin_dir


def build_stub_library(tmp_path: Path, name: str, c_source: str) -> Path:
    """Compile `c_source` into tmp_path/name (e.g. libdcmi.so); skips when no C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stub vendor library")
    src = tmp_path / f"{name}.c"
    src.write_text(c_source)
    out = tmp_path / name
    subprocess.run([cc, "-shared", "-fPIC", "-O0", "-o", str(out), str(src)], check=True, capture_output=True)
    return out
