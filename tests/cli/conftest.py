"""Fixtures for the CLI tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from cli_fakes import FakeControlPlane, serve_fake


@pytest.fixture
def fake_server() -> Iterator[tuple[FakeControlPlane, str]]:
    fake = FakeControlPlane()
    server, port = serve_fake(fake)
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def dead_address() -> str:
    """An address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
