"""Run the dashboard's HTTP server on the control plane's own asyncio loop.

Same process and same loop as the gRPC servicers, so handlers read `cp` state between two
awaits without locks. uvicorn's `serve()` would install its own SIGTERM/SIGINT handlers over
the control plane's; the pieces of it used here (startup, main_loop, shutdown) do not, so
run_server keeps its signals. The socket is bound here, so a busy port is a clear error
rather than uvicorn's exit from inside a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

import uvicorn

from scheduler.web.app import create_app

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane

SHUTDOWN_GRACE_S = 2.0
DISABLED = ("", "off", "none", "disabled")


class HttpListenError(ValueError):
    """The HTTP listen address is malformed or cannot be bound."""


def parse_listen(listen: str) -> tuple[str, int] | None:
    """(host, port) from HOST:PORT; None when HTTP is turned off ("off" or "")."""
    text = listen.strip()
    if text.lower() in DISABLED:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise HttpListenError(
            f"--http-listen {listen!r}: expected HOST:PORT (e.g. 127.0.0.1:7080; port 0: any free port) "
            "or off"
        )
    return host.strip("[]") or "0.0.0.0", int(port)


def url_for(host: str, port: int) -> str:
    """The URL a browser on this machine dials: a wildcard host becomes loopback."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # asyncio sets TCP_NODELAY on accepted sockets only when their proto is IPPROTO_TCP (they
    # inherit it from this one; the default 0 does not count): without it, Nagle plus the
    # client's delayed ACK hold every response after the first on a keep-alive connection ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = (
            "; something else listens there: pass --http-listen 127.0.0.1:0 (any free port) or off"
            if port
            else ""
        )
        raise HttpListenError(f"--http-listen {host}:{port}: cannot listen ({exc.strerror}){hint}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class HttpServer:
    def __init__(self, server: uvicorn.Server, sock: socket.socket, url: str) -> None:
        self._server = server
        self._sock = sock
        self._task: asyncio.Task[None] | None = None
        self.url = url

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    async def _start(self) -> None:
        server = self._server
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self._sock])
        self._task = asyncio.create_task(server.main_loop(), name="corral-http")

    async def stop(self) -> None:
        server = self._server
        server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            # Browsers keep polling connections open: close them rather than wait on them.
            server.force_exit = True
            await server.shutdown(sockets=[self._sock])


async def start_http(
    cp: ControlPlane, listen: str, *, operator_token: str | None, refresh_s: float = 5.0
) -> HttpServer | None:
    """Serve the dashboard on `listen`; None when it is "off". Raises HttpListenError."""
    where = parse_listen(listen)
    if where is None:
        return None
    host, port = where
    sock = bind(host, port)
    app = create_app(cp, operator_token=operator_token, refresh_s=refresh_s)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        server_header=False,
    )
    http = HttpServer(uvicorn.Server(config), sock, url_for(host, sock.getsockname()[1]))
    try:
        await http._start()
    except BaseException:
        sock.close()
        raise
    return http
