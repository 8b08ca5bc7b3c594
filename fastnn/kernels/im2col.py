"""im2col and col2im: compiled, parallel, padding skipped rather than materialised.

Two layouts of the same matrix:

* the public one of Deep Learning from Scratch ``common/util.py``: ``col`` (N*OH*OW, C*FH*FW), rows
  ``(n, oh, ow)``, columns ``(c, fh, fw)``;
* the *column* matrix the convolution kernels multiply by, ``col[(c, kh, kw), (n, oh, ow)]`` of shape
  (C*FH*FW, N*OH*OW) (``W2 @ col`` holds sample n's NCHW planes in its columns n*OH*OW ...).

Both are walked with :func:`~fastnn.kernels._window.window_span`, the one source of the window arithmetic.
``_im2col_planes`` gives each ``(n, c)`` input plane to one thread and, per window offset ``(kh, kw)`` and output
row, copies the in-bounds run (:func:`~fastnn.kernels._window.offset_span`) and zeroes the rest; it accepts any
strides, so the convolution hands it chunks of its column buffer. ``_col2im_planes`` is its adjoint over the
same iteration; as each input plane belongs to one thread, overlapping windows add up without races or
per-thread buffers, and the public col2im runs it through the strided view ``col.reshape(N*OH*OW, CK).T``. The
public im2col has its own row-order body (``_im2col_rows``: one thread per output row ``(n, oh)``, ``window_span``
on both axes), because writing the DLFS matrix through the strided view stores C*FH*FW elements apart and measured
1.3x (C=1) to 6x (C=3, 7x7) slower single-threaded.

Measured (2 shared cores, float32, 3x3 pad 1 on 16x16 images, best of 200 calls): the parallel twin overtakes
the serial one at about 1-2e4 written elements for im2col and col2im (9216: 3.8 vs 3.5 us; 36864: 14 vs 8 us;
590k: 225 vs 102 us), and at about 3e4 for the bias/transpose passes of :mod:`fastnn.kernels.conv`; so the
"window" threshold ``config.PARALLEL_MIN_WORK["window"] = 2**15`` fits. Casting the inner indices to unsigned
(``uintp``) made the copies ~3.5x faster: Numba's negative-index fix-up otherwise keeps them scalar.
"""

from __future__ import annotations

import numpy as np
from numba import prange, uintp

from .. import _checks, _validate
from .._jit import helper, kernel
from .._validate import WindowGeometry
from ._window import offset_span, window_span

__all__ = ["col2im", "im2col"]


@helper
def unfold_plane(xp, col, r0, c0, FH, FW, SH, SW, PH, PW, OH, OW):
    """col[r0 + (kh, kw), c0 + (oh, ow)] = the zero-padded plane xp (H, W) at (oh*SH + kh - PH, ow*SW + kw - PW):
    one input plane's FH*FW rows of the column matrix ``col`` (2-D, any strides).

    The block is addressed by offsets into ``col`` rather than passed as a view: a view sliced in both dimensions
    is typed non-contiguous, and so are its rows, whose stores then stay scalar; rows of a C-contiguous ``col`` are
    contiguous (measured 2x on SimpleConvNet's 5x5 unfold).
    """
    H, W = xp.shape
    for kh in range(FH):
        for kw in range(FW):
            crow = col[r0 + kh * FW + kw]
            ow0, ow1 = offset_span(kw, SW, PW, W, OW)
            shift = kw - PW
            for oh in range(OH):
                start, k0, k1 = window_span(oh, SH, PH, FH, H)
                base = c0 + oh * OW
                # Indices are cast to unsigned: they are never negative here, and Numba then skips its
                # negative-index wraparound, which otherwise blocks vectorisation (measured 3.5x on copies).
                if kh < k0 or kh >= k1:
                    for ow in range(OW):
                        crow[uintp(base + ow)] = 0
                    continue
                # xp indexed in two dimensions, not through a view of its row: every view costs two atomic
                # reference-count updates (Numba's NRT), ~20% of a SimpleConvNet step at one view per output row
                y = uintp(start + kh)
                for ow in range(ow0):
                    crow[uintp(base + ow)] = 0
                if SW == 1:
                    for ow in range(ow0, ow1):
                        crow[uintp(base + ow)] = xp[y, uintp(ow + shift)]
                else:
                    for ow in range(ow0, ow1):
                        crow[uintp(base + ow)] = xp[y, uintp(ow * SW + shift)]
                for ow in range(ow1, OW):
                    crow[uintp(base + ow)] = 0


@helper
def fold_plane(col, r0, c0, plane, FH, FW, SH, SW, PH, PW, OH, OW):
    """plane (H, W) = the sum over windows of col[r0 + (kh, kw), c0 + (oh, ow)] at their input positions: the
    adjoint of :func:`unfold_plane` (plane fully overwritten)."""
    H, W = plane.shape
    plane[:] = 0
    for kh in range(FH):
        for kw in range(FW):
            crow = col[r0 + kh * FW + kw]
            ow0, ow1 = offset_span(kw, SW, PW, W, OW)
            shift = kw - PW
            for oh in range(OH):
                start, k0, k1 = window_span(oh, SH, PH, FH, H)
                if kh < k0 or kh >= k1:
                    continue
                y = uintp(start + kh)  # no row view: see unfold_plane
                base = c0 + oh * OW
                if SW == 1:
                    for ow in range(ow0, ow1):
                        plane[y, uintp(ow + shift)] += crow[uintp(base + ow)]
                else:
                    for ow in range(ow0, ow1):
                        plane[y, uintp(ow * SW + shift)] += crow[uintp(base + ow)]


@kernel("window")
def _im2col_planes(x, col, FH, FW, SH, SW, PH, PW, OH, OW):
    """col[(c, kh, kw), (n, oh, ow)] = x_pad[n, c, oh*SH + kh - PH, ow*SW + kw - PW] (zero in the padding).

    x (N, C, H, W), col (C*FH*FW, N*OH*OW), any strides (rows of a C-contiguous ``col`` vectorise: unfold_plane).
    """
    N, C = x.shape[0], x.shape[1]
    K = FH * FW
    P = OH * OW
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        unfold_plane(x[n, c], col, c * K, n * P, FH, FW, SH, SW, PH, PW, OH, OW)


@kernel("window")
def _im2col_rows(x, col, FH, FW, SH, SW, PH, PW, OH, OW):
    """col[(n, oh, ow), (c, kh, kw)] = x_pad[n, c, oh*SH + kh - PH, ow*SW + kw - PW]; col C-contiguous 2-D.

    The DLFS row layout written row by row: each thread owns output rows ``(n, oh, *)``, and each row is
    written front to back. (Writing it through the per-sample column view instead strides by C*FH*FW
    elements between stores and measured 2-3x slower for C=64.)
    """
    N, C, H, W = x.shape
    for t in prange(N * OH):
        n = t // OH
        oh = t - n * OH
        hs, kh0, kh1 = window_span(oh, SH, PH, FH, H)
        for ow in range(OW):
            ws, kw0, kw1 = window_span(ow, SW, PW, FW, W)
            kw0 = min(kw0, FW)  # a window wholly in the padding has an empty span with k0 up to the pad
            kw1 = max(kw1, kw0)
            row = col[t * OW + ow]
            for c in range(C):
                for kh in range(FH):
                    r0 = (c * FH + kh) * FW
                    if kh < kh0 or kh >= kh1:
                        for kw in range(FW):
                            row[uintp(r0 + kw)] = 0
                        continue
                    xrow = x[n, c, hs + kh]
                    for kw in range(kw0):
                        row[uintp(r0 + kw)] = 0
                    for kw in range(kw0, kw1):
                        row[uintp(r0 + kw)] = xrow[uintp(ws + kw)]
                    for kw in range(kw1, FW):
                        row[uintp(r0 + kw)] = 0


@kernel("window")
def _col2im_planes(col, dx, FH, FW, SH, SW, PH, PW, OH, OW):
    """dx[n, c] = sum over windows of col[(c, kh, kw), (n, oh, ow)] at their input positions (the adjoint).

    col (C*FH*FW, N*OH*OW), dx (N, C, H, W) fully overwritten; any strides.
    """
    N, C = dx.shape[0], dx.shape[1]
    K = FH * FW
    P = OH * OW
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        fold_plane(col, c * K, n * P, dx[n, c], FH, FW, SH, SW, PH, PW, OH, OW)


def im2col_into(x: np.ndarray, col: np.ndarray, g: WindowGeometry) -> None:
    """Unfold validated ``x`` into ``col`` (C*FH*FW, N*OH*OW), any strides (internal)."""
    if col.size:
        _im2col_planes.run(col.size, x, col, g.FH, g.FW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW)


def col2im_into(col: np.ndarray, dx: np.ndarray, g: WindowGeometry) -> None:
    """Fold ``col`` (C*FH*FW, N*OH*OW), any strides, into ``dx`` (N, C, H, W), overwriting it (internal)."""
    if dx.size:
        _col2im_planes.run(max(col.size, dx.size), col, dx, g.FH, g.FW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW)


def im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int | tuple[int, int] = 1,
           pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Parallel over output rows ``(n, oh)`` (``_im2col_rows``, each row written front to back); padding is skipped,
    never materialised, and ``x`` may have any strides. The result is C-contiguous. Replaces the twin's loop of
    ``FH*FW`` strided copies of the padded input.
    """
    x, _ = _checks.check_im2col("im2col", x, filter_h, filter_w, stride, pad)
    return _im2col(x, filter_h, filter_w, stride, pad)


def _im2col(x: np.ndarray, filter_h: int, filter_w: int, stride: int | tuple[int, int] = 1,
            pad: int | tuple[int, int] = 0) -> np.ndarray:
    g = _validate.geometry(x.shape, filter_h, filter_w, stride, pad)
    ck, ohw = g.C * g.FH * g.FW, g.OH * g.OW
    col = np.empty((g.N * ohw, ck), dtype=x.dtype)
    if col.size:
        _im2col_rows.run(col.size, x, col, g.FH, g.FW, g.SH, g.SW, g.PH, g.PW, g.OH, g.OW)
    return col


def col2im(col: np.ndarray, input_shape: tuple[int, int, int, int], filter_h: int, filter_w: int,
           stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0) -> np.ndarray:
    """Parallel over input planes ``(n, c)``: each belongs to one thread, so overlapping windows add up without races
    or per-thread buffers. ``col`` may have any strides; the result is C-contiguous.
    """
    col, _ = _checks.check_col2im("col2im", col, input_shape, filter_h, filter_w, stride, pad)
    return _col2im(col, input_shape, filter_h, filter_w, stride, pad)


def _col2im(col: np.ndarray, input_shape: tuple[int, int, int, int], filter_h: int, filter_w: int,
            stride: int | tuple[int, int] = 1, pad: int | tuple[int, int] = 0) -> np.ndarray:
    g = _validate.geometry(input_shape, filter_h, filter_w, stride, pad)
    ck, ohw = g.C * g.FH * g.FW, g.OH * g.OW
    dx = np.empty((g.N, g.C, g.H, g.W), dtype=col.dtype)
    if not dx.size:
        return dx
    col2im_into(col.reshape(g.N * ohw, ck).T, dx, g)
    return dx
