"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3), forward and backward.

The math (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Each 2x2 block of outputs
of one filter ``g`` (3x3) on one channel is computed from the 4x4 input tile ``d`` under it as

.. math::

    Y = A^T \\big[ (G g G^T) \\odot (B^T d B) \\big] A, \\qquad
    B^T = \\begin{bmatrix} 1&0&-1&0 \\\\ 0&1&1&0 \\\\ 0&-1&1&0 \\\\ 0&1&0&-1 \\end{bmatrix},\\;
    G = \\begin{bmatrix} 1&0&0 \\\\ \\tfrac12&\\tfrac12&\\tfrac12 \\\\ \\tfrac12&-\\tfrac12&\\tfrac12 \\\\
    0&0&1 \\end{bmatrix},\\;
    A^T = \\begin{bmatrix} 1&1&1&0 \\\\ 0&1&-1&-1 \\end{bmatrix}.

Summed over channels, the 16 element-wise products become 16 matrix products, one per position ``xi`` of the
4x4 transformed tile: ``M[xi] (K, tiles) = U[xi] (K, C) @ V[xi] (C, tiles)`` with ``U = G g G^T`` and
``V = B^T d B``: 16 * K * C multiplications per 2x2 outputs instead of 36 * K * C, 2.25x fewer. The backward
pass is the exact adjoint of the forward: ``dM = A dY A^T`` per tile, ``dU[xi] = dM[xi] @ V[xi]^T``
(``dW = G^T dU G``) and ``dV[xi] = U[xi]^T @ dM[xi]``, whose tiles ``B dV B^T`` overlap-add into ``dx``.
The transform coefficients are 0, +-1 and +-1/2, so rounding stays at the level of the direct sum (measured
in float32 against a float64 direct convolution: max error 3e-7 of the output's magnitude).

Tiling. ``TH = ceil(OH / 2)`` rows of tiles, ``TWp = ceil(OW / 2) + 1`` tiles per row: one spare tile per row
makes every row of tiles, and every image, one flat run, so each transform is a handful of unit-stride loops
over a whole plane. The spare tile's outputs are dropped and its output gradient is zero.

Schedule. The batch is cut into chunks of ``m`` images (an even number of chunks, equal within one image:
:func:`chunking`), and a thread runs the whole pipeline of a chunk on its own scratch: input transform (``V``,
16 x C x m*L), the 16 products through OpenBLAS called from that thread with one OpenBLAS thread
(:mod:`fastnn.kernels._blas`), output transform into ``out``. Everything a chunk touches
stays in that core's cache (``m`` is chosen for that), and the two thread pools never wait for each other.
Backward recomputes ``V`` per chunk (cheaper than keeping the whole batch's, 4x the input) and sums ``dU`` in a
fixed number of partial sums over fixed sets of chunks, added in order at the end: the same bits with any
number of threads.

Special values (``tests/kernels/test_winograd.py``): the output and ``dx`` are non-finite exactly where the direct
sum's are, but the transforms add and subtract a tile's entries, so +-inf can come out as NaN. ``dW`` of a
(filter, channel) pair that a non-finite value reaches is non-finite in all nine taps, where the direct sum may
keep taps whose windows miss it finite. NaN is never lost. :data:`fastnn.config.CONV_WINOGRAD` (environment
``FASTNN_CONV_WINOGRAD=0``) turns this path off.
"""

from __future__ import annotations

import numpy as np
from numba import uintp

from .. import config
from .._jit import Kernel, claim, helper, slot_kernel
from .._validate import WindowGeometry
from . import _blas
from ._blas import gemm, set_threads_local
from ._workspace import buffer
from .pooling import _max4

__all__ = ["applies", "backward", "forward"]

#: Bytes of one thread's scratch (transformed input and output tiles of a chunk) the chunk size aims at: half of
#: one core's L2 cache (2 MB here), so a chunk's transforms and products stay in cache beside what else the pass
#: touches (the backward's transposed copy of V, the filter transforms U and dU, the planes read and written).
#: DeepConvNet's five Winograd layers, one thread, forward + backward summed: 2 MB 62.5-63.1 ms, 1 MB 59.1-59.4,
#: 768 KB 59.6 (the backward gains most: 40.6-41.0 -> 37.3-37.6 ms).
_SLOT_BYTES = 1 << 20

#: Partial sums of the filter gradient in the backward pass (a fixed number, so results do not depend on the
#: thread count): enough to share among threads, fewer when the filters are large (``_GROUP_BYTES`` in total).
_GROUPS = 8
_GROUP_BYTES = 1 << 26

#: The number of chunks is rounded up to a multiple of this and chunk sizes differ by at most one image, so that
#: two threads (this machine's cores) get equal shares: 100 images in 9 chunks of 12 (DeepConvNet's 8x8 layers)
#: gave one thread 60 images and the other 40. A constant, not the thread count, so results keep their bits.
_CHUNK_MULTIPLE = 2

#: Filters x channels (K*C) from which the backward pass copies each V[xi] transposed into scratch before
#: ``dU[xi] += dM[xi] @ V[xi]^T``, so that OpenBLAS gets the product with neither operand transposed: with both
#: holding the reduction along their rows it is slower (one thread, one product of a chunk: K=64, C=32, 340 tiles
#: 18.9 against 10.9 us + ~2.5 us for the copy; 64 x 64, 200 tiles 20.1 against 14.4 + ~3.5 us; at 32 x 32 the
#: copy costs more than the 12.1 -> 9.7 us it saves).
_TRANSPOSED_DU = 2048

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def applies(g: WindowGeometry, FN: int, dtype: np.dtype) -> bool:
    """Whether the Winograd path takes this convolution: 3x3, stride 1, nothing empty, BLAS callable."""
    return (config.CONV_WINOGRAD and _blas.AVAILABLE and g.FH == 3 and g.FW == 3 and g.SH == 1 and g.SW == 1
            and g.N > 0 and g.C > 0 and FN > 0 and g.OH > 0 and g.OW > 0
            and dtype in (np.float32, np.float64))


# ---------------------------------------------------------------------------------------------------------------
# Per-plane transforms (inlined into the kernels). Planes are split by row parity: ``pe``/``po`` hold the even and
# odd rows of the zero-padded plane, pitch 2*TWp, so tile row th reads rows th and th+1 of each.


@helper(inline=True)
def _to_halves(plane, PH, PW, TWp, even, odd):
    """Copy plane (rows, cols) into the even and odd rows of its zero-padded version (pitch 2*TWp), shifted by PH
    rows and PW columns; the padding itself is not written."""
    H, W = plane.shape
    for y in range(H):
        r = y + PH
        off = (r // 2) * 2 * TWp + PW
        dst = even[off:off + W] if r % 2 == 0 else odd[off:off + W]
        src = plane[y]
        for q in range(W):
            dst[q] = src[q]


@helper(inline=True)
def _from_halves(even, odd, PH, PW, TWp, plane):
    """The inverse of :func:`_to_halves`: plane = the window of the padded rows at (PH, PW)."""
    H, W = plane.shape
    for y in range(H):
        r = y + PH
        off = (r // 2) * 2 * TWp + PW
        src = even[off:off + W] if r % 2 == 0 else odd[off:off + W]
        dst = plane[y]
        for q in range(W):
            dst[q] = src[q]


# inlined in Numba's IR: as a called helper, DeepConvNet's 14x14 layers took 25-40% longer (16 -> 32 channels
# forward 2.6-2.8 -> 2.0 ms, 32 -> 32 forward 6.0-6.2 -> 4.2-4.3 ms, one thread); the backward compiles ~0.3 s longer
@helper(inline=True)
def _input_transform(plane, PH, PW, TH, TWp, pe, po, E, O, V, c, col):
    """V[4i + j, c, col + t] = (B^T d_t B)[i, j] for the L = TH*TWp tiles d_t of one input plane (H, W).

    ``pe``/``po`` (2*(TH+1)*TWp + 4) must be zero outside the data, which this writes at the same places for every
    plane of a geometry; ``E``/``O`` (4, (TH+1)*TWp) receive the column transform of the even/odd padded rows.
    """
    _to_halves(plane, PH, PW, TWp, pe, po)
    LE = (TH + 1) * TWp
    for a in range(2):
        p = pe if a == 0 else po
        Z = E if a == 0 else O
        z0 = Z[0]
        z1 = Z[1]
        z2 = Z[2]
        z3 = Z[3]
        for f in range(LE):  # d B: the four columns of tile f of this row from padded columns 2f..2f+3
            d0 = p[2 * f]
            d1 = p[2 * f + 1]
            d2 = p[2 * f + 2]
            d3 = p[2 * f + 3]
            z0[f] = d0 - d2
            z1[f] = d1 + d2
            z2[f] = d2 - d1
            z3[f] = d1 - d3
    L = TH * TWp
    for j in range(4):  # B^T (d B): rows 2th..2th+3 are E[th], O[th], E[th+1], O[th+1]
        e = E[j, :L]
        e_next = E[j, TWp:TWp + L]
        od = O[j, :L]
        od_next = O[j, TWp:TWp + L]
        v0 = V[j, c, col:col + L]
        v1 = V[4 + j, c, col:col + L]
        v2 = V[8 + j, c, col:col + L]
        v3 = V[12 + j, c, col:col + L]
        for t in range(L):
            e0 = e[t]
            e1 = e_next[t]
            o0 = od[t]
            o1 = od_next[t]
            v0[t] = e0 - e1
            v1[t] = o0 + e1
            v2[t] = e1 - o0
            v3[t] = o0 - o1


@helper
def _output_tiles(M, f, n, bias, relu, zero, P, Y):
    """Y (2, 2w) = the even and odd output rows of the tiles A^T m_t A + bias (m_t = M[:, f, t], t < n), each
    through ReLU when ``relu`` (``max(y, 0)``, NaN kept: the test is ``y < 0``, as the ReLU kernel's);
    P (2, 4, w) scratch. Read image i's output plane from ``Y[:, 2 * i * L:]`` (L tiles an image) with
    :func:`_from_halves`, or pool it with :func:`_pool_tiles`. All the images of a chunk in one call (the views
    cost: see :func:`_output_adjoint`).
    """
    for j in range(4):  # A^T m: output row a of every tile, column j of the transform
        m0 = M[j, f]
        m1 = M[4 + j, f]
        m2 = M[8 + j, f]
        m3 = M[12 + j, f]
        p0 = P[0, j]
        p1 = P[1, j]
        for t in range(n):
            a1 = m1[t]
            a2 = m2[t]
            p0[t] = m0[t] + a1 + a2
            p1[t] = a1 - a2 - m3[t]
    for a in range(2):  # (A^T m) A: output columns 2t, 2t+1 of output row 2th + a
        q0 = P[a, 0]
        q1 = P[a, 1]
        q2 = P[a, 2]
        q3 = P[a, 3]
        ya = Y[a]
        if relu:
            for t in range(n):
                a1 = q1[t]
                a2 = q2[t]
                y0 = q0[t] + a1 + a2 + bias
                y1 = a1 - a2 - q3[t] + bias
                ya[2 * t] = zero if y0 < 0 else y0
                ya[2 * t + 1] = zero if y1 < 0 else y1
        else:
            for t in range(n):
                a1 = q1[t]
                a2 = q2[t]
                ya[2 * t] = q0[t] + a1 + a2 + bias
                ya[2 * t + 1] = a1 - a2 - q3[t] + bias


@helper
def _pool_tiles(Y, TWp, out, argmax):
    """out (OH // 2, OW // 2) = 2x2 stride-2 max-pool of the output plane held in Y (as :func:`_output_tiles`
    leaves it), argmax the window offsets: each window is one 2x2 tile. The rule of the max-pool kernel (first
    maximum, first NaN; :func:`fastnn.kernels.pooling._beats`) by the same tournament, so values and indices are
    the ones pooling the written plane would give."""
    POH, POW = out.shape
    P2 = 2 * TWp
    for py in range(POH):
        top = Y[0, py * P2:py * P2 + 2 * POW]
        bottom = Y[1, py * P2:py * P2 + 2 * POW]
        o = out[py]
        am = argmax[py]
        for px in range(POW):
            o[px], am[px] = _max4(top[2 * px], top[2 * px + 1], bottom[2 * px], bottom[2 * px + 1])


@helper
def grad_plane(dout, out, argmax, n, f, mode, zero, OH, OW, dst, d0, pitch, odd):
    """Row y of plane (n, f) of a convolution's output gradient (OH, OW) into ``dst`` (1-D) at
    ``d0 + (y // 2) * pitch + (y % 2) * odd``;
    returns the sum of its elements, row by row. The gradient is ``dout`` itself (mode 0); ``dout`` where the ReLU
    output ``out`` is not ``<= 0`` (mode 1: the ReLU kernel's backward rule); or (mode 2) that of a ReLU then a 2x2
    stride-2 max-pool, from the pooled ``dout``, ``out`` and ``argmax`` (N, K, OH // 2, OW // 2): each pooled gradient,
    masked by the ReLU rule, at its window's ``argmax`` offset and zeros elsewhere (the max-pool kernel's backward,
    whose output is never written). A row-major plane of pitch OW is ``pitch = 2 * OW, odd = OW``.

    The sum is one loop over the written rows for every mode, so that a fused pass and the unfused one (the
    kernels one after another, then mode 0) add the same values in the same order (the tests check the bits).
    One call per plane (a helper per row, inlined in Numba's IR, cost ~60 ns a row: 2-3 ms per DeepConvNet layer),
    and every load before a test (a load inside the branch keeps LLVM from making it a vector select; a mispredicted
    branch per element, ReLU masks being random, cost 2-4x the whole pass). The arrays are indexed whole, with
    (n, f) and the offset ``d0``, not through views of a plane (two atomic reference-count updates each): the
    pipeline's backward of a SimpleConvNet CIFAR batch, one thread, 9.4-9.7 -> 9.0-9.2 ms.
    """
    n = uintp(n)
    f = uintp(f)
    if mode == 2:
        # zeros everywhere (also the last row and column of an odd OH, OW: in no window), then each window's one
        # gradient at its argmax offset: measured 2x faster than one pass of selects along each row (2*POW stores
        # reading the pooled arrays at q >> 1, which does not vectorise), SimpleConvNet's 28x28 planes, one thread:
        # 1.97 -> 1.06 ms a CIFAR batch. ``& 3`` keeps even a bad argmax (the checked kernels reject it) in its window.
        for y in range(OH):
            off = d0 + (y // 2) * pitch + (y % 2) * odd
            for q in range(OW):
                dst[uintp(off + q)] = zero
        POH, POW = dout.shape[2], dout.shape[3]
        for py in range(POH):
            top = d0 + py * pitch
            for px in range(POW):
                v = dout[n, f, uintp(py), uintp(px)]
                m = out[n, f, uintp(py), uintp(px)]
                k = argmax[n, f, uintp(py), uintp(px)] & 3
                dst[uintp(top + (k >> 1) * odd + 2 * px + (k & 1))] = zero if m <= 0 else v
    else:
        for y in range(OH):
            off = d0 + (y // 2) * pitch + (y % 2) * odd
            r = uintp(y)
            if mode == 0:
                for q in range(OW):
                    dst[uintp(off + q)] = dout[n, f, r, uintp(q)]
            else:
                for q in range(OW):
                    v = dout[n, f, r, uintp(q)]
                    m = out[n, f, r, uintp(q)]
                    dst[uintp(off + q)] = zero if m <= 0 else v
    acc = zero
    for y in range(OH):
        off = d0 + (y // 2) * pitch + (y % 2) * odd
        s = zero
        for q in range(OW):
            s += dst[uintp(off + q)]
        acc += s
    return acc


@helper
def _output_adjoint(D, Q, M, f, n):
    """M[:, f, t] = A dy_t A^T for the 2x2 tiles dy_t, t < n, of output-gradient planes loaded into D (2, 2w) by
    :func:`grad_plane` (even and odd rows, image i's tiles at i*L: pitch 2*TWp, odd rows at 2w); Q (2, 4, w) scratch.

    All the images of a chunk in one call: each row of M, D and Q taken here is a view, and a view costs two atomic
    reference-count updates (Numba's NRT): per image and filter they measured ~16% of a DeepConvNet step.
    """
    for a in range(2):  # dy A^T: row a of the tile, columns j
        da = D[a]
        q0 = Q[a, 0]
        q1 = Q[a, 1]
        q2 = Q[a, 2]
        q3 = Q[a, 3]
        for t in range(n):
            e = da[2 * t]
            od = da[2 * t + 1]
            q0[t] = e
            q1[t] = e + od
            q2[t] = e - od
            q3[t] = -od
    for j in range(4):  # A (dy A^T)
        u = Q[0, j]
        w = Q[1, j]
        d0 = M[j, f]
        d1 = M[4 + j, f]
        d2 = M[8 + j, f]
        d3 = M[12 + j, f]
        for t in range(n):
            a = u[t]
            b = w[t]
            d0[t] = a
            d1[t] = a + b
            d2[t] = a - b
            d3[t] = -b


@helper
def _input_adjoint(V, c, col, PH, PW, TH, TWp, E, O, qe, qo, dx):
    """dx (H, W) = sum over tiles of B dv_t B^T (dv_t = V[:, c, col + t]) at the tile's place, padding cut off."""
    L = TH * TWp
    LE = (TH + 1) * TWp
    for j in range(4):  # B dv: tile row th adds v0, v1 - v2 + v3, v1 + v2 - v0, -v3 to padded rows 2th..2th+3
        # tile row th's own rows (all but the last tile row's) and the rows it shares with tile row th - 1
        v0 = V[j, c, col:col + L]
        v1 = V[4 + j, c, col:col + L]
        v2 = V[8 + j, c, col:col + L]
        v3 = V[12 + j, c, col:col + L]
        e = E[j, :L]
        od = O[j, :L]
        for t in range(L):
            e[t] = v0[t]
            od[t] = v1[t] - v2[t] + v3[t]
        e_last = E[j, L:LE]
        od_last = O[j, L:LE]
        for t in range(TWp):
            e_last[t] = 0
            od_last[t] = 0
        e_below = E[j, TWp:LE]
        od_below = O[j, TWp:LE]
        for t in range(L):
            e_below[t] += v1[t] + v2[t] - v0[t]
            od_below[t] -= v3[t]
    for a in range(2):  # (B dv) B^T: tile f adds c0, c1 - c2 + c3, c1 + c2 - c0, -c3 to padded columns 2f..2f+3
        Z = E if a == 0 else O
        p = qe if a == 0 else qo
        c0 = Z[0]
        c1 = Z[1]
        c2 = Z[2]
        c3 = Z[3]
        p[0] = c0[0]
        p[1] = c1[0] - c2[0] + c3[0]
        for f in range(1, LE):
            p[2 * f] = c0[f] + c1[f - 1] + c2[f - 1] - c0[f - 1]
            p[2 * f + 1] = c1[f] - c2[f] + c3[f] - c3[f - 1]
    _from_halves(qe, qo, PH, PW, TWp, dx)


def chunking(N: int, m: int) -> tuple[int, int]:
    """(chunks, m'): N >= 1 images cut into a multiple of ``_CHUNK_MULTIPLE`` chunks (fewer only when N is smaller)
    of at most m' <= m images each, by :func:`chunk_span`."""
    chunks = -(-N // m)
    chunks = min(N, chunks + (-chunks) % _CHUNK_MULTIPLE)
    return chunks, -(-N // chunks)


@helper(inline=True)
def chunk_span(ch, chunks, N):
    """(n0, k): chunk ``ch`` of ``chunks`` is images n0 .. n0 + k - 1 of N; chunk sizes differ by at most one."""
    n0 = ch * N // chunks
    return n0, (ch + 1) * N // chunks - n0


@helper(inline=True)
def claim_chunk(counter, chunks, N):
    """(n0, k): the next chunk of images a slot takes (:func:`fastnn._jit.claim` on ``counter``), by
    :func:`chunk_span`; k = 0 once all ``chunks`` are taken (none is empty: :func:`chunking` makes at most N)."""
    ch = claim(counter)
    if ch >= chunks:
        return 0, 0
    return chunk_span(ch, chunks, N)


@helper(inline=True)
def _gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """c = op(a) @ op(b) + beta * c, row-major, through OpenBLAS (float32 or float64 by c's type): :func:`gemm` on
    the arrays' addresses."""
    gemm(trans_a, trans_b, m, n, k, a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc, c.itemsize)


@helper
def grad_products(Ms, Vs, VTs, U, dUg, cols, transposed, need_dx, beta):
    """A chunk's products of the backward, for every tile position xi (16 here, 36 in F(4x4, 3x3)'s):
    dUg[xi] (K, C) = Ms[xi] (K, cols) @ Vs[xi] (C, cols)^T + beta * dUg[xi] (beta 0: a group's first chunk, no
    zeroing; 1: add), through VTs (cols, C), Vs[xi]^T copied, when ``transposed`` (:data:`_TRANSPOSED_DU`); then
    with ``need_dx``, Vs[xi] = U[xi]^T (C, K) @ Ms[xi]. Ms and Vs have rows ``Ms.shape[2]`` apart; OpenBLAS runs
    single-threaded in this (Numba) thread."""
    K, C, w = U.shape[1], U.shape[2], Ms.shape[2]
    before = set_threads_local(1)
    for xi in range(Vs.shape[0]):
        if transposed:
            Vx = Vs[xi]
            for t in range(cols):
                for c in range(C):
                    VTs[t, c] = Vx[c, t]
            b, ldb, trans_b = VTs, C, False
        else:
            b, ldb, trans_b = Vs[xi], w, True
        _gemm(False, trans_b, K, C, cols, Ms[xi], w, b, ldb, beta, dUg[xi], C)  # one call site: compiled once
    if need_dx:
        for xi in range(Vs.shape[0]):
            _gemm(True, False, C, cols, K, U[xi], C, Ms[xi], w, 0.0, Vs[xi], w)
    set_threads_local(before)


# ---------------------------------------------------------------------------------------------------------------
# Kernels: a chunk of images per iteration, on the running thread's scratch.
#
# The scratch has one slot per thread of the launch (``Kernel.threads``); each body runs one slot, which takes a
# fixed share of the chunks, and ``SlotKernel.run`` runs the slots on as many threads (see ``fastnn._jit``: that
# spares compiling a ``prange`` twin, the costliest compilation of a first run). ``numba.get_thread_id()`` is no
# way to find a thread's slot: a kernel that contains it, loaded from the on-disk cache, crashes (SIGSEGV,
# measured) even when the call is not reached.


@slot_kernel("window")
def _forward(slot, x, U, b, out, argmax, V, M, PH, PW, TH, TWp, chunks, relu, pool, zero):
    """out (N, K, OH, OW) = conv(x (N, C, H, W), filters with transforms U (16, K, C)) + b (K,), through ReLU
    when ``relu``; with ``pool``, out (N, K, OH // 2, OW // 2) and argmax are its 2x2 stride-2 max-pool instead
    (the full-size output is never written).

    V (S, 16, C, w), M (S, 16, K, w) with w >= m*L (m: the largest of the :func:`chunk_span` chunks): the scratch
    of each of S slots; slot s takes chunks s, s + S, ...
    """
    N, C = x.shape[0], x.shape[1]
    K = U.shape[1]
    w = V.shape[3]
    L = TH * TWp
    LE = (TH + 1) * TWp
    S = V.shape[0]
    pe = np.zeros(2 * LE + 4, dtype=x.dtype)
    po = np.zeros(2 * LE + 4, dtype=x.dtype)
    E = np.empty((4, LE), dtype=x.dtype)
    O = np.empty((4, LE), dtype=x.dtype)
    P = np.empty((2, 4, w), dtype=x.dtype)
    Y = np.empty((2, 2 * w), dtype=x.dtype)
    Vs = V[slot]
    Ms = M[slot]
    for ch in range(slot, chunks, S):
        n0, k = chunk_span(ch, chunks, N)
        for i in range(k):
            for c in range(C):
                _input_transform(x[n0 + i, c], PH, PW, TH, TWp, pe, po, E, O, Vs, c, i * L)
        before = set_threads_local(1)
        for xi in range(16):
            _gemm(False, False, K, k * L, C, U[xi], C, Vs[xi], w, 0.0, Ms[xi], w)
        set_threads_local(before)
        for f in range(K):
            _output_tiles(Ms, f, k * L, b[f], relu, zero, P, Y)
            for i in range(k):
                Yi = Y[:, 2 * i * L:2 * (i + 1) * L]
                if pool:
                    _pool_tiles(Yi, TWp, out[n0 + i, f], argmax[n0 + i, f])
                else:
                    _from_halves(Yi[0], Yi[1], 0, 0, TWp, out[n0 + i, f])


@slot_kernel("window")
def _backward(slot, x, dout, out, argmax, U, dU, dbp, dx, V, M, VT, PH, PW, TH, TWp, OH, OW, chunks, need_dx,
              mode, zero):
    """dU[g] (16, K, C) = sum of dM @ V^T over chunks g, g + G, ... (G = len(dU)); dbp (N, K) = per-plane sums
    of the output gradient; dx when need_dx. The output gradient is ``dout`` itself, or that of a ReLU (and a
    max-pool) applied after the convolution (``mode`` 1 and 2, with ``out`` and ``argmax``: see
    :func:`grad_plane`). V, M: each
    slot's scratch, as in :func:`_forward`; slot s takes groups s, s + S, ...

    The G partial sums are fixed by the shapes, not by the thread count, so results are the same bits with any
    number of threads. VT (S, w, C), or (S, 0, C) when not wanted: each slot's scratch for V[xi]^T
    (:data:`_TRANSPOSED_DU`).
    """
    N, C = x.shape[0], x.shape[1]
    K = U.shape[1]
    G, S, w = dU.shape[0], V.shape[0], V.shape[3]
    L = TH * TWp
    LE = (TH + 1) * TWp
    pe = np.zeros(2 * LE + 4, dtype=x.dtype)
    po = np.zeros(2 * LE + 4, dtype=x.dtype)
    E = np.empty((4, LE), dtype=x.dtype)
    O = np.empty((4, LE), dtype=x.dtype)
    D = np.zeros((2, 2 * w), dtype=x.dtype)  # zero outside the data, which grad_plane writes at the same places
    Df = D.reshape(-1)
    Q = np.empty((2, 4, w), dtype=x.dtype)
    qe = np.empty(2 * LE, dtype=x.dtype)
    qo = np.empty(2 * LE, dtype=x.dtype)
    Vs = V[slot]
    Ms = M[slot]
    VTs = VT[slot]
    transposed = VTs.shape[0] > 0
    for g in range(slot, G, S):
        dUg = dU[g]
        dUg[:] = 0
        for ch in range(g, chunks, G):
            n0, k = chunk_span(ch, chunks, N)
            for f in range(K):
                for i in range(k):  # the gradient planes (_to_halves of them), and their sums on the way
                    dbp[n0 + i, f] = grad_plane(dout, out, argmax, n0 + i, f, mode, zero, OH, OW, Df, 2 * i * L,
                                                2 * TWp, 2 * w)
                _output_adjoint(D, Q, Ms, f, k * L)
            for i in range(k):
                for c in range(C):
                    _input_transform(x[n0 + i, c], PH, PW, TH, TWp, pe, po, E, O, Vs, c, i * L)
            grad_products(Ms, Vs, VTs, U, dUg, k * L, transposed, need_dx, 1.0)
            if need_dx:
                for i in range(k):
                    for c in range(C):
                        _input_adjoint(Vs, c, i * L, PH, PW, TH, TWp, E, O, qe, qo, dx[n0 + i, c])


# ---------------------------------------------------------------------------------------------------------------
# Entry points (called by fastnn.kernels.conv after validation)


def _tiles(g: WindowGeometry) -> tuple[int, int]:
    return (g.OH + 1) // 2, (g.OW + 1) // 2 + 1


def _schedule(knl: Kernel, g: WindowGeometry, K: int, dtype: np.dtype,
              ws: dict) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of chunks (:func:`chunking`) and each thread's scratch V (threads, 16, C, m*L), M (threads, 16, K, m*L)
    for chunks of at most m images."""
    TH, TWp = _tiles(g)
    L = TH * TWp
    per_image = 16 * (g.C + K) * L * np.dtype(dtype).itemsize
    chunks, m = chunking(g.N, max(1, min(g.N, _SLOT_BYTES // per_image)))
    work = g.N * (g.C * g.H * g.W + K * g.OH * g.OW) * 4
    threads = knl.threads(work)
    V = buffer(ws, "winograd.V", threads * 16 * g.C * m * L, dtype).reshape(threads, 16, g.C, m * L)
    M = buffer(ws, "winograd.M", threads * 16 * K * m * L, dtype).reshape(threads, 16, K, m * L)
    return chunks, V, M


#: G (x) G (16, 9): row 4i + j, column 3r + b holds G[i, r] G[j, b], so ``U[4i + j] = sum (G (x) G)[4i + j, q] g_q``
#: over the nine taps q of a filter, and its adjoint the transpose.
_GG = np.kron(_G, _G)

#: Multiply-adds per product in the filter transforms (``GG.size`` per filter pair): within OpenBLAS's threshold for
#: running on the calling thread, so its pool (which would spin against the slot threads) never wakes.
_PRODUCT_MADDS = 65536 * 4


def _filter_transform(W: np.ndarray, GG: np.ndarray = _GG) -> np.ndarray:
    """U (T, K, C) = G g G^T for every filter g = W[k, c] (3x3): ``(G (x) G) @ W9^T`` over the K*C pairs, in
    products of at most ``_PRODUCT_MADDS // GG.size`` pairs (``GG`` (16, 9) here, (36, 9) for
    :mod:`fastnn.kernels.winograd43`) written straight into U. One product with every
    coefficient (zeros too: a non-finite tap makes the pair's whole transform non-finite) where two 2-D products,
    their reshapes and a transposing copy took 0.18 ms on 64 x 64 filters (now ~0.03 ms; a DeepConvNet layer's
    forward and backward each pay it, on one thread between the parallel passes)."""
    K, C = W.shape[:2]
    W9 = W.reshape(K * C, 9)
    T = GG.shape[0]
    GG = GG.astype(W.dtype)
    U = np.empty((T, K * C), dtype=W.dtype)
    step = _PRODUCT_MADDS // GG.size
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite filters stay so, silently
        for p in range(0, K * C, step):
            q = min(K * C, p + step)
            np.matmul(GG, W9[p:q].T, out=U[:, p:q])
    return U.reshape(T, K, C)


def _filter_adjoint(dU: np.ndarray, GG: np.ndarray = _GG) -> np.ndarray:
    """dW (K, C, 3, 3) = G^T du G for every (filter, channel) pair's du = dU[:, k, c] (T = 16 or 36 = GG.shape[0]):
    ``dU^T @ (G (x) G)``, in products as :func:`_filter_transform` (0.23 -> ~0.04 ms on 64 x 64 filters)."""
    T, K, C = dU.shape
    dU2 = dU.reshape(T, K * C)
    GG = GG.astype(dU.dtype)
    dW = np.empty((K * C, 9), dtype=dU.dtype)
    step = _PRODUCT_MADDS // GG.size
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite gradients stay so, silently
        for p in range(0, K * C, step):
            q = min(K * C, p + step)
            np.matmul(dU2[:, p:q].T, GG, out=dW[p:q])
    return dW.reshape(K, C, 3, 3)


def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, g: WindowGeometry, ws: dict, *, relu: bool = False,
            pool: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Convolution output (N, K, OH, OW) for validated, same-dtype arrays; ``ws`` holds the scratch. ``relu``:
    through ReLU; ``pool`` (with ``relu``): ``(out, argmax)`` of the 2x2 stride-2 max-pool of that instead."""
    K = W.shape[0]
    x = np.ascontiguousarray(x)
    out, argmax = outputs(g, K, x.dtype, pool)
    chunks, V, M = _schedule(_forward, g, K, x.dtype, ws)
    TH, TWp = _tiles(g)
    _forward.run(len(V), x, _filter_transform(W), np.ascontiguousarray(b), out, argmax, V, M, g.PH, g.PW, TH, TWp,
                 chunks, relu, pool, x.dtype.type(0))
    return (out, argmax) if pool else out


def outputs(g: WindowGeometry, K: int, dtype: np.dtype, pool: bool) -> tuple[np.ndarray, np.ndarray]:
    """The fused forward kernels' out and argmax: (N, K, OH // 2, OW // 2) each when ``pool``, else the
    convolution's (N, K, OH, OW) and an argmax that is never read but indexed per plane."""
    if pool:
        out = np.empty((g.N, K, g.OH // 2, g.OW // 2), dtype=dtype)
        return out, np.empty(out.shape, dtype=np.uint8)
    return np.empty((g.N, K, g.OH, g.OW), dtype=dtype), np.zeros((g.N, K, 1, 1), dtype=np.uint8)


def gradient_source(dout: np.ndarray, out: np.ndarray | None, argmax: np.ndarray | None,
                    K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(dout, out, argmax, mode) as the backward kernels take them (:func:`grad_plane`): mode 0 without ``out``, 1
    with the ReLU output ``out``, 2 with also the 2x2 max-pool's ``argmax`` (then ``dout`` and ``out`` pooled);
    C-contiguous, and a (N, K, 1, 1) uint8 argmax that is never read when there is none (one compiled type)."""
    mode = 0 if out is None else 1 if argmax is None else 2
    dout = np.ascontiguousarray(dout)
    out = dout if out is None else np.ascontiguousarray(out)
    argmax = np.zeros((dout.shape[0], K, 1, 1), dtype=np.uint8) if argmax is None else np.ascontiguousarray(argmax)
    return dout, out, argmax, mode


def backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, g: WindowGeometry, ws: dict, need_dx: bool,
             out: np.ndarray | None = None,
             argmax: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(dx or None, dW, db) for validated, same-dtype arrays; ``ws`` holds the scratch. With ``out`` (the ReLU
    output), ``dout`` is the gradient after a ReLU; with also ``argmax`` (uint8), ``dout`` and ``out`` are those
    of a 2x2 stride-2 max-pool after the ReLU, and ``argmax`` its window offsets."""
    K = W.shape[0]
    x = np.ascontiguousarray(x)
    dout, out, argmax, mode = gradient_source(dout, out, argmax, K)
    chunks, V, M = _schedule(_backward, g, K, x.dtype, ws)
    TH, TWp = _tiles(g)
    groups = max(1, min(chunks, _GROUPS, _GROUP_BYTES // (16 * K * g.C * x.itemsize)))
    dU = np.empty((groups, 16, K, g.C), dtype=x.dtype)
    S, w = V.shape[0], V.shape[3]
    wT = w if K * g.C >= _TRANSPOSED_DU else 0
    VT = buffer(ws, "winograd.VT", S * wT * g.C, x.dtype).reshape(S, wT, g.C)
    dbp = np.empty((g.N, K), dtype=x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else np.empty((1, 1, 1, 1), dtype=x.dtype)
    _backward.run(len(V), x, dout, out, argmax, _filter_transform(W), dU, dbp, dx, V, M, VT, g.PH, g.PW, TH, TWp, g.OH,
                  g.OW, chunks, need_dx, mode, x.dtype.type(0))
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite gradients stay so, silently (as the adjoint)
        dW = _filter_adjoint(dU.sum(axis=0))
        db = dbp.sum(axis=0)
    return (dx if need_dx else None), dW, db
