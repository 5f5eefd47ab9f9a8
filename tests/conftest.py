from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Agent, Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "server")
    yield srv
    srv.stop()


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[object]:
    agents: list[Agent] = []

    def start(server: str, node_name: str, profile: str = "h100-sxm-8") -> Agent:
        agent = Agent(server, node_name, profile, tmp_path / "agents" / node_name)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()
