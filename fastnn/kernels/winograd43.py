"""3x3 stride-1 convolution by Winograd's F(4x4, 3x3): the forward pass, its transforms and constants.

The math (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016, interpolation points 0, +-1,
+-2). Each 4x4 block of outputs of one filter ``g`` (3x3) on one channel comes from the 6x6 input tile ``d`` under
it as

.. math::

    Y = A^T \\big[ (G g G^T) \\odot (B^T d B) \\big] A, \\qquad
    B^T = \\begin{bmatrix} 4&0&-5&0&1&0 \\\\ 0&-4&-4&1&1&0 \\\\ 0&4&-4&-1&1&0 \\\\ 0&-2&-1&2&1&0 \\\\
    0&2&-1&-2&1&0 \\\\ 0&4&0&-5&0&1 \\end{bmatrix},\\;
    G = \\begin{bmatrix} \\tfrac14&0&0 \\\\ -\\tfrac16&-\\tfrac16&-\\tfrac16 \\\\ -\\tfrac16&\\tfrac16&-\\tfrac16 \\\\
    \\tfrac1{24}&\\tfrac1{12}&\\tfrac16 \\\\ \\tfrac1{24}&-\\tfrac1{12}&\\tfrac16 \\\\ 0&0&1 \\end{bmatrix},\\;
    A^T = \\begin{bmatrix} 1&1&1&1&1&0 \\\\ 0&1&-1&2&-2&0 \\\\ 0&1&1&4&4&0 \\\\ 0&1&-1&8&-8&1 \\end{bmatrix}.

Summed over channels, the 36 element-wise products become 36 matrix products, one per position ``xi = 6i + j``
of the 6x6 transformed tile: ``M[xi] (K, tiles) = U[xi] (K, C) @ V[xi] (C, tiles)``, ``U = G g G^T``,
``V = B^T d B``: 36 * K * C multiplications per 4x4 outputs (2.25 per output) where F(2x2, 3x3)
(:mod:`fastnn.kernels.winograd`) takes 16 per 2x2 (4 per output) and the direct sum 9.

Precision. The transforms' coefficients reach 5 (``B``), 8 (``A``) and 1/6, 1/24 (``G``, not exact in binary), so
rounding is larger than F(2x2, 3x3)'s (whose 0, +-1, +-1/2 keep the direct sum's level, 3e-7 of the output's
magnitude in float32). Measured against a float64 direct convolution, float32, max error over the output /
the output's max magnitude, on DeepConvNet's five layers (N=8, He-scaled filters): 3.0e-6 - 8.6e-6 (F(2x2, 3x3)
1.7e-7 - 3.6e-7, im2col 3.8e-7 - 6.9e-7); float64: ~5e-15 (F(2x2, 3x3) ~3e-16). Hence float32 only
(:data:`_DTYPES`; float64, the dtype of gradient checks, keeps F(2x2, 3x3)). The convolution kernel tests'
float32 tolerance (2e-5 of the output's magnitude) holds; ``tests/layers/test_twins.py`` compares element-wise
and counts the convolution layer among its looser float32 cases (rtol 1e-4, atol 1e-5).

Ties: outputs that the direct sum computes exactly equal -- integer-valued data (why float64 stays on F(2x2,
3x3)), or outputs that see only padding (pads of 3 or more) -- come out here with rounding from the rest of their
tile, so a 2x2 max-pool over them may pick another (equally valued) argmax than pooling the direct sum.

Special values: an output that is not finite (NaN, +-inf, or an overflow in the transforms) sends the call to
F(2x2, 3x3), which keeps non-finite outputs where the direct sum has them; here a NaN or inf would spread over
its whole 4x4 tile. Finding it costs one multiply-add per output (:func:`_output_tiles`).

Tiling. ``TH = ceil(OH / 4)`` rows of tiles, ``TW = ceil(OW / 4)`` tiles per row, ``L = TH * TW`` an image, no
spare tile (F(2x2, 3x3) keeps one per row; here it would waste a third of an 8x8 plane's work): the input
transform copies the two columns and rows that neighbouring tiles share twice (:func:`input_transform`), so that
every loop runs flat over a chunk's tiles.

Schedule: that of :mod:`fastnn.kernels.winograd` (its :func:`~fastnn.kernels.winograd.chunking`, slot kernels,
single-threaded OpenBLAS products per chunk), with 36 products per chunk. The backward pass
(:mod:`fastnn.kernels.winograd43_grad`, chosen independently) recomputes V with :func:`input_transform`,
:func:`filter_transform` and the constants here. :data:`fastnn.config.CONV_WINOGRAD43` (environment
``FASTNN_CONV_WINOGRAD43=0``) turns this forward off; :func:`chosen` says which shapes take it.
"""

from __future__ import annotations

import numpy as np
from numba import uintp

from .. import config
from .._jit import helper, slot_kernel
from .._validate import WindowGeometry
from . import winograd
from ._blas import set_threads_local
from ._simd import lanes, load_part, splat, store_part
from ._workspace import buffer
from .pooling import _beats
from .winograd import _gemm, chunking, claim_chunk

__all__ = ["AT", "BT", "G", "GG", "PAIRS", "chosen", "constants", "filter_transform", "forward", "input_transform",
           "scratch_shapes", "tiles", "transformed"]

#: B^T (6, 6): V = B^T d B for an input tile d (6, 6).
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
#: G (6, 3): U = G g G^T for a filter g (3, 3).
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
#: A^T (4, 6): Y = A^T m A for a transformed product tile m (6, 6).
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
              dtype=np.float64)
#: G (x) G (36, 9): row 6i + j, column 3r + b holds G[i, r] G[j, b], so ``U[6i + j] = sum_q GG[6i + j, q] g_q``.
GG = np.kron(G, G)

#: F(4x4, 3x3) takes a forward pass when its products per image (36 per 4x4 tile) are at most this fraction of
#: F(2x2, 3x3)'s (16 per 2x2 tile, a spare tile per row): measurements in :func:`chosen`.
_WORK_RATIO = 0.7

#: The dtypes that take F(4x4, 3x3): float32 only. float64 is where fastnn is used for accuracy (gradient checks,
#: twins' comparisons), and F(2x2, 3x3) keeps its results exact for integer-valued data (coefficients 0, +-1,
#: +-1/2), so that max-pool ties pick the direct sum's argmax; 1/6 and 1/24 here do not.
_DTYPES = (np.dtype(np.float32),)

#: F(2x2, 3x3)'s forward, which takes a call whose output is not all finite (bound here: a spy on
#: ``winograd.forward`` counts the dispatches of :mod:`fastnn.kernels.conv`, not this).
_forward23 = winograd.forward


def tiles(g: WindowGeometry) -> tuple[int, int]:
    """(TH, TW): rows of 4x4 output tiles and tiles per row."""
    return (g.OH + 3) // 4, (g.OW + 3) // 4


@helper
def scratch_shapes(m, TH, TW):
    """Shapes of :func:`input_transform`'s per-thread scratch for chunks of up to m images: ``pads`` (6, 4n + 2)
    and ``ends`` (6, 2 * m * TH * (TW + 1)), n = m * TH * TW (allocate both zeroed: only the data positions are ever
    written, the same ones for every channel of a geometry). The kernels that call it size their scratch by it."""
    n = m * TH * TW
    return (6, 4 * n + 2), (6, 2 * m * TH * (TW + 1))


def constants(dtype: np.dtype) -> np.ndarray:
    """The transforms' integer coefficients (2, 4, 5, 8) as an array of ``dtype``: kernels multiply by its
    elements, so float32 math stays float32 (an integer literal would promote it)."""
    return np.array([2, 4, 5, 8], dtype=dtype)


#: The column transform's flags (:data:`fastnn.config.FASTMATH_IN_ORDER`): with ``reassoc`` and ``contract``, LLVM
#: rounded its fused multiply-adds differently in a first run's copy and the cached one (README, Robustness;
#: measured: a float32 F(4x4, 3x3) forward differed in the last bit between a cold and a warm cache).
_EXACT = config.FASTMATH_IN_ORDER


@helper(fastmath=_EXACT)
def _column_row(p, z0, z1, z2, z3, z4, z5, n, k2, k4, k5):
    """z_j[f] = (u B)[j] for tiles f < n - 1 of one row u of B^T d held as :func:`input_transform`'s ``pads[a]`` (p),
    each tile's columns 4, 5 read as the next tile's 0, 1 (wrong at the end of a row of tiles: the caller redoes
    those tiles).

    Those two are carried from one iteration to the next (a recurrence LLVM vectorises with a lane shift), so the
    loop reads p as one stride-4 group: ``p[4f + 4]`` read directly made a second group of gathers, and copying
    them to a packed array first cost more than the transform (below). Alone, not in the caller: a loop that
    shares its function with other uses of these variables was not vectorised ("value ... used outside the
    loop"). Measured, one row of 196 tiles, one thread: 146 ns (132 ns reading a packed copy, which took ~250 ns
    to make)."""
    r0 = p[0]
    r1 = p[1]
    r2 = p[2]
    r3 = p[3]
    for g in range(1, n):
        d4 = p[4 * g]
        d5 = p[4 * g + 1]
        c2 = p[4 * g + 2]
        c3 = p[4 * g + 3]
        f = g - 1
        z0[f], z1[f], z2[f], z3[f], z4[f], z5[f] = _b6t(r0, r1, r2, r3, d4, d5, k2, k4, k5)
        r0 = d4
        r1 = d5
        r2 = c2
        r3 = c3


@helper(fastmath=_EXACT)
def _column_transform(pads, ends, V, c, n, R, TW, tail, zeros, k):
    """V[6a + j, c, f] = (u_a B)[j] for the n tiles f (R rows of TW) of :func:`input_transform`'s rows ``pads``
    (``u_a = (B^T d)[a]`` of each tile, padded columns as :func:`input_transform` lays them out), the last tile of
    each row of tiles with its columns 4, 5 from ``ends[a, tail + 2r:]``; with ``zeros`` (those columns and each
    row's first two are padding, so the zeros read in their place are right) only the last tile's.

    A helper of its own, not inlined in Numba's IR: compiled apart, LLVM vectorises the loop over the tiles before
    inlining it, and inside the kernel's body it did not. Measured, one thread, this step over a DeepConvNet batch's
    16x28x28 input: 0.80 ms inlined, 0.35 ms apart.
    """
    k2 = k[0]
    k4 = k[1]
    k5 = k[2]
    cu = uintp(c)
    for a in range(6):  # (u B): the six columns of tile f of each row a of B^T d
        p = pads[a]
        e = ends[a]
        z0 = V[6 * a, cu]
        z1 = V[6 * a + 1, cu]
        z2 = V[6 * a + 2, cu]
        z3 = V[6 * a + 3, cu]
        z4 = V[6 * a + 4, cu]
        z5 = V[6 * a + 5, cu]
        _column_row(p, z0, z1, z2, z3, z4, z5, n, k2, k4, k5)
        for r in range(R - 1 if zeros else 0, R):  # each row's last tile: its columns 4, 5 are padded 4 TW, 4 TW + 1
            f = uintp(r * TW + TW - 1)
            g = uintp(tail + 2 * r)
            z0[f], z1[f], z2[f], z3[f], z4[f], z5[f] = _b6t(p[4 * f], p[4 * f + 1], p[4 * f + 2], p[4 * f + 3],
                                                             e[g], e[g + 1], k2, k4, k5)


@helper(fastmath=_EXACT)
def _b6t(d0, d1, d2, d3, d4, d5, k2, k4, k5):
    """B^T d for one column d of six, scalars or vectors (:mod:`fastnn.kernels._simd`): B^T's rows, in order; k2,
    k4, k5: 2, 4, 5 in d's type."""
    s42 = d4 - d2
    s31 = d3 - d1
    return (k4 * d0 - k5 * d2 + d4, (d3 + d4) - k4 * (d1 + d2), (d4 - d3) + k4 * (d1 - d2), s42 + k2 * s31,
            s42 - k2 * s31, k4 * d1 - k5 * d3 + d5)


@helper(inline=True)
def input_transform(x, n0, m, c, PH, PW, TH, TW, pads, ends, V, k):
    """V[6i + j, c, s*L + t] = (B^T d B)[i, j] for the L = TH*TW tiles d (6, 6) of channel c of images n0 + s,
    s < m: tile t = th*TW + tw at padded rows 4th..4th+5, columns 4tw..4tw+5 of the plane shifted by PH rows and
    PW columns into zeros.

    ``(B^T d) B``, a chunk's planes of one channel at once. First B^T along each row of tiles' six padded rows,
    read straight from x as explicit vectors along the row (:mod:`fastnn.kernels._simd`; rows outside the plane are
    zeros): row a of B^T d of every tile of tile row r lands where :func:`_column_transform` reads it,
    ``pads[a, 4 * (r * TW + tw) + b]`` for the tile's columns b < 4 and ``ends[a, tail + 2r + e]`` for padded
    columns 4 TW + e (e < 2). Then :func:`_column_transform` takes B along the columns in flat loops over all n =
    m*L tiles (an 8x8 plane has four) and writes V. Measured, one thread, the whole transform of a DeepConvNet
    batch's layer inputs (16x28x28, 16x14x14, 32x14x14 pad 2, 32x8x8, 64x8x8; min of 11): 1.23, 0.51, 0.93, 0.40,
    0.91 ms when it copied the padded rows into ``pads`` (rows 4 and 5 of a tile row copied again as the next one's
    0 and 1), took B along the columns into scratch, then B^T along the rows into V; 0.92, 0.38, 0.64, 0.34, 0.80
    this way (the rows of B^T d are the copies, and V is written once).

    Parameters
    ----------
    x : (N, C, H, W) float32 or float64, C-contiguous.
    n0, m, c : int
        The images n0 .. n0 + m - 1, channel c.
    PH, PW, TH, TW : int
        Padding and tiling (:func:`tiles`).
    pads, ends : scratch of :func:`scratch_shapes` for chunks of M >= m images (the same M on every call that
        shares them), x's dtype, zero outside the data.
    V : (36, C, w) of x's dtype, w >= m * L; channel c's first m * L columns are written.
    k : :func:`constants` of x's dtype.
    """
    k2 = k[0]
    k4 = k[1]
    k5 = k[2]
    zero = k2 - k2
    N, C, H, W = x.shape
    rows = x.reshape((N * C * H, W))
    width = lanes(pads)
    none = splat(zero)  # a row of padding
    P4 = 4 * TW
    inner = min(W, P4 - PW)  # the data columns left of padded column 4 * TW
    R = m * TH
    tail = ends.shape[1] // (TW + 1) * TW  # where padded columns 4 * TW, 4 * TW + 1 of each row are kept
    q0 = P4 - PW  # the data columns at padded columns 4 * TW, 4 * TW + 1 (if within the plane)
    last = (0 <= q0 + 1 < W) + (0 <= q0 < W)
    for s in range(m):
        plane = ((n0 + s) * C + c) * H
        for th in range(TH):
            r = s * TH + th
            y = 4 * th - PH  # the tile row's padded row a is data row y + a
            in0 = 0 <= y < H
            in1 = 0 <= y + 1 < H
            in2 = 0 <= y + 2 < H
            in3 = 0 <= y + 3 < H
            in4 = 0 <= y + 4 < H
            in5 = 0 <= y + 5 < H
            off = r * P4 + PW
            for q in range(0, inner, width):
                n = min(width, inner - q)
                u0, u1, u2, u3, u4, u5 = _b6t(load_part(rows, plane + y, q, n, zero) if in0 else none,
                                              load_part(rows, plane + y + 1, q, n, zero) if in1 else none,
                                              load_part(rows, plane + y + 2, q, n, zero) if in2 else none,
                                              load_part(rows, plane + y + 3, q, n, zero) if in3 else none,
                                              load_part(rows, plane + y + 4, q, n, zero) if in4 else none,
                                              load_part(rows, plane + y + 5, q, n, zero) if in5 else none,
                                              k2, k4, k5)
                store_part(pads, 0, off + q, u0, n)
                store_part(pads, 1, off + q, u1, n)
                store_part(pads, 2, off + q, u2, n)
                store_part(pads, 3, off + q, u3, n)
                store_part(pads, 4, off + q, u4, n)
                store_part(pads, 5, off + q, u5, n)
            for e in range(last):  # padded columns 4 * TW, 4 * TW + 1, kept in ends (the second only with the first)
                q = q0 + e
                g = tail + 2 * r + e
                ends[0, g], ends[1, g], ends[2, g], ends[3, g], ends[4, g], ends[5, g] = _b6t(
                    rows[plane + y, q] if in0 else zero, rows[plane + y + 1, q] if in1 else zero,
                    rows[plane + y + 2, q] if in2 else zero, rows[plane + y + 3, q] if in3 else zero,
                    rows[plane + y + 4, q] if in4 else zero, rows[plane + y + 5, q] if in5 else zero, k2, k4, k5)
    zeros = PW >= 2 and last == 0  # padded columns 0, 1, 4 TW and 4 TW + 1 all padding
    _column_transform(pads, ends, V, c, m * TH * TW, R, TW, tail, zeros, k)  # (B^T d) B


@helper
def _output_tiles(M, f, n, bias, relu, zero, k, P, Y):
    """Y (4, 4w): output rows 4th + a of the tiles A^T m_t A + bias (m_t = M[:, f, t], t < n) in ``Y[a]``, tile t's
    columns at 4t..4t+3, each through ReLU when ``relu`` (``max(y, 0)``, NaN kept: the test is ``y < 0``);
    P (4, 6, w) scratch. Image i's output plane is ``Y[:, 4 * i * L:]`` (L tiles an image, pitch 4 * TW).
    Returns the sum of ``0 * y`` over these outputs before the ReLU: NaN when any is not finite, else zero.
    """
    k2 = k[0]
    k4 = k[1]
    k8 = k[3]
    for j in range(6):  # A^T m: output row a of every tile, column j of the transform (views: one per chunk)
        r0 = M[j, f]
        r1 = M[6 + j, f]
        r2 = M[12 + j, f]
        r3 = M[18 + j, f]
        r4 = M[24 + j, f]
        r5 = M[30 + j, f]
        p0 = P[0, j]
        p1 = P[1, j]
        p2 = P[2, j]
        p3 = P[3, j]
        for t in range(n):
            m0 = r0[t]
            m1 = r1[t]
            m2 = r2[t]
            m3 = r3[t]
            m4 = r4[t]
            m5 = r5[t]
            s12 = m1 + m2
            d12 = m1 - m2
            s34 = m3 + m4
            d34 = m3 - m4
            p0[t] = m0 + s12 + s34
            p1[t] = d12 + k2 * d34
            p2[t] = s12 + k4 * s34
            p3[t] = d12 + k8 * d34 + m5
    bad = zero
    for a in range(4):  # (A^T m) A: output columns 4t..4t+3 of output row 4th + a
        ya = Y[a]
        q0 = P[a, 0]
        q1 = P[a, 1]
        q2 = P[a, 2]
        q3 = P[a, 3]
        q4 = P[a, 4]
        q5 = P[a, 5]
        for t in range(n):
            m0 = q0[t]
            m1 = q1[t]
            m2 = q2[t]
            m3 = q3[t]
            m4 = q4[t]
            m5 = q5[t]
            s12 = m1 + m2
            d12 = m1 - m2
            s34 = m3 + m4
            d34 = m3 - m4
            y0 = m0 + s12 + s34 + bias
            y1 = d12 + k2 * d34 + bias
            y2 = s12 + k4 * s34 + bias
            y3 = d12 + k8 * d34 + m5 + bias
            bad += (y0 + y1 + y2 + y3) * zero  # not y - y: the fastmath flags let LLVM fold that to 0 (measured)
            if relu:
                y0 = zero if y0 < 0 else y0
                y1 = zero if y1 < 0 else y1
                y2 = zero if y2 < 0 else y2
                y3 = zero if y3 < 0 else y3
            ya[4 * t] = y0
            ya[4 * t + 1] = y1
            ya[4 * t + 2] = y2
            ya[4 * t + 3] = y3
    return bad


@helper
def _from_quarters(Y, y0, TW, out, n, f):
    """out[n, f] (OH, OW) = the output rows held in Y (4, ...) from column y0 on: row y at ``Y[y % 4, y0 + (y // 4) *
    4 * TW:]``. Indexed whole: a view per plane or row costs two atomic reference-count updates."""
    OH, OW = out.shape[2], out.shape[3]
    P4 = 4 * TW
    n = uintp(n)
    f = uintp(f)
    for y in range(OH):
        src = y0 + (y // 4) * P4
        a = uintp(y % 4)
        r = uintp(y)
        for q in range(OW):
            out[n, f, r, uintp(q)] = Y[a, uintp(src + q)]


@helper
def _pool_quarters(Y, y0, TW, out, argmax, n, f):
    """out[n, f] (OH // 2, OW // 2) = 2x2 stride-2 max-pool of the output plane in Y (as :func:`_from_quarters`
    reads it), argmax[n, f] the window offsets; each 4x4 tile holds four whole windows. The max-pool kernel's rule
    (:func:`fastnn.kernels.pooling._beats`, as :func:`fastnn.kernels.pooling._max4`), so values and indices are those
    of pooling the written plane.

    Views per row, indexed from zero: LLVM vectorises the loop over the windows then, and not with the indices
    offset by a run-time start (``Y[a, uintp(src + 2 * px)]``, which it cannot prove free of wraparound). Measured,
    one thread, a DeepConvNet batch's pools (16x28x28, 32x16x16, 64x8x8 outputs): 1.28, 0.87, 0.50 ms with
    offset indices, 0.66, 0.30, 0.34 ms with the views, whose reference counts cost far less than the scalar loop
    (3x faster in isolation at 28x28 and 16x16, 1.8x at 8x8). Not so for plain copies (:func:`_from_quarters`,
    the input adjoint's rows): views per row measured slower there.
    """
    POH, POW = out.shape[2], out.shape[3]
    P4 = 4 * TW
    for py in range(POH):
        src = y0 + (py // 2) * P4
        a = 2 * (py % 2)
        top = Y[a, src:src + 2 * POW]
        bottom = Y[a + 1, src:src + 2 * POW]
        o = out[n, f, py]
        am = argmax[n, f, py]
        for px in range(POW):
            va = top[2 * px]
            vb = top[2 * px + 1]
            vc = bottom[2 * px]
            vd = bottom[2 * px + 1]
            t_top = _beats(vb, va)
            m_top = vb if t_top else va
            t_bottom = _beats(vd, vc)
            m_bottom = vd if t_bottom else vc
            t = _beats(m_bottom, m_top)
            o[px] = m_bottom if t else m_top
            am[px] = np.uint8(2 + t_bottom) if t else np.uint8(t_top)


@slot_kernel("window", claims=True)
def _forward(slot, x, U, b, out, argmax, V, M, bad, PH, PW, TH, TW, chunks, relu, pool, k, counter):
    """out (N, K, OH, OW) = conv(x (N, C, H, W), filters with transforms U (36, K, C)) + b (K,), through ReLU
    when ``relu``; with ``pool``, out (N, K, OH // 2, OW // 2) and argmax are its 2x2 stride-2 max-pool instead.

    V (S, 36, C, w), M (S, 36, K, w) with w >= m*L (m: the largest chunk): each of S slots' scratch. The slots take
    the chunks as they come (:func:`fastnn._jit.claim` on ``counter``, (1,) int64 zero): a chunk's outputs are the
    same whichever slot computes it, and a slot that starts late or runs on a busier core takes fewer. Measured, a
    DeepConvNet step on two threads (another process busy on this machine), slot 0 ran 1.9-2x as long as slot 1
    in each forward with chunks s, s + S, ... taken in turn. bad (S,): NaN in a slot whose outputs (before ReLU
    and pooling) were not all finite, else zero.
    """
    N, C = x.shape[0], x.shape[1]
    K = U.shape[1]
    w = V.shape[3]
    L = TH * TW
    zero = k[0] - k[0]
    pad_shape, end_shape = scratch_shapes(w // L, TH, TW)
    pads = np.zeros(pad_shape, dtype=x.dtype)
    ends = np.zeros(end_shape, dtype=x.dtype)
    P = np.empty((4, 6, w), dtype=x.dtype)
    Y = np.empty((4, 4 * w), dtype=x.dtype)
    Vs = V[slot]
    Ms = M[slot]
    nonfinite = zero
    while True:
        n0, m = claim_chunk(counter, chunks, N)
        if m == 0:
            break
        for c in range(C):
            input_transform(x, n0, m, c, PH, PW, TH, TW, pads, ends, Vs, k)
        before = set_threads_local(1)
        for xi in range(36):
            _gemm(False, False, K, m * L, C, U[xi], C, Vs[xi], w, 0.0, Ms[xi], w)
        set_threads_local(before)
        for f in range(K):
            nonfinite += _output_tiles(Ms, f, m * L, b[f], relu, zero, k, P, Y)
            for i in range(m):
                if pool:
                    _pool_quarters(Y, 4 * i * L, TW, out, argmax, n0 + i, f)
                else:
                    _from_quarters(Y, 4 * i * L, TW, out, n0 + i, f)
    bad[slot] = nonfinite


def chosen(g: WindowGeometry, K: int, dtype: np.dtype) -> bool:
    """Whether a 3x3 stride-1 convolution that :func:`fastnn.kernels.winograd.applies` to runs its forward pass in
    F(4x4, 3x3): :data:`fastnn.config.CONV_WINOGRAD43`, a dtype of :data:`_DTYPES` and an output plane that its
    4x4 tiles cover without much waste (:data:`_WORK_RATIO`). Keyed on shapes only, never the thread count, so
    results do not depend on it.

    Measured, forward with ReLU alone, one thread, float32, min of 15, busy machine (ms, F(2x2,3x3) -> F(4x4,3x3)):
    N=32, pad 1, C->K 3->8 / 8->8 / 32->32 / 128->128: 4x4 outputs (work ratio 0.38) 0.033 -> 0.034,
    0.044 -> 0.043, 0.22 -> 0.16, 1.62 -> 1.25; 5x5 (0.75) 0.042 -> 0.040, 0.063 -> 0.053, 0.34 -> 0.29,
    2.69 -> 2.94; 6x6 (0.75) 0.044 -> 0.044, 0.064 -> 0.062, 0.36 -> 0.31, 2.69 -> 3.17; 8x8 (0.45) 0.055 -> 0.041,
    0.094 -> 0.070, 0.51 -> 0.34, 4.59 -> 3.25; 12x12 (0.48) 0.095 -> 0.074, 0.135 -> 0.116, 0.82 -> 0.60,
    9.06 -> 6.88; 32x32 (0.53) 0.44 -> 0.38, 0.67 -> 0.66, 6.45 -> 4.48, 49.8 -> 36.5. DeepConvNet's layers
    (N=100, with their pools): 16->16 28x28 (0.53) 4.73 -> 4.28, 16->32 14x14 (0.64) 1.90 -> 1.83, 32->32 16x16
    (0.5) 4.13 -> 3.02, 32->64 8x8 2.44 -> 1.42, 64->64 8x8 4.49 -> 2.67.
    """
    if not (config.CONV_WINOGRAD43 and np.dtype(dtype) in _DTYPES):
        return False
    TH, TW = tiles(g)
    return 36 * TH * TW <= _WORK_RATIO * 16 * ((g.OH + 1) // 2) * ((g.OW + 1) // 2 + 1)


#: (filter, channel) pairs per block of the compiled filter transforms (:func:`_transform_filters`,
#: ``winograd43_grad._group_adjoint``): a block's rows (27 or 54 of them) stay in L2 beside the filters, and the
#: row views cost a few per block.
PAIRS = 1024


@helper(fastmath=_EXACT)
def _transform_filters(W9, Gm, U2):
    """U2[6i + j, p] = (G g_p G^T)[i, j] for the n filters g_p = W9[9p:9p + 9] (taps row-major, W9 flat), p < n;
    Gm: G (6, 3) in W9's dtype. Returns the sum of ``0 * tap`` over the taps: NaN when W9 is not all finite, else zero.

    ``G g`` then ``(G g) G^T``, each a loop over a block of :data:`PAIRS` pairs per row of the result (LLVM
    vectorises those), every coefficient multiplied, zeros included, so that a non-finite tap makes its pair's
    whole transform non-finite, as the dense product ``GG @ g`` did. ``_EXACT`` flags: the same bits from a cold
    and a warm cache. Measured, one thread, float32 (us, the dense product by OpenBLAS in blocks -> this):
    16 x 16 filters 7.4 -> 4.8, 32 x 32 26 -> 11.6, 64 x 64 115 -> 38 (one block's copy of the taps, indexed
    ``W9[p0 + p, q]`` in 2-D, alone took 77 us at 64 x 64: LLVM left it scalar).
    """
    n = W9.shape[0] // 9
    zero = Gm[0, 0] - Gm[0, 0]
    WT = np.empty((9, PAIRS), dtype=W9.dtype)
    T = np.empty((18, PAIRS), dtype=W9.dtype)
    acc = np.zeros(PAIRS, dtype=W9.dtype)  # 0 * tap, per lane: a sum over the lanes would not vectorise
    for p0 in range(0, n, PAIRS):
        m = min(PAIRS, n - p0)
        for q in range(9):  # the block's taps, tap-major (flat indices: LLVM vectorises the strided loads)
            wq = WT[q]
            for p in range(m):
                wq[p] = W9[uintp(9 * (p0 + p) + q)]
        for b in range(3):  # T[3i + b] = sum_r G[i, r] g[r, b]
            w0 = WT[b]
            w1 = WT[3 + b]
            w2 = WT[6 + b]
            for p in range(m):
                acc[p] += w0[p] * zero + w1[p] * zero + w2[p] * zero
            for i in range(6):
                a0 = Gm[i, 0]
                a1 = Gm[i, 1]
                a2 = Gm[i, 2]
                t = T[3 * i + b]
                for p in range(m):
                    t[p] = a0 * w0[p] + a1 * w1[p] + a2 * w2[p]
        for i in range(6):  # U[6i + j] = sum_b T[3i + b] G[j, b]
            t0 = T[3 * i]
            t1 = T[3 * i + 1]
            t2 = T[3 * i + 2]
            for j in range(6):
                c0 = Gm[j, 0]
                c1 = Gm[j, 1]
                c2 = Gm[j, 2]
                u = U2[6 * i + j, p0:p0 + m]
                for p in range(m):
                    u[p] = t0[p] * c0 + t1[p] * c1 + t2[p] * c2
    bad = zero
    for p in range(min(n, PAIRS)):
        bad += acc[p]
    return bad


def transformed(W: np.ndarray, ws: dict | None = None) -> tuple[np.ndarray, bool]:
    """(U, finite): U (36, K, C) = G g G^T of every filter g = W[k, c] (3x3), W (K, C, 3, 3) float32 or float64
    (:func:`_transform_filters`), and whether W is all finite (so is U then; a non-finite tap makes its pair's
    whole transform non-finite).

    With a layer's workspace ``ws``, the last U is kept there with W's bytes, and returned again while W holds the
    same bytes: the backward pass after a forward on the same filters (W compared bit for bit, so an edit in
    between, a NaN or a signed zero included, recomputes). Read-only for callers. Measured, DeepConvNet's five
    layers, the backward's transforms 0.35 ms of a 26 ms step (two threads, on the calling thread while the other
    core idles), against ~0.02 ms per layer for the bytes and their comparison.
    """
    key = None
    if ws is not None:
        key = (W.shape, W.dtype.str, W.tobytes())
        kept = ws.get("winograd43.U")
        if kept is not None and kept[0] == key:
            return kept[1], kept[2]
    K, C = W.shape[:2]
    U = np.empty((36, K, C), dtype=W.dtype)
    finite = not np.isnan(_transform_filters(np.ascontiguousarray(W).reshape(-1), G.astype(W.dtype),
                                             U.reshape(36, K * C)))
    if ws is not None:
        ws["winograd43.U"] = (key, U, finite)
    return U, finite


def filter_transform(W: np.ndarray, ws: dict | None = None) -> np.ndarray:
    """U (36, K, C) = G g G^T of every filter g = W[k, c] (3x3), W (K, C, 3, 3) float32 or float64: the first of
    :func:`transformed`'s results (kept in ``ws`` the same way)."""
    return transformed(W, ws)[0]


def _schedule(g: WindowGeometry, K: int, dtype: np.dtype, ws: dict) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of chunks and each thread's scratch V (threads, 36, C, m*L), M (threads, 36, K, m*L), as
    :func:`fastnn.kernels.winograd._schedule`."""
    TH, TW = tiles(g)
    L = TH * TW
    per_image = 36 * (g.C + K) * L * np.dtype(dtype).itemsize
    chunks, m = chunking(g.N, max(1, min(g.N, winograd._SLOT_BYTES // per_image)))
    threads = _forward.threads(g.N * (g.C * g.H * g.W + K * g.OH * g.OW) * 4)
    V = buffer(ws, "winograd43.V", threads * 36 * g.C * m * L, dtype).reshape(threads, 36, g.C, m * L)
    M = buffer(ws, "winograd43.M", threads * 36 * K * m * L, dtype).reshape(threads, 36, K, m * L)
    return chunks, V, M


def forward(x: np.ndarray, W: np.ndarray, b: np.ndarray, g: WindowGeometry, ws: dict, *, relu: bool = False,
            pool: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """As :func:`fastnn.kernels.winograd.forward` (validated, same-dtype arrays; the same outputs and fused
    epilogues), in F(4x4, 3x3)."""
    K = W.shape[0]
    x = np.ascontiguousarray(x)
    out, argmax = winograd.outputs(g, K, x.dtype, pool)
    chunks, V, M = _schedule(g, K, x.dtype, ws)
    TH, TW = tiles(g)
    bad = np.zeros(len(V), dtype=x.dtype)  # a slot skipped by SlotKernel.run (claims) leaves its zero
    _forward.run(len(V), x, filter_transform(W, ws), np.ascontiguousarray(b), out, argmax, V, M, bad, g.PH, g.PW, TH,
                 TW, chunks, relu, pool, constants(x.dtype), np.zeros(1, dtype=np.int64))
    if np.isnan(bad).any():  # a non-finite output: F(2x2, 3x3) places those as the direct sum does (docstring)
        return _forward23(x, W, b, g, ws, relu=relu, pool=pool)
    return (out, argmax) if pool else out
