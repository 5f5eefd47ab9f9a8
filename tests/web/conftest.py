"""Fixtures for the dashboard's browser tests: one real control plane with its HTTP side and
an operator token, two simulated agents in two racks, a training job with checkpoints, and
one Debian Chromium driven by Playwright's sync API (skipped, with the reason, when absent).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import CORRAL, REPO, Api, Proc, Server, wait_for, write_spec

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "web-test-operator-token"
NODES = (("web-a", "r1"), ("web-b", "r2"))
FAST = ("--restart-backoff", "0.2", "--stop-grace", "3", "--checkpoint-timeout", "10")
VIEWPORT = {"width": 1440, "height": 900}


@dataclass
class Cluster:
    server: Server
    api: Api
    url: str  # the dashboard, no trailing slash
    job_id: str
    tmp: Path


def _agent(server: str, name: str, rack: str, data_dir: Path) -> Proc:
    return Proc(
        [
            CORRAL,
            "agent",
            "--server",
            server,
            "--simulate",
            "h100-sxm-8",
            "--node-name",
            name,
            "--label",
            f"rack={rack}",
            "--data-dir",
            str(data_dir),
        ],
        data_dir / "agent.log",
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("web")
    token_file = tmp / "operator-token"
    token_file.write_text(TOKEN + "\n")
    server = Server(
        tmp / "server",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--operator-token-file",
        str(token_file),
        "--dashboard-refresh",
        "1",
        *FAST,
    )
    agents = [_agent(server.address, name, rack, tmp / "agents" / name) for name, rack in NODES]
    api = Api(server.address)
    try:
        api.wait_ready(*(name for name, _ in NODES))
        url = wait_for(lambda: (tmp / "server" / "http.addr").read_text().strip(), 10, what="http.addr")
        spec = write_spec(
            tmp / "train.yaml",
            name="train-web",
            command=[
                "python",
                "examples/train.py",
                "--steps",
                "100000",
                "--step-sleep",
                "0.05",
                "--checkpoint-every",
                "20",
            ],
            workers=2,
            devices_per_worker=4,
            checkpoint_dir=str(tmp / "ckpt"),
            working_dir=str(REPO),
            max_restarts=3,
        )
        job_id = _submit(server.address, spec)
        api.wait_state(job_id, "RUNNING", timeout=60)
        yield Cluster(server, api, url, job_id, tmp)
    finally:
        api.close()
        for agent in agents:
            agent.stop()
        server.stop()


def _submit(address: str, spec: Path) -> str:
    from tests.harness import cli

    result = cli(address, "submit", str(spec), "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    return str(json.loads(result.stdout)["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not installed: {exc}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot_dir() -> Path | None:
    """Where to save one screenshot per view: $CORRAL_SCREENSHOTS, else nowhere."""
    target = os.environ.get("CORRAL_SCREENSHOTS")
    if not target:
        return None
    path = Path(target)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def asgi(
    app: Any, method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], str]:
    """One request through the app's whole ASGI stack, no network: (status, headers, body).
    Header names come back lower case; Set-Cookie values are joined with newlines."""
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"dash.test"),
            *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("dash.test", 80),
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    out: dict[str, str] = {}
    for k, v in start.get("headers", []):
        key = k.decode().lower()
        out[key] = f"{out[key]}\n{v.decode()}" if key in out else v.decode()
    text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
    return int(start["status"]), out, text
