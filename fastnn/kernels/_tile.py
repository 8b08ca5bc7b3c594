"""A register-blocked product of a few rows by a pre-packed matrix, for the recurrent kernels' per-step products.

A recurrent step multiplies a few rows (the batch, N = 20 in Deep Learning from Scratch 2's language models) by
the same ``Wh`` at every step. OpenBLAS repacks its whole ``b`` operand on every call, and at M = 20 that packing
is a large share of the call: measured (one thread, float32) a (20, 650) @ (650, 2600) product takes ~0.95 ms in
``np.matmul``, ~0.68 ms in PyTorch's MKL, ~0.65 ms here with ``Wh`` packed once per sequence (:func:`pack_part`).

:func:`_tile_product` is written in LLVM IR with explicit 16-lane vectors: ``rows`` x 4 vector accumulators stay
in registers over the whole reduction (Numba's loops over a scratch array left them in memory), each step of
the reduction loads one packed row of the panel (64 values) and broadcasts one value of each row of ``a``. On
a CPU without AVX-512 LLVM splits the vectors into narrower ones: the same results, less speed. Every output
is a fixed sequence of fused multiply-adds (over k in order, in blocks of _K_BLOCK whose sums are added in
order), whatever rows or panels a caller's part covers: results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir as llvm_ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import helper

__all__ = ["PANEL", "pack_part", "packed_product", "panels_shape"]

#: Columns of a packed panel: four 16-lane vectors (four AVX-512 registers of float32, eight of float64).
_LANES, _VECS = 16, 4
PANEL = _LANES * _VECS
#: Steps of the reduction per pass over a panel, so that the panel's share (32 KiB in float32) stays in L1 across
#: the row blocks: measured (one thread) a (20, 2600) @ (2600, 650) product 0.80 ms unblocked, 0.68 ms with
#: 128, 0.78 ms with 256 (PyTorch's MKL: 0.64 ms); (20, 650) @ (650, 2600) gains ~3%.
_K_BLOCK = 128


@intrinsic
def _tile_product(typingctx, like, c, ldc, step, a, lda, b, k, rows, add, vecs):
    """For r < rows and v < vecs, the 16 values from c + r*ldc + v*step (+)= the sum over i < k of
    a[r*lda + i] * b[i*PANEL + v*16 : i*PANEL + (v+1)*16].

    ``c``, ``a``, ``b`` are addresses (``arr.ctypes.data`` plus a byte offset) of ``like``'s dtype (an array),
    offsets counted in its elements; ``rows`` and ``vecs`` (1..4: the panel's first vecs vectors) are literals.
    """
    if not (isinstance(rows, types.IntegerLiteral) and isinstance(vecs, types.IntegerLiteral)
            and isinstance(like, types.Array)):
        return None
    R, V = rows.literal_value, vecs.literal_value

    def codegen(context, builder, signature, args):
        _, c_v, ldc_v, step_v, a_v, lda_v, b_v, k_v, _, add_v, _ = args
        fty = context.get_value_type(signature.args[0].dtype)
        vty = llvm_ir.VectorType(fty, _LANES)
        align = fty.get_abi_size(context.target_data)
        i64 = llvm_ir.IntType(64)
        width = signature.args[0].dtype.bitwidth
        fma = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(vty, [vty] * 3),
                                             f"llvm.fma.v{_LANES}f{width}")
        a_ptr, b_ptr, c_ptr = (builder.inttoptr(v, fty.as_pointer()) for v in (a_v, b_v, c_v))

        def vec_at(ptr, offset):
            return builder.bitcast(builder.gep(ptr, [offset]), vty.as_pointer())

        # accumulators as allocas in the entry block: LLVM's mem2reg turns them into registers
        acc = [[cgutils.alloca_once_value(builder, llvm_ir.Constant(vty, [0.0] * _LANES)) for _ in range(V)]
               for _ in range(R)]
        splat = llvm_ir.Constant(llvm_ir.VectorType(llvm_ir.IntType(32), _LANES), [0] * _LANES)
        with cgutils.for_range(builder, k_v) as loop:
            row = builder.mul(loop.index, llvm_ir.Constant(i64, PANEL))
            bv = [builder.load(vec_at(b_ptr, builder.add(row, llvm_ir.Constant(i64, v * _LANES))), align=align)
                  for v in range(V)]
            for r in range(R):
                s = builder.load(builder.gep(a_ptr, [builder.add(builder.mul(llvm_ir.Constant(i64, r), lda_v),
                                                                 loop.index)]))
                s = builder.insert_element(llvm_ir.Constant(vty, llvm_ir.Undefined), s,
                                           llvm_ir.Constant(llvm_ir.IntType(32), 0))
                s = builder.shuffle_vector(s, llvm_ir.Constant(vty, llvm_ir.Undefined), splat)
                for v in range(V):
                    builder.store(builder.call(fma, [s, bv[v], builder.load(acc[r][v])]), acc[r][v])
        for r in range(R):
            for v in range(V):
                offset = builder.add(builder.mul(llvm_ir.Constant(i64, r), ldc_v),
                                     builder.mul(llvm_ir.Constant(i64, v), step_v))
                dst = vec_at(c_ptr, offset)
                value = builder.load(acc[r][v])
                value = builder.select(add_v, builder.fadd(builder.load(dst, align=align), value), value)
                builder.store(value, dst, align=align)
        return context.get_dummy_value()

    sig = types.void(like, types.uintp, types.int64, types.int64, types.uintp, types.int64, types.uintp,
                     types.int64, rows, types.boolean, vecs)
    return sig, codegen


def panels_shape(K: int, H: int, blocks: int) -> tuple[int, int, int]:
    """The shape (P, K, PANEL) of the array :func:`pack_part` fills from a (K, blocks*H) matrix."""
    return -(-H // (PANEL // blocks)), K, PANEL


@helper
def pack_part(src, trans, blocks, packed, p0, p1):
    """Panels p0..p1 of ``packed`` from b = src.T if ``trans`` else src, b (K, blocks*H): panel p holds, for each
    of the ``blocks`` column blocks, its columns p*W .. p*W + W (W = PANEL // blocks), zeros past H.

    With blocks = 4 (an LSTM's gate blocks) a panel's product gives all four gates of W hidden units. Called by
    each part of a recurrence's first step for the panels it multiplies by, so the packing (a copy of all of Wh,
    ~1 ms at DLFS-2's BetterRnnlm size) is shared by the threads rather than done before the kernel.
    """
    K = packed.shape[1]
    W = PANEL // blocks
    H = (src.shape[0] if trans else src.shape[1]) // blocks
    flat = src.reshape(-1)
    for p in range(p0, p1):
        w = min(W, H - p * W)
        if trans:
            # b[k, u] = src[u, k]: each panel row gathered down w rows of src, indexed in the flat arrays
            # (measured, one thread, Wh.T at H = 650: 0.8 ms; 2-D indexing in blocks of 16 steps of k, 2.6-5.8 ms)
            panel = packed[p].reshape(-1)
            for blk in range(blocks):
                u0 = blk * H + p * W
                for k in range(K):
                    at = k * PANEL + blk * W
                    for j in range(w):
                        panel[at + j] = flat[(u0 + j) * K + k]
                    for j in range(w, W):
                        panel[at + j] = 0
        else:  # 2-D indexing measured faster here than flat (0.8 against 1.2 ms, Wh at H = 650, 4 blocks)
            panel2 = packed[p]
            for k in range(K):
                for blk in range(blocks):
                    for j in range(W):
                        panel2[k, blk * W + j] = src[k, blk * H + p * W + j] if j < w else 0


@helper
def _tile_rows(rows, like, c, ldc, step, a, lda, b, k, add):
    """:func:`_tile_product` for ``rows`` = 5, 2 or 1 given at run time (one compiled body each)."""
    if rows == 5:
        _tile_product(like, c, ldc, step, a, lda, b, k, 5, add, 4)
    elif rows == 2:
        _tile_product(like, c, ldc, step, a, lda, b, k, 2, add, 4)
    else:
        _tile_product(like, c, ldc, step, a, lda, b, k, 1, add, 4)


@helper
def _block_rows(left, item):
    """Rows of the next block when ``left`` rows remain: five in float32 (20 accumulators and 4 panel vectors
    of the 32 AVX-512 registers; measured 5-7% faster than four at N = 20), two in float64 (whose 16-lane
    vectors take two registers each), then 2 or 1 for the rest (three bodies in all: each costs compile time)."""
    if item == 4 and left >= 5:
        return 5
    return 2 if left >= 2 else 1


@helper
def packed_product(N, a, lda, K, packed, p0, p1, blocks, H, c, at, ldc, add):
    """c[n, blk*H + u] (+)= sum over k of a[n, k] * b[k, blk*H + u] for n < N, the units u of panels p0..p1
    (u = p*W + j < H, W = PANEL // blocks) and every block blk, with ``packed`` holding b's panels (:func:`pack_part`).

    ``a`` is an address with rows ``lda`` elements apart; ``c`` a C-contiguous array addressed from flat element
    ``at`` with rows ``ldc`` apart; ``add`` adds the product to c (else overwrites it). Rows go in blocks of
    :func:`_block_rows`; the reduction in blocks of _K_BLOCK steps, each block of a panel staying in cache
    across the row blocks (each output is the sum of its blocks' sums, added in order: the same bits whatever
    part of the rows and panels a thread runs).
    """
    W = PANEL // blocks
    item = packed.itemsize
    tile = np.empty((10, PANEL), packed.dtype)
    flat = c.reshape(-1)
    step = H if blocks > 1 else _LANES  # from one of a tile row's vectors to the next in c
    for p in range(p0, p1):
        u0 = p * W
        w = min(W, H - u0)
        for k0 in range(0, K, _K_BLOCK):
            kk = min(_K_BLOCK, K - k0)
            b = packed.ctypes.data + np.uintp((p * K + k0) * PANEL * item)
            more = add or k0 > 0  # the first block of the reduction writes, the others add
            n0 = 0
            while n0 < N:
                rows = _block_rows(N - n0, item)
                a0 = a + np.uintp((n0 * lda + k0) * item)
                # a whole panel goes straight into c (each vector to its block's or its units' place); the last,
                # partial one into the tile, then its w valid units of each block (one call site: compile time)
                whole = w == W
                if whole:
                    dst, ld, st = c.ctypes.data + np.uintp((at + n0 * ldc + u0) * item), ldc, step
                else:
                    dst, ld, st = tile.ctypes.data, PANEL, _LANES
                if not whole and blocks == 1 and w <= _LANES and rows == 5:
                    # a last panel of one vector's units: its one vector only, ten rows at a time where there are
                    # ten (ten independent sums per step of k, enough to hide the multiply-add's latency), so a
                    # part ending there costs little more than its whole panels (see recurrent._parts)
                    if N - n0 >= 10:
                        rows = 10
                        _tile_product(tile, dst, ld, st, a0, lda, b, kk, 10, False, 1)
                    else:
                        _tile_product(tile, dst, ld, st, a0, lda, b, kk, 5, False, 1)
                else:
                    _tile_rows(rows, tile, dst, ld, st, a0, lda, b, kk, more and whole)
                if not whole:
                    for r in range(rows):
                        for blk in range(blocks):
                            at_row = at + (n0 + r) * ldc + blk * H + u0
                            for j in range(w):
                                if more:
                                    flat[at_row + j] += tile[r, blk * W + j]
                                else:
                                    flat[at_row + j] = tile[r, blk * W + j]
                n0 += rows
