"""Loading a vendor's management library with ctypes, and what failure to load means.

Every vendor ships an NVML-shaped C library (libdcmi, libcndev, librocm_smi64, libixml,
libmxsml, libefml, ...). Readers load it by name from the vendor's install directories first
and then the loader's search path; a library that is not there is LibraryUnavailable, which
detection treats as "try the CLI instead", never as a broken node.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

from agents.backends.base import BackendError


class LibraryUnavailable(BackendError):
    """The vendor library is not installed here (or is not loadable)."""


class LibraryCallError(BackendError):
    """A library call returned an error code; `code` is the vendor's return value."""

    def __init__(self, call: str, code: int, meaning: str = "") -> None:
        self.call, self.code = call, code
        super().__init__(f"{call} returned {code}{f' ({meaning})' if meaning else ''}")


def load_library(names: Sequence[str], dirs: Sequence[str] = (), explicit: str | None = None) -> ctypes.CDLL:
    """`explicit` (a path from configuration or a test) wins; then each of `dirs` × `names`;
    then the plain names through the dynamic loader's own search path."""
    candidates = [explicit] if explicit else [os.path.join(d, n) for d in dirs for n in names] + list(names)
    errors = []
    for candidate in candidates:
        if os.sep in candidate and not os.path.exists(candidate):
            continue
        try:
            return ctypes.CDLL(candidate)
        except OSError as e:
            errors.append(f"{candidate}: {e}")
    tried = "; ".join(errors) if errors else f"none of {', '.join(names)} found"
    raise LibraryUnavailable(f"cannot load {names[0] if names else 'the library'}: {tried}")
