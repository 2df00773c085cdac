"""Handing freed memory back to the system after a large request.

glibc keeps the heap pages a large decode freed (a 40 MB PNG decodes to hundreds of MB across many
allocations) and reuses them only for this process: a server that served one large prediction stays
that large. `malloc_trim` returns them; elsewhere (macOS, musl) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

RELEASE_AFTER_BYTES = 256 * 1024  # uploads this large can decode to many MB; smaller ones cost nothing to keep


@functools.cache
def _trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> bool:
    """Return the heap's free pages to the system; True where that was possible (glibc)."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
