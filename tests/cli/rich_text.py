"""What a rich renderable prints, as plain text: how the CLI's render tests read tables."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console


def text_of(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=220, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out
