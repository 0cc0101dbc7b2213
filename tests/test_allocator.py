"""keep_freed_memory: after it (and in any process that builds the CLI), a 64 MiB tensor comes from the heap,
not from a fresh mmap that would be page-faulted in again at every training step. Each case runs in its own
process, since the malloc policy is process-wide."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

BIG = 64 * 2**20

MEASURE = f"""
import ctypes, torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblkhd
block = torch.ones({BIG // 4})  # float32
print(libc.mallinfo2().hblkhd - before)  # bytes newly mmapped
"""

SETUPS = {
    "default": "",
    "keep_freed_memory": "from negseq.training.allocator import keep_freed_memory; assert keep_freed_memory()",
    "cli": "from negseq.training.cli import NegSeqCLI\ntry:\n    NegSeqCLI(args=['--help'])\nexcept SystemExit:\n    pass",
}


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except (OSError, TypeError):
        return False


def _newly_mmapped(setup: str) -> int:
    result = subprocess.run([sys.executable, "-c", setup + "\n" + MEASURE], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 only")
@pytest.mark.parametrize("setup", SETUPS)
def test_big_blocks_come_from_the_heap_once_kept(setup: str) -> None:
    mmapped = _newly_mmapped(SETUPS[setup])
    if setup == "default":
        assert mmapped >= BIG  # the control: glibc's default serves it with its own mmap
    else:
        assert mmapped < BIG
