"""Keep large freed blocks in the process for the next step instead of handing them back to the OS.

glibc serves every block over its mmap threshold (32 MiB at most) with a fresh ``mmap`` and
unmaps it when freed, so the ``(positions x items)`` logits of the full softmax (46 MB a step on
ml-latest-small at batch 64) are page-faulted in anew at every step: about 15 ms for such a
tensor, ~10 % of a CPU training step. Served from the heap, a freed block is reused as it is.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
_KEEP_UP_TO = 2**30  # freed memory at the top of the heap beyond this much still goes back to the OS


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep up to 1 GiB of freed heap; True where it applied.

    glibc only (elsewhere nothing changes). The process's peak memory is unchanged: only what was
    already freed stays mapped. glibc still falls back to ``mmap`` when the heap cannot grow.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _KEEP_UP_TO))
