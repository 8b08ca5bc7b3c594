"""glibc malloc's thresholds for a training loop's arrays, set once when the kernels load.

A training step allocates and frees tens of MB of activations and gradients. glibc starts with a 128 KB mmap
threshold and a 128 KB trim threshold and raises both only as large blocks come and go (the mmap one to the
largest freed mapping, the trim one to twice that, at most 32 MB and 64 MB on 64-bit systems). Until then, and
whenever a step frees more than the trim threshold at the top of a heap, memory goes back to the kernel and the
next step takes it again page by page, zeroed: a DeepConvNet MNIST step (batch 100, two threads) took 160-490
minor page faults and 0.8-1.8 ms of system time per step. :func:`tune` sets the thresholds to those maxima
from the start, which is where glibc would leave them for arrays that size: 0-21 faults and 0.0-0.5 ms of
system time a step, step time 24.5 -> 23.6 ms (medians of 5 alternated processes, 30 steps each; the RSS was the
same, 236 MB). The cost: up to 64 MB freed at the top of a heap stays with the process instead of going back.

Nothing is done on other C libraries, when ``FASTNN_MALLOC_TUNING=0`` (:data:`fastnn.config.MALLOC_TUNING`), or
when the user has configured malloc (``MALLOC_*_`` variables or ``glibc.malloc`` tunables), whose settings win.
"""

from __future__ import annotations

import ctypes
import os

from . import config

#: mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

#: glibc's own caps of its dynamic thresholds on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX, and twice it).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a GNU system
        return False


def tune() -> bool:
    """Set the mmap and trim thresholds (see the module docstring) unless turned off, not glibc, or set by the
    user; returns whether they were set."""
    if not config.MALLOC_TUNING or not _glibc():
        return False
    if any(v in os.environ for v in _USER_SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
