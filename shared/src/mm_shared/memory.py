"""Handing freed memory back to the operating system.

CPython frees objects to the C allocator, and glibc's malloc keeps freed pages of its heap for
reuse rather than returning them. After a burst of temporary objects (building an index, the
start-up), the process then stays at its peak resident size although most of it is free.
``malloc_trim`` returns those free pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging

log = logging.getLogger(__name__)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def release_free_memory() -> None:
    """Collect garbage, then return the allocator's free pages to the system (glibc only;
    elsewhere a no-op)."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
    else:
        log.debug("no malloc_trim here: freed memory stays with the process")
