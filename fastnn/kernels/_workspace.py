"""Scratch memory that kernels keep between calls (per caller cache, else per Python thread)."""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["buffer", "workspace"]

_scratch = threading.local()


def workspace(cache: dict | None) -> dict:
    """Where scratch buffers live: the caller's cache, else this thread's own (bounded by the chunk size)."""
    if cache is not None:
        return cache
    ws = getattr(_scratch, "ws", None)
    if ws is None:
        ws = _scratch.ws = {}
    return ws


def buffer(ws: dict, key: str, size: int, dtype: np.dtype) -> np.ndarray:
    """A 1-D scratch array of ``size`` elements kept in ``ws`` (grown, never shrunk).

    Reusing the memory matters: a fresh large buffer pays its page faults (the kernel zeroing every page) on
    each call, which measured as much as the whole unfold on a busy machine.
    """
    buf = ws.get(key)
    if not isinstance(buf, np.ndarray) or buf.dtype != dtype or buf.size < size:
        buf = None
        ws.pop(key, None)  # let the old buffer go before the new one is allocated
        buf = np.empty(size, dtype=dtype)
        ws[key] = buf
    return buf[:size]
