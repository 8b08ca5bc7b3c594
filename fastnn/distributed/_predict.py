"""Batch inference over a chunked dask array, the net's parameters sent to each worker once."""

from __future__ import annotations

import copy
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["predict"]

_local = threading.local()


def _own_copy(net: Any) -> Any:
    """This thread's copy of ``net``: layers keep forward caches as attributes (the book's design), so two Dask
    threads of one worker must not run the same net object at once. Copied once per thread, not per chunk."""
    copies = getattr(_local, "nets", None)
    if copies is None:
        copies = _local.nets = weakref.WeakKeyDictionary()
    mine = copies.get(net)
    if mine is None:
        mine = copies[net] = copy.deepcopy(net)
    return mine


def _predict_chunk(x: np.ndarray, net: Any, batch_size: int | None) -> np.ndarray:
    net = _own_copy(net)
    if batch_size is None or len(x) <= batch_size:
        return np.asarray(net.predict(x))
    return np.concatenate([np.asarray(net.predict(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def predict(net: Any, x: Any, *, client: Any = None, batch_size: int | None = None) -> Any:
    """``net.predict`` over a chunked ``dask.array`` of inputs, chunk by chunk on the cluster's workers.

    Parameters
    ----------
    net : object
        Has ``predict(x)`` (any fastnn net, or a picklable object with the book's interface). It is scattered to
        every worker once (``Client.scatter(..., broadcast=True)``); the tasks refer to it by key, so its
        parameters are not pickled into the graph.
    x : dask.array.Array
        Inputs (N, ...), chunked along N (other axes are merged into one chunk).
    client : distributed.Client, optional
        Default: the current client (``distributed.get_client()``).
    batch_size : int, optional
        Rows per ``net.predict`` call inside a chunk (bounds memory); default the whole chunk.

    Returns
    -------
    dask.array.Array
        ``net.predict`` of every row, (N, ...) with the chunks of ``x`` along N; lazy until computed. Equal to
        ``net.predict(x.compute())`` to rounding: a row's output depends on the other rows of its call only
        through the blocking BLAS and fastnn's matmul choose for the call's size. Bit for bit equal to
        ``net.predict`` called here on the same chunks (and ``batch_size`` slices) with the workers' thread count.
    """
    from ..datasets._optional import require

    da = require("dask.array", "fastnn.distributed.predict", extra="distributed")
    require("distributed", "fastnn.distributed.predict", extra="distributed")
    from distributed import get_client

    if not callable(getattr(net, "predict", None)):
        raise TypeError(f"predict: net must have predict(x), got {type(net).__name__}")
    if not isinstance(x, da.Array):
        raise TypeError(f"predict: x must be a dask.array.Array (N, ...), got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError(f"predict: x must have at least 1 dimension (N, ...), got shape {x.shape}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"predict: batch_size must be None or an int >= 1, got {batch_size!r}")
    client = client if client is not None else get_client()
    if x.ndim > 1 and any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({i: -1 for i in range(1, x.ndim)})
    # One row here gives the output's trailing shape and dtype without touching the data.
    probe = np.asarray(net.predict(np.zeros((1, *x.shape[1:]), dtype=x.dtype)))
    (net_ref,) = client.scatter([net], broadcast=True, hash=True)
    out_chunks = (x.chunks[0], *((n,) for n in probe.shape[1:]))
    extra = probe.ndim - x.ndim
    return da.map_blocks(
        _predict_chunk, x, net_ref, batch_size, dtype=probe.dtype, chunks=out_chunks,
        drop_axis=list(range(probe.ndim, x.ndim)) if extra < 0 else [],
        new_axis=list(range(x.ndim, probe.ndim)) if extra > 0 else None,
        meta=np.empty((0,) * probe.ndim, dtype=probe.dtype), token="fastnn-predict")
