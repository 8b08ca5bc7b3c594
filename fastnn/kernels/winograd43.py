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
float32 rounding is larger than F(2x2, 3x3)'s (3e-7 of the output's magnitude): measured against a float64 direct
convolution, max error 1e-6 - 2e-6 of the output's magnitude on DeepConvNet's layers (``tests/kernels/
test_winograd.py::test_float32_error_of_f43``); all the existing float32 tolerances of the convolution tests hold.

Tiling. ``TH = ceil(OH / 4)`` rows of tiles, ``TWp = ceil(OW / 4) + 1`` tiles per row: as in
:mod:`fastnn.kernels.winograd`, one spare tile per row makes every row of tiles, and every image, one flat run
(its outputs are dropped). The zero-padded plane is split by row modulo 4 (``pads[a]`` holds padded rows
``4s + a``, pitch ``4 * TWp``), so tile row ``th`` reads rows ``th`` of ``pads[0..3]`` and ``th + 1`` of
``pads[0..1]``.

Schedule: that of :mod:`fastnn.kernels.winograd` (its :func:`~fastnn.kernels.winograd.chunking`, slot kernels,
single-threaded OpenBLAS products per chunk), with 36 products per chunk. The backward pass stays
F(2x2, 3x3)'s for now; :func:`input_transform`, :func:`filter_transform` and the constants here are the pieces a
backward pass in F(4x4, 3x3) recomputes V with. :data:`fastnn.config.CONV_WINOGRAD43` (environment
``FASTNN_CONV_WINOGRAD43=0``) turns this forward off; :func:`chosen` says which shapes take it.
"""

from __future__ import annotations

import numpy as np

from .. import config
from .._jit import helper, slot_kernel
from .._validate import WindowGeometry
from . import winograd
from ._blas import set_threads_local
from ._workspace import buffer
from .pooling import _max4
from .winograd import _gemm, chunk_span, chunking

__all__ = ["AT", "BT", "G", "GG", "chosen", "constants", "filter_transform", "forward", "input_transform",
           "scratch_shapes", "tiles"]

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

#: Output planes (OH * OW) from which F(4x4, 3x3) is the faster forward (measurements: :func:`chosen`).
_MIN_OUTPUTS = 16

#: The dtypes that take F(4x4, 3x3): float32 only. float64 is where fastnn is used for accuracy (gradient checks,
#: twins' comparisons), and F(2x2, 3x3) keeps its results exact for integer-valued data (coefficients 0, +-1,
#: +-1/2), so that max-pool ties pick the direct sum's argmax; 1/6 and 1/24 here do not.
_DTYPES = (np.dtype(np.float32),)

#: F(2x2, 3x3)'s forward, which takes a call whose output is not all finite (bound here: a spy on
#: ``winograd.forward`` counts the dispatches of :mod:`fastnn.kernels.conv`, not this).
_forward23 = winograd.forward


def tiles(g: WindowGeometry) -> tuple[int, int]:
    """(TH, TWp): rows of 4x4 output tiles and tiles per row, one spare (module docstring)."""
    return (g.OH + 3) // 4, (g.OW + 3) // 4 + 1


def scratch_shapes(TH: int, TWp: int) -> tuple[tuple[int, int], tuple[int, int, int]]:
    """Shapes of :func:`input_transform`'s per-thread scratch: ``pads`` (4, 4 * (TH + 1) * TWp + 8) (allocate it
    zeroed: only the data positions are ever written, the same ones for every plane of a geometry) and ``Z``
    (4, 6, (TH + 1) * TWp)."""
    LE = (TH + 1) * TWp
    return (4, 4 * LE + 8), (4, 6, LE)


def constants(dtype: np.dtype) -> np.ndarray:
    """The transforms' integer coefficients (2, 4, 5, 8) as an array of ``dtype``: kernels multiply by its
    elements, so float32 math stays float32 (an integer literal would promote it)."""
    return np.array([2, 4, 5, 8], dtype=dtype)


@helper(inline=True)
def input_transform(plane, PH, PW, TH, TWp, pads, Z, V, c, col, k):
    """V[6i + j, c, col + t] = (B^T d_t B)[i, j] for the L = TH*TWp tiles d_t (6, 6) of one input plane (H, W),
    tile t = th*TWp + tw at padded rows 4th..4th+5, columns 4tw..4tw+5 (the plane shifted by PH rows and PW columns
    into zeros); tw = TWp - 1 is the spare tile.

    Parameters
    ----------
    plane : (H, W) float32 or float64, any strides.
    PH, PW, TH, TWp : int
        Padding and tiling (:func:`tiles`).
    pads, Z : scratch of :func:`scratch_shapes`, the plane's dtype; ``pads`` zero outside the data.
    V : (36, C, w) of the plane's dtype, w >= col + L; channel ``c``, columns ``col .. col + L - 1`` are written.
    k : :func:`constants` of the plane's dtype.
    """
    k2 = k[0]
    k4 = k[1]
    k5 = k[2]
    H, W = plane.shape
    P4 = 4 * TWp
    for y in range(H):
        r = y + PH
        dst = pads[r % 4]
        off = (r // 4) * P4 + PW
        src = plane[y]
        for q in range(W):
            dst[off + q] = src[q]
    LE = (TH + 1) * TWp
    for a in range(4):  # d B: the six columns of tile f of each padded row from padded columns 4f..4f+5
        p = pads[a]
        for f in range(LE):
            d0 = p[4 * f]
            d1 = p[4 * f + 1]
            d2 = p[4 * f + 2]
            d3 = p[4 * f + 3]
            d4 = p[4 * f + 4]
            d5 = p[4 * f + 5]
            s42 = d4 - d2
            s31 = d3 - d1
            Z[a, 0, f] = k4 * d0 - k5 * d2 + d4
            Z[a, 1, f] = (d3 + d4) - k4 * (d1 + d2)
            Z[a, 2, f] = (d4 - d3) + k4 * (d1 - d2)
            Z[a, 3, f] = s42 + k2 * s31
            Z[a, 4, f] = s42 - k2 * s31
            Z[a, 5, f] = k4 * d1 - k5 * d3 + d5
    L = TH * TWp
    for j in range(6):  # B^T (d B): rows 4th..4th+5 are Z[0..3] at tile t and Z[0..1] at tile t + TWp
        for t in range(L):
            d0 = Z[0, j, t]
            d1 = Z[1, j, t]
            d2 = Z[2, j, t]
            d3 = Z[3, j, t]
            d4 = Z[0, j, t + TWp]
            d5 = Z[1, j, t + TWp]
            s42 = d4 - d2
            s31 = d3 - d1
            V[j, c, col + t] = k4 * d0 - k5 * d2 + d4
            V[6 + j, c, col + t] = (d3 + d4) - k4 * (d1 + d2)
            V[12 + j, c, col + t] = (d4 - d3) + k4 * (d1 - d2)
            V[18 + j, c, col + t] = s42 + k2 * s31
            V[24 + j, c, col + t] = s42 - k2 * s31
            V[30 + j, c, col + t] = k4 * d1 - k5 * d3 + d5


@helper
def _output_tiles(M, f, n, bias, relu, zero, k, P, Y):
    """Y (4, 4w): output rows 4th + a of the tiles A^T m_t A + bias (m_t = M[:, f, t], t < n) in ``Y[a]``, tile t's
    columns at 4t..4t+3, each through ReLU when ``relu`` (``max(y, 0)``, NaN kept: the test is ``y < 0``);
    P (4, 6, w) scratch. Image i's output plane is ``Y[:, 4 * i * L:]`` (L tiles an image, pitch 4 * TWp).
    Returns the sum of ``0 * y`` over these outputs before the ReLU: NaN when any is not finite, else zero.
    """
    k2 = k[0]
    k4 = k[1]
    k8 = k[3]
    for j in range(6):  # A^T m: output row a of every tile, column j of the transform
        for t in range(n):
            m0 = M[j, f, t]
            m1 = M[6 + j, f, t]
            m2 = M[12 + j, f, t]
            m3 = M[18 + j, f, t]
            m4 = M[24 + j, f, t]
            m5 = M[30 + j, f, t]
            s12 = m1 + m2
            d12 = m1 - m2
            s34 = m3 + m4
            d34 = m3 - m4
            P[0, j, t] = m0 + s12 + s34
            P[1, j, t] = d12 + k2 * d34
            P[2, j, t] = s12 + k4 * s34
            P[3, j, t] = d12 + k8 * d34 + m5
    bad = zero
    for a in range(4):  # (A^T m) A: output columns 4t..4t+3 of output row 4th + a
        ya = Y[a]
        for t in range(n):
            m0 = P[a, 0, t]
            m1 = P[a, 1, t]
            m2 = P[a, 2, t]
            m3 = P[a, 3, t]
            m4 = P[a, 4, t]
            m5 = P[a, 5, t]
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
def _from_quarters(Y, y0, TWp, plane):
    """plane (OH, OW) = the output rows held in Y (4, ...) from column y0 on: row y at ``Y[y % 4, y0 + (y // 4) *
    4 * TWp:]``."""
    OH, OW = plane.shape
    P4 = 4 * TWp
    for y in range(OH):
        src = y0 + (y // 4) * P4
        a = y % 4
        dst = plane[y]
        for q in range(OW):
            dst[q] = Y[a, src + q]


@helper
def _pool_quarters(Y, y0, TWp, out, argmax):
    """out (OH // 2, OW // 2) = 2x2 stride-2 max-pool of the output plane in Y (as :func:`_from_quarters` reads it),
    argmax the window offsets; each 4x4 tile holds four whole windows. The max-pool kernel's rule
    (:func:`fastnn.kernels.pooling._max4`), so values and indices are those of pooling the written plane."""
    POH, POW = out.shape
    P4 = 4 * TWp
    for py in range(POH):
        src = y0 + (py // 2) * P4
        a = 2 * (py % 2)
        o = out[py]
        am = argmax[py]
        for px in range(POW):
            q = src + 2 * px
            o[px], am[px] = _max4(Y[a, q], Y[a, q + 1], Y[a + 1, q], Y[a + 1, q + 1])


@slot_kernel("window")
def _forward(slot, x, U, b, out, argmax, V, M, bad, PH, PW, TH, TWp, chunks, relu, pool, k):
    """out (N, K, OH, OW) = conv(x (N, C, H, W), filters with transforms U (36, K, C)) + b (K,), through ReLU
    when ``relu``; with ``pool``, out (N, K, OH // 2, OW // 2) and argmax are its 2x2 stride-2 max-pool instead.

    V (S, 36, C, w), M (S, 36, K, w) with w >= m*L (m: the largest chunk): each of S slots' scratch; slot s takes
    chunks s, s + S, ... (as :func:`fastnn.kernels.winograd._forward`). bad (S,): NaN in a slot whose outputs
    (before ReLU and pooling) were not all finite, else zero.
    """
    N, C = x.shape[0], x.shape[1]
    K = U.shape[1]
    w = V.shape[3]
    L = TH * TWp
    S = V.shape[0]
    zero = k[0] - k[0]
    LE = (TH + 1) * TWp
    pads = np.zeros((4, 4 * LE + 8), dtype=x.dtype)
    Z = np.empty((4, 6, LE), dtype=x.dtype)
    P = np.empty((4, 6, w), dtype=x.dtype)
    Y = np.empty((4, 4 * w), dtype=x.dtype)
    Vs = V[slot]
    Ms = M[slot]
    nonfinite = zero
    for ch in range(slot, chunks, S):
        n0, m = chunk_span(ch, chunks, N)
        for i in range(m):
            for c in range(C):
                input_transform(x[n0 + i, c], PH, PW, TH, TWp, pads, Z, Vs, c, i * L, k)
        before = set_threads_local(1)
        for xi in range(36):
            _gemm(False, False, K, m * L, C, U[xi], C, Vs[xi], w, 0.0, Ms[xi], w)
        set_threads_local(before)
        for f in range(K):
            nonfinite += _output_tiles(Ms, f, m * L, b[f], relu, zero, k, P, Y)
            for i in range(m):
                if pool:
                    _pool_quarters(Y, 4 * i * L, TWp, out[n0 + i, f], argmax[n0 + i, f])
                else:
                    _from_quarters(Y, 4 * i * L, TWp, out[n0 + i, f])
    bad[slot] = nonfinite


def chosen(g: WindowGeometry, K: int, dtype: np.dtype) -> bool:
    """Whether a 3x3 stride-1 convolution that :func:`fastnn.kernels.winograd.applies` to runs its forward pass in
    F(4x4, 3x3): :data:`fastnn.config.CONV_WINOGRAD43`, a dtype of :data:`_DTYPES` and a shape where it measured
    faster (keyed on shapes only, never the thread count, so results do not depend on it)."""
    return config.CONV_WINOGRAD43 and np.dtype(dtype) in _DTYPES and g.OH * g.OW >= _MIN_OUTPUTS


def filter_transform(W: np.ndarray) -> np.ndarray:
    """U (36, K, C) = G g G^T of every filter g = W[k, c] (3x3), W (K, C, 3, 3) float32 or float64: as
    :func:`fastnn.kernels.winograd._filter_transform` with :data:`GG`."""
    return winograd._filter_transform(W, GG)


def _schedule(g: WindowGeometry, K: int, dtype: np.dtype, ws: dict) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of chunks and each thread's scratch V (threads, 36, C, m*L), M (threads, 36, K, m*L), as
    :func:`fastnn.kernels.winograd._schedule`."""
    TH, TWp = tiles(g)
    L = TH * TWp
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
    TH, TWp = tiles(g)
    bad = np.empty(len(V), dtype=x.dtype)
    _forward.run(len(V), x, filter_transform(W), np.ascontiguousarray(b), out, argmax, V, M, bad, g.PH, g.PW, TH,
                 TWp, chunks, relu, pool, constants(x.dtype))
    if np.isnan(bad).any():  # a non-finite output: F(2x2, 3x3) places those as the direct sum does (docstring)
        return _forward23(x, W, b, g, ws, relu=relu, pool=pool)
    return (out, argmax) if pool else out
