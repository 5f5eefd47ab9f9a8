"""Every benchmark leaves the same two files: the figures as JSON, and a Markdown report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_reports(
    result: dict[str, Any], json_path: Path, md_path: Path, markdown: Callable[[Any], str]
) -> None:
    for path in (json_path, md_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown(result))
