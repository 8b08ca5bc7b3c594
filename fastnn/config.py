"""Tunable switches of fastnn, in one place.

Kernels never hard-code a threshold or a compiler flag: they read them from here, so a measurement that moves
a threshold changes one line.
"""

from __future__ import annotations

import os

#: Compiler flags for every kernel. ``fastmath=True`` would include ``nnan`` and ``ninf``, which lets LLVM
#: assume NaN and Inf never occur and silently breaks their propagation; this subset keeps IEEE special values
#: while still allowing reassociation (vectorised reductions) and fused multiply-add.
FASTMATH: frozenset[str] = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: The subset for passes whose roundings must not depend on how LLVM optimises one copy of them: without
#: ``reassoc`` and ``contract``. Numba compiles a parallel twin's loop body twice (a library the compiling process
#: runs, and a re-optimised copy that the on-disk cache keeps for every later process) and the serial twin once
#: more; with those two flags LLVM rounded the copies differently (a first run's results an ulp off later runs',
#: one thread's off two threads'). Element-wise passes have no reduction to vectorise: they lose no speed.
FASTMATH_IN_ORDER: frozenset[str] = FASTMATH - {"reassoc", "contract"}

#: Persist compiled kernels between processes (Numba ``cache=True``). ``FASTNN_NUMBA_CACHE=0`` turns it off.
#: When no cache directory is writable, kernels are compiled without caching instead of failing at import.
CACHE: bool = os.environ.get("FASTNN_NUMBA_CACHE", "1") != "0"

#: 3x3 stride-1 convolutions by Winograd's F(2x2, 3x3) (:mod:`fastnn.kernels.winograd`) when numpy's OpenBLAS
#: can be called from kernels; ``FASTNN_CONV_WINOGRAD=0`` keeps them on im2col + GEMM.
CONV_WINOGRAD: bool = os.environ.get("FASTNN_CONV_WINOGRAD", "1") != "0"

#: Their forward pass in F(4x4, 3x3) (:mod:`fastnn.kernels.winograd43`) where it measured faster;
#: ``FASTNN_CONV_WINOGRAD43=0`` keeps every Winograd layer on F(2x2, 3x3).
CONV_WINOGRAD43: bool = os.environ.get("FASTNN_CONV_WINOGRAD43", "1") != "0"

#: Set glibc malloc's mmap and trim thresholds to 32 MB and 64 MB when the kernels load
#: (:func:`fastnn._malloc.tune`); ``FASTNN_MALLOC_TUNING=0`` leaves malloc as it is.
MALLOC_TUNING: bool = os.environ.get("FASTNN_MALLOC_TUNING", "1") != "0"

#: Work size (elements touched, roughly) from which a kernel runs its ``parallel=True`` twin. Starting the
#: thread pool costs ~20 us per call on this machine, so below these sizes the serial twin is faster.
#: Measured on the project machine (2 cores, quiet), best of 200 calls, serial vs parallel twin:
#: relu forward/backward break even at 2**15-2**16 elements; Adam pays from 2**14-2**15, SGD from 2**16;
#: softmax-CE from 2**13-2**14; unfold/fold from 1-2e4, the 2x2 pool from 8k (forward) and 16k (backward);
#: batch-norm reductions from 2**14-2**15 and its element-wise passes from 2**16-2**17.
PARALLEL_MIN_WORK: dict[str, int] = {
    "elementwise": 1 << 16,
    "optimizer": 1 << 15,
    # a tensor of a multi-tensor optimizer step (kernels/optimizers.py MultiTensorPlan) leaves the plan's one serial
    # launch for a parallel launch of its own from this size. 2**18 saved DeepConvNet's two largest tensors ~0.5 ms
    # each with another process busy on this VM, but cost the 22-tensor Adam of MultiLayerNetExtend its edge on a
    # quiet machine (its 78400-element W1 serial: 0.49 -> 0.51x PyTorch's fused Adam, targets run 2026-12-06): kept
    # at the optimizer family's threshold
    "multi_tensor": 1 << 15,
    # a matrix product cut into single-threaded BLAS parts (kernels/linalg.py), in multiply-adds / 8: its parts run
    # on Numba's threads from 2**18 multiply-adds. 2**23 helped DeepConvNet's affine products with another process
    # busy (0.63 -> 0.13 ms each), but on a quiet machine the batch-norm MLP's 100-wide products lost their second
    # thread: its CIFAR-size step 1.56 -> 2.01 ms (targets runs 2026-12-06, 00:30 and 02:10)
    "gemm": 1 << 15,
    "window": 1 << 15,
    "normalization": 1 << 16,
    "loss": 1 << 14,
    # attention: multiply-adds of one call (N*H*S*T*(d + dv)); a single 64x64 tile pair is ~5 us of BLAS work
    "attention": 1 << 18,
    # the embedding gather and scatter-add (kernels/sequence.py): a row copy per id, bandwidth-bound; serial
    # copies 700 rows of 100 floats in 8 us, less than a parallel launch costs
    "embedding": 1 << 18,
    # a recurrent step's product (N*G*H*H multiply-adds): one parallel region per step from here
    "recurrent": 1 << 17,
}


def _env_reader(name: str):
    """A function returning ``os.environ.get(name)``, read on every call (tests and ``fastnn warmup`` set the
    variable at run time) but without ``os.environ``'s Python-level get/encode/decode: a kernel launch asks for its
    threshold every time, and ``os.environ.get`` was ~0.5 us of it (~4% of a small net's training step, measured
    by cProfile). CPython keeps os.environ's entries in ``os.environ._data`` keyed by ``encodekey(name)``; where
    that is not so, the plain lookup."""
    data, encode, decode = (getattr(os.environ, a, None) for a in ("_data", "encodekey", "decodevalue"))
    if not isinstance(data, dict) or encode is None or decode is None:
        return lambda: os.environ.get(name)
    key = encode(name)

    def read() -> str | None:
        value = data.get(key)
        return None if value is None else decode(value)

    return read


_min_work_override = _env_reader("FASTNN_PARALLEL_MIN_WORK")


def parallel_min_work(family: str) -> int:
    """Threshold for ``family``; ``FASTNN_PARALLEL_MIN_WORK`` overrides every family (0: always parallel)."""
    override = _min_work_override()
    if override is not None:
        return int(override)
    return PARALLEL_MIN_WORK[family]
