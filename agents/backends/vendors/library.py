"""Loading a vendor's management library with ctypes, and what failure to load means.

Every vendor ships an NVML-shaped C library (libdcmi, libcndev, librocm_smi64, libixml,
libmxsml, libefml, ...). Readers load it by name from the vendor's install directories first
and then the loader's search path; a library that is not there is LibraryUnavailable, which
detection treats as "try the CLI instead", never as a broken node.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from agents.backends.base import BackendError


class LibraryUnavailable(BackendError):
    """The vendor library is not installed here (or is not loadable)."""


class LibraryCallError(BackendError):
    """A library call returned an error code; `code` is the vendor's return value."""

    def __init__(self, call: str, code: int, meaning: str = "") -> None:
        self.call, self.code = call, code
        super().__init__(f"{call} returned {code}{f' ({meaning})' if meaning else ''}")


class StatusCalls:
    """Calls into a loaded library whose functions all return a status code, 0 on success
    (CNDev, ROCm-SMI). One place decides what an absent symbol (an older build) and a failed
    call mean: `must` raises LibraryCallError, for the calls a read cannot do without; `ok`
    answers False and logs at debug, for a reading this chip or this build may not offer."""

    SUCCESS = 0

    def __init__(self, lib: ctypes.CDLL, meanings: Mapping[int, str], log: logging.Logger) -> None:
        self.lib, self._meanings, self._log = lib, meanings, log

    def has(self, name: str) -> bool:
        return hasattr(self.lib, name)

    def call(self, name: str, *args: Any) -> int:
        return int(getattr(self.lib, name)(*args))

    def init(self, name: str, *args: Any, library: str, expected: str) -> None:
        """The library's init call: LibraryUnavailable where `library` lacks it (it is not the
        `expected` library) or where it fails (no driver), so detection falls back to the CLI."""
        if not self.has(name):
            raise LibraryUnavailable(f"{library} has no {name}: not {expected}")
        code = self.call(name, *args)
        if code != self.SUCCESS:
            raise LibraryUnavailable(f"{name} returned {code} ({self._meanings.get(code, 'unknown')})")

    def must(self, name: str, *args: Any) -> None:
        code = self.call(name, *args)
        if code != self.SUCCESS:
            raise LibraryCallError(name, code, self._meanings.get(code, ""))

    def ok(self, name: str, *args: Any) -> bool:
        """True on success; False where the library lacks the call or the device does not answer it."""
        if not self.has(name):
            return False
        code = self.call(name, *args)
        if code != self.SUCCESS:
            self._log.debug("%s returned %d (%s)", name, code, self._meanings.get(code, "?"))
        return code == self.SUCCESS


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
