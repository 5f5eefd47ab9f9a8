"""Fixtures shared by the vendor backend tests."""

from tests.agents.vendors.helpers import tool_path

__all__ = ["tool_path"]
