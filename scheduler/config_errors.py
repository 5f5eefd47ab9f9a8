"""What the YAML files operators write (queues, power topology) share: one error that lists
every problem, each starting with the file, and the words those problems use."""

from __future__ import annotations

from pydantic_core import PydanticCustomError


class ConfigFileError(ValueError):
    """A file with problems: one line per problem, each starting with the file."""

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def show(value: object) -> str:
    """A value as the file had it, kept short."""
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fail(message: str) -> PydanticCustomError:
    """A validation error in Corral's words (pydantic keeps the field path)."""
    return PydanticCustomError("corral", message)
