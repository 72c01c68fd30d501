"""Keep the live coach's memory flat over days of running.

glibc serves big allocations (a rendered line, an utterance, their resampled copies:
100 KB to 1 MB each) with ``mmap`` and gives them back to the system on ``free`` — until
the first such free, after which it raises its mmap threshold and serves them from the
heap instead, where the freed holes fragment and the resident size creeps up.
``bench/soak.py`` measured that creep at about +6 MB over six hours of use (no leak:
Python objects, threads and file handles stayed flat); with the threshold fixed, the
resident size stayed within 1 MB once the voice cache was full. Fixing the threshold is
what turns glibc's adjustment off.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""glibc ``mallopt`` parameter number (malloc.h)."""
MMAP_THRESHOLD = 64 * 1024
"""Blocks this big or bigger (1.5 s of 22 kHz speech) are mapped, never heaped. glibc starts
at 128 KB; the soak still crept ~5 MB over six hours with that, and stayed flat with 64 KB."""


def return_big_buffers_to_the_system(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold; False (and nothing done) on a C library without ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    log.debug("mmap threshold fixed at %d bytes: %s", threshold, done)
    return done
