"""The control plane's HTTP side as a server: started on the running asyncio loop beside
everything else, answering over real TCP, stopping cleanly; its flags on `corral server` and
`corral up`; and `corral status` showing where it is."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.cli import daemons, up
from scheduler.cli.errors import CliError
from scheduler.server.controlplane import ControlPlane
from scheduler.store import Store
from scheduler.web.serve import HttpListenError, parse_listen, start_http, url_for
from tests.harness import CORRAL, Server, cli_json, wait_for


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(Store.open(tmp_path / "db"), tmp_path)
    yield plane
    plane.store.close()


async def http_get(url: str, path: str) -> tuple[int, str]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_listen_addresses() -> None:
    assert parse_listen("off") is None and parse_listen("") is None
    assert parse_listen("0.0.0.0:7080") == ("0.0.0.0", 7080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("7080", "host:port", "127.0.0.1:70800"):
        with pytest.raises(HttpListenError, match="--http-listen"):
            parse_listen(bad)
    assert url_for("0.0.0.0", 7080) == "http://127.0.0.1:7080"


async def test_serves_on_the_running_loop_and_stops(cp: ControlPlane) -> None:
    http = await start_http(cp, "127.0.0.1:0", operator_token=None, refresh_s=1)
    assert http is not None and http.metrics_url == f"{http.url}/metrics"
    try:
        assert await http_get(http.url, "/healthz") == (200, "ok\n")
        status, body = await http_get(http.url, "/")
        assert status == 200 and "Fleet health" in body and 'hx-trigger="every 1.0s"' in body
        status, body = await http_get(http.url, "/static/htmx-2.0.11.min.js")
        assert status == 200 and "htmx" in body
        assert (await http_get(http.url, "/metrics"))[0] == 200
        assert (await http_get(http.url, "/prometheus/targets"))[0] == 200
    finally:
        await http.stop()
    with pytest.raises(OSError):
        await http_get(http.url, "/healthz")
    assert await start_http(cp, "off", operator_token=None) is None


async def test_accepted_connections_send_without_delay(cp: ControlPlane) -> None:
    """Responses go out at once (TCP_NODELAY on the server's side of each connection): with
    Nagle's algorithm on, a response after the first on a keep-alive connection waited for
    the client's delayed ACK, about 40 ms."""
    http = await start_http(cp, "127.0.0.1:0", operator_token=None)
    assert http is not None
    try:
        host, port = http.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        assert b"200" in await reader.readline()
        (conn,) = http._server.server_state.connections
        sock = conn.transport.get_extra_info("socket")  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        writer.close()
    finally:
        await http.stop()


async def test_a_busy_port_is_a_clear_error(cp: ControlPlane) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            HttpListenError, match=rf"--http-listen 127.0.0.1:{port}: cannot listen .*127.0.0.1:0"
        ):
            await start_http(cp, f"127.0.0.1:{port}", operator_token=None)


def test_operator_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(daemons.OPERATOR_TOKEN_ENV, raising=False)
    assert daemons.read_operator_token(None) is None
    monkeypatch.setenv(daemons.OPERATOR_TOKEN_ENV, " from-env ")
    assert daemons.read_operator_token(None) == "from-env"
    good = tmp_path / "token"
    good.write_text("s3cret\n")
    assert daemons.read_operator_token(good) == "s3cret"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, words in [
        (tmp_path / "missing", "no such file"),
        (empty, "the file is empty"),
        (tmp_path, "cannot read"),
    ]:
        with pytest.raises(CliError, match=f"--operator-token-file .*{words}") as info:
            daemons.read_operator_token(path)
        assert info.value.code == 2


def test_default_dashboard_address(monkeypatch: pytest.MonkeyPatch) -> None:
    assert daemons.default_http_listen("127.0.0.1:7070") == "127.0.0.1:7080"
    assert daemons.default_http_listen("0.0.0.0:0") == "0.0.0.0:0"  # beside an ephemeral gRPC port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(daemons, "DEFAULT_HTTP_PORT", port)
        monkeypatch.setattr(up, "DEFAULT_HTTP_PORT", port)
        chosen, note = up.choose_http_listen("127.0.0.1:7070", None)
        assert chosen == "127.0.0.1:0" and f"127.0.0.1:{port} is busy" in note
        with pytest.raises(CliError, match=rf"something already listens on 127.0.0.1:{port}"):
            up.choose_http_listen("127.0.0.1:7070", f"127.0.0.1:{port}")
    assert up.choose_http_listen("127.0.0.1:7070", "off") == ("off", "")


def test_server_flags_and_status(tmp_path: Path) -> None:
    import subprocess

    missing = subprocess.run(
        [CORRAL, "server", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "x"),
         "--operator-token-file", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "--operator-token-file" in missing.stderr
    bad = subprocess.run(
        [CORRAL, "server", "--data-dir", str(tmp_path / "y"), "--http-listen", "nowhere"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--http-listen 'nowhere'" in bad.stderr

    server = Server(tmp_path / "srv", "127.0.0.1:0", "--dashboard-refresh", "2")
    try:
        status = cli_json(server.address, "status")
        addr = wait_for(lambda: (tmp_path / "srv" / "http.addr").read_text().strip(), 10)
        assert status["dashboard_url"] == f"{addr}/" and status["metrics_url"] == f"{addr}/metrics"
        assert "corral dashboard at" in server.output()
        off = Server(tmp_path / "off", "127.0.0.1:0", "--http-listen", "off")
        try:
            assert cli_json(off.address, "status")["dashboard_url"] == ""
            assert not (tmp_path / "off" / "http.addr").exists()
        finally:
            off.stop()
    finally:
        server.stop()
    assert not (tmp_path / "srv" / "http.addr").exists()  # removed at stop
