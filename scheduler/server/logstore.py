"""Worker logs as the control plane holds them: one file per job attempt and rank.

Agents ship chunks with byte offsets; writing only the part beyond what is stored makes a
resent chunk harmless, and the stored size is what the agent resumes from on reconnect.
"""

from __future__ import annotations

from pathlib import Path


class LogStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, job_id: str, attempt: int, rank: int) -> Path:
        return self.root / job_id / str(attempt) / f"rank-{rank}.log"

    def size(self, job_id: str, attempt: int, rank: int) -> int:
        p = self.path(job_id, attempt, rank)
        return p.stat().st_size if p.exists() else 0

    def append(self, job_id: str, attempt: int, rank: int, offset: int, data: bytes) -> int:
        """Store the bytes of `data` beyond what is already stored; returns the new size."""
        p = self.path(job_id, attempt, rank)
        p.parent.mkdir(parents=True, exist_ok=True)
        size = p.stat().st_size if p.exists() else 0
        if offset > size:
            # A gap means a chunk went missing; the agent resends from `size` after its
            # next register, so keep the file contiguous and drop this one.
            return size
        new = data[size - offset :]
        if new:
            with p.open("ab") as f:
                f.write(new)
        return size + len(new)

    def read(self, job_id: str, attempt: int, rank: int, offset: int, limit: int = 64 * 1024) -> bytes:
        p = self.path(job_id, attempt, rank)
        if not p.exists():
            return b""
        with p.open("rb") as f:
            f.seek(offset)
            return f.read(limit)
