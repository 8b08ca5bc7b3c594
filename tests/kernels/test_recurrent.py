"""Recurrent kernels (fastnn.kernels.recurrent) against their NumPy twins, and both against PyTorch.

The registry (tests/kernels/test_registry.py) covers the tiny size of every entry and variant; here: awkward
shapes (T=1, N=1, H odd, H cut into parts across threads), every LSTM layout and both GRU forms, non-contiguous
inputs, the final-cell gradient, the LSTM layouts and both GRU forms against torch with the weights permuted, and
bad input.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastnn
import fastnn.kernels as K
import fastnn.reference as R
from fastnn.kernels import _simd as simd
from fastnn.kernels._math import exp_nonpos_constants

from ..conftest import assert_close, with_one_and_two_threads

#: (N, T, D, H): batch 1, one step, H odd and below a vector's width, H over two parts of 64 units (the parallel
#: twin then cuts every step), D = 1.
SHAPES = [(1, 1, 3, 5), (3, 4, 1, 7), (2, 3, 5, 130), (4, 2, 6, 33)]
LAYOUTS = ("ifgo", "ifog", "fgio", "oigf")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _inputs(cell, shape, dtype, seed=0, noncontig=False):
    N, T, D, H = shape
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H

    def r(*s, scale=1.0):
        a = (rng.standard_normal(s) * scale).astype(dtype)
        if noncontig:  # a strided view of a larger array, with the same values
            big = np.zeros(tuple(2 * n for n in s), dtype)
            big[tuple(slice(None, None, 2) for _ in s)] = a
            a = big[tuple(slice(None, None, 2) for _ in s)]
            assert not a.flags.c_contiguous or a.size <= 1
        return a

    return {"x": r(N, T, D), "h0": r(N, H, scale=0.5), "c0": r(N, H), "Wx": r(D, G, scale=0.4),
            "Wh": r(H, G, scale=0.4), "b": r(G, scale=0.3), "bh": r(G, scale=0.3), "dhs": r(N, T, H),
            "dc_last": r(N, H)}


def _snapshot(d):
    return {k: v.copy() for k, v in d.items()}


def _same(fast, ref, dtype):
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref, strict=True):
        assert a.shape == b.shape
        assert_close(a, b, dtype, rtol=1e-4 if dtype == np.float32 else 1e-10,
                     atol=1e-5 if dtype == np.float32 else 1e-11)


def _untouched(d, before):
    for k, v in before.items():
        np.testing.assert_array_equal(d[k], v, err_msg=k)


@pytest.mark.parametrize("noncontig", [False, True], ids=["contig", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_rnn_matches_twin(shape, dtype, twin, noncontig):
    d = _inputs("rnn", shape, dtype, noncontig=noncontig)
    before = _snapshot(d)
    args = (d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])
    hs = K.rnn_forward(*args)
    ref = R.rnn_forward(*args)
    _same((hs,), (ref,), dtype)
    _same(K.rnn_backward(d["dhs"], *args[:4], ref), R.rnn_backward(d["dhs"], *args[:4], ref), dtype)
    _untouched(d, before)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lstm_matches_twin(shape, layout, dtype, twin):
    d = _inputs("lstm", shape, dtype, noncontig=layout == "oigf")
    before = _snapshot(d)
    args = (d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
    fast = K.lstm_forward(*args, layout=layout)
    ref = R.lstm_forward(*args, layout=layout)
    _same(fast, ref, dtype)
    for dc in (d["dc_last"], None):
        _same(K.lstm_backward(d["dhs"], dc, *args[:5], *ref, layout=layout),
              R.lstm_backward(d["dhs"], dc, *args[:5], *ref, layout=layout), dtype)
    _untouched(d, before)


@pytest.mark.parametrize("layout", ["ifgo", "fgio"])
def test_lstm_batch_cut_matches_twin(layout, dtype, twin):
    """A batch of 18 with a small Wh runs as two parts of 9 rows, each over all steps (concurrently under the
    parallel twin) with its own packed Wh in float32 (rows in blocks of 5 + 2 + 2, a partial panel at H = 45), and
    each projecting its rows before and taking their products after: the twin's numbers."""
    shape = (18, 2, 3, 45)
    d = _inputs("lstm", shape, dtype)
    args = (d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
    assert K.recurrent._row_parts(18, d["Wh"]).tolist() == [0, 9, 18]
    fast = K.lstm_forward(*args, layout=layout)
    ref = R.lstm_forward(*args, layout=layout)
    _same(fast, ref, dtype)
    back = K.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *ref, layout=layout)
    _same(back, R.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *ref, layout=layout), dtype)


def test_lstm_batch_cut_parts_give_one_part_bits(dtype, monkeypatch):
    """The small-Wh batch cut's two parts run concurrently (on the slot pool) or one after the other (under the
    serial twin's threshold) and give the same bits either way, the weight gradients' per-part sums included."""
    d = _inputs("lstm", (18, 3, 4, 45), dtype)
    args = (d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
    runs = []
    for work in ("0", "1000000000000"):
        monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", work)
        fwd = K.lstm_forward(*args)
        runs.append(fwd + K.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *fwd))
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("N", [8, 12])
def test_lstm_unit_cut_row_blocks_match_twin(N, dtype):
    """The unit cut's packed products (float32; float64 runs BLAS products) take rows in blocks of 5, 2 and 1,
    and a reduction longer than one block (K = 4H = 280 > 128 backward): 12 = 5 + 5 + 2 rows, 8 = 5 + 2 + 1; the
    backward's last panel (6 units) runs the one-vector tile for 10 rows (N = 12) or 5 (N = 8), the whole tile
    for the rest."""
    d = _inputs("lstm", (N, 2, 3, 70), dtype)
    args = (d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
    assert K.recurrent._row_parts(N, d["Wh"]).tolist() == [0, N]
    ref = R.lstm_forward(*args)
    _same(K.lstm_forward(*args), ref, dtype)
    _same(K.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *ref),
          R.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *ref), dtype)



@pytest.mark.parametrize("layout", ["ifgo", "fgio"])
def test_lstm_big_wh_batch_cut_gives_the_unit_cut_bits(layout, monkeypatch):
    """A Wh above a core's cache (H = 300, 1.4 MB) with the step's product on two threads cuts the batch (two parts
    of 9 rows, 5 + 4 each, over all steps, sharing one packed Wh) instead of the units; one thread runs the unit
    cut's parts in turn over all rows. The same bits either way, and the twin's numbers."""
    d = _inputs("lstm", (18, 3, 4, 300), np.float32)
    d["Wh"] *= np.float32(0.1)  # pre-activations of the scale the float32 tolerance is set for, over 300 units
    args = (d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "0")
    monkeypatch.setattr(K.recurrent._lstm_fwd_rows, "threads", lambda work: 2)
    assert K.recurrent._row_parts(18, d["Wh"]).tolist() == [0, 18]
    assert K.recurrent._big_row_parts(K.recurrent._lstm_fwd_rows, 18, 300, np.array([0, 150, 300])).tolist() == \
        [0, 9, 18]
    cut = K.lstm_forward(*args, layout=layout)
    cut_back = K.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *cut, layout=layout)
    fastnn.set_num_threads(1)
    for body in (K.recurrent._lstm_fwd_rows, K.recurrent._lstm_bwd_rows):
        monkeypatch.setattr(body, "threads", lambda work: 1)
    try:
        serial = K.lstm_forward(*args, layout=layout)
        serial_back = K.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *cut, layout=layout)
    finally:
        fastnn.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for a, b in zip(cut + cut_back, serial + serial_back, strict=True):
        np.testing.assert_array_equal(a, b)
    ref = R.lstm_forward(*args, layout=layout)
    _same(cut, ref, np.float32)
    _same(cut_back, R.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *ref, layout=layout), np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_results_do_not_depend_on_the_thread_count(cell, dtype, monkeypatch):
    """One thread runs the parts two threads would: the same BLAS calls, the same bits. The units are cut (H >= 128,
    every launch parallel), and at N20 H650 the products before and after the recurrence are cut too. Before the
    cut followed the machine's threads, the GRU (float32: shape (5, 4, 30, 200)) and every float64 kernel here
    differed in their last bits: OpenBLAS rounds a column by where it falls among a call's columns."""
    monkeypatch.setenv("FASTNN_PARALLEL_MIN_WORK", "0")
    shapes = [(5, 4, 30, 200), (3, 4, 7, 130)] + ([(20, 3, 650, 650)] if dtype == np.float64 else [])

    def run(shape):
        d = _inputs(cell, shape, dtype, seed=1)
        x, h0, c0, Wx, Wh, b, bh, dhs = (d[k] for k in ("x", "h0", "c0", "Wx", "Wh", "b", "bh", "dhs"))
        if cell == "rnn":
            hs = K.rnn_forward(x, h0, Wx, Wh, b)
            return (hs, *K.rnn_backward(dhs, x, h0, Wx, Wh, hs))
        if cell == "lstm":
            fwd = K.lstm_forward(x, h0, c0, Wx, Wh, b, layout="fgio")
            return (*fwd, *K.lstm_backward(dhs, d["dc_last"], x, h0, c0, Wx, Wh, *fwd, layout="fgio"))
        out = ()
        for form, bias in (("dlfs2", None), ("torch", bh)):
            fwd = K.gru_forward(x, h0, Wx, Wh, b, bias, form=form)
            out += (*fwd, *K.gru_backward(dhs, x, h0, Wx, Wh, *fwd, form=form))
        return out

    for shape in shapes:
        assert len(K.recurrent._parts(K.recurrent._rnn_fwd, shape[0], shape[3], 1)) == 3  # two unit parts
        one, two = with_one_and_two_threads(lambda shape=shape: run(shape))
        for i, (a, b) in enumerate(zip(one, two, strict=True)):
            np.testing.assert_array_equal(a, b, err_msg=f"{shape}, output {i}")


def test_lstm_scratch_is_never_returned(monkeypatch):
    """The backward's dA, packed Wh.T and h_{t-1} live in this thread's workspace between calls: a second call
    (other inputs) leaves the first call's results as they were, and a scratch array above the cap
    (_SCRATCH_MAX) is a fresh one with the same numbers."""
    results = []
    for seed in (0, 1):
        d = _inputs("lstm", (3, 4, 1, 7), np.float32, seed=seed)
        args = (d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
        fwd = K.lstm_forward(*args)
        back = K.lstm_backward(d["dhs"], d["dc_last"], *args[:5], *fwd)
        results.append((args, d["dhs"], d["dc_last"], fwd, [g.copy() for g in back], back))
    args, dhs, dc, fwd, copies, back = results[0]
    for kept, now in zip(copies, back, strict=True):
        np.testing.assert_array_equal(now, kept)
    monkeypatch.setattr(K.recurrent, "_SCRATCH_MAX", 0)
    for fresh, kept in zip(K.lstm_backward(dhs, dc, *args[:5], *fwd), copies, strict=True):
        np.testing.assert_array_equal(fresh, kept)


@numba.njit(cache=False)
def _gates_both_ways(x, vec, sca, one, ec, coefs):
    """Rows 0, 1 of vec/sca: sigmoid, tanh of x (one row of a vector's lanes) as a vector and element by element."""
    a = simd.load(x, 0, 0)
    simd.store(vec, 0, 0, K.recurrent._sigmoid(a, one, ec, coefs))
    simd.store(vec, 1, 0, K.recurrent._tanh(a, one, ec, coefs))
    for j in range(x.shape[1]):
        sca[0, j] = K.recurrent._sigmoid(x[0, j], one, ec, coefs)
        sca[1, j] = K.recurrent._tanh(x[0, j], one, ec, coefs)


def test_gate_nonlinearities_give_the_same_bits_on_vectors_and_scalars(dtype):
    """The LSTM's gate passes take sigmoid and tanh of explicit vectors, the RNN's and GRU's of scalars: the one
    body gives the same bits both ways, over the range where they saturate, at +-0, +-inf and NaN."""
    n = 64 // dtype.itemsize
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-60, 60, (500, n)), rng.standard_normal((500, n))]).astype(dtype)
    x[0, :6] = [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).tiny]
    consts = (dtype.type(1), *exp_nonpos_constants(dtype))
    got = np.empty((len(x), 2, n), dtype)
    for row, vec in zip(x, got, strict=True):
        sca = np.empty((2, n), dtype)
        _gates_both_ways(row[None], vec, sca, *consts)
        np.testing.assert_array_equal(vec.view(np.uint8), sca.view(np.uint8))
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        expected = np.stack([1 / (1 + np.exp(-x64)), np.tanh(x64)], axis=1).astype(dtype)
    assert_close(got[1:], expected[1:])


@pytest.mark.parametrize("form", ["dlfs2", "torch"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gru_matches_twin(shape, form, dtype, twin):
    d = _inputs("gru", shape, dtype, noncontig=shape[3] == 33)
    before = _snapshot(d)
    args = (d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])
    bh = d["bh"] if form == "torch" else None
    fast = K.gru_forward(*args, bh, form=form)
    ref = R.gru_forward(*args, bh, form=form)
    _same(fast, ref, dtype)
    back = K.gru_backward(d["dhs"], *args[:4], *ref, form=form)
    assert len(back) == (6 if form == "torch" else 5)
    _same(back, R.gru_backward(d["dhs"], *args[:4], *ref, form=form), dtype)
    _untouched(d, before)


def test_empty_batch():
    d = _inputs("lstm", (0, 3, 4, 5), np.float32)
    hs, cs, acts = K.lstm_forward(d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
    assert hs.shape == cs.shape == (0, 3, 5) and acts.shape == (0, 3, 20)
    dx, dh0, dc0, dWx, dWh, db = K.lstm_backward(d["dhs"], None, d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], hs, cs,
                                                 acts)
    assert dx.shape == (0, 3, 4) and dh0.shape == dc0.shape == (0, 5)
    assert not dWx.any() and not dWh.any() and not db.any() and dWx.dtype == np.float32


def test_final_state_is_last_step():
    """The final state is hs[:, -1]: running two halves, the second from the first's final state, is one run."""
    d = _inputs("lstm", (2, 6, 3, 7), np.float64)
    a = (d["Wx"], d["Wh"], d["b"])
    hs, cs, _ = K.lstm_forward(d["x"], d["h0"], d["c0"], *a)
    h1, c1, _ = K.lstm_forward(d["x"][:, :3], d["h0"], d["c0"], *a)
    h2, c2, _ = K.lstm_forward(d["x"][:, 3:], h1[:, -1], c1[:, -1], *a)
    np.testing.assert_allclose(np.concatenate([h1, h2], axis=1), hs, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.concatenate([c1, c2], axis=1), cs, rtol=1e-13, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# Against PyTorch, with the weights permuted to its layout


def _to_torch_layout(w, layout, H):
    """The blocks of ``w`` (..., 4H) in ``layout``'s order, reordered to torch's i, f, g, o."""
    return np.concatenate([w[..., layout.index(g) * H:(layout.index(g) + 1) * H] for g in "ifgo"], axis=-1)


@pytest.mark.parametrize("layout", ["ifog", "fgio", "ifgo"])
def test_lstm_matches_torch(layout):
    torch = pytest.importorskip("torch")
    N, T, D, H = 3, 4, 5, 7
    d = _inputs("lstm", (N, T, D, H), np.float64, seed=3)
    hs, cs, acts = K.lstm_forward(d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"], layout=layout)
    grads = K.lstm_backward(d["dhs"], d["dc_last"], d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], hs, cs, acts,
                            layout=layout)
    lstm = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(_to_torch_layout(d["Wx"], layout, H).T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(_to_torch_layout(d["Wh"], layout, H).T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(_to_torch_layout(d["b"], layout, H)))
        lstm.bias_hh_l0.zero_()
    x = torch.tensor(d["x"], requires_grad=True)
    h0 = torch.tensor(d["h0"][None], requires_grad=True)
    c0 = torch.tensor(d["c0"][None], requires_grad=True)
    out, (_, cn) = lstm(x, (h0, c0))
    ((out * torch.from_numpy(d["dhs"])).sum() + (cn[0] * torch.from_numpy(d["dc_last"])).sum()).backward()
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(hs, out.detach().numpy(), **tol)
    np.testing.assert_allclose(cs[:, -1], cn[0].detach().numpy(), **tol)
    dx, dh0, dc0, dWx, dWh, db = grads
    np.testing.assert_allclose(dx, x.grad.numpy(), **tol)
    np.testing.assert_allclose(dh0, h0.grad[0].numpy(), **tol)
    np.testing.assert_allclose(dc0, c0.grad[0].numpy(), **tol)
    np.testing.assert_allclose(_to_torch_layout(dWx, layout, H).T, lstm.weight_ih_l0.grad.numpy(), **tol)
    np.testing.assert_allclose(_to_torch_layout(dWh, layout, H).T, lstm.weight_hh_l0.grad.numpy(), **tol)
    np.testing.assert_allclose(_to_torch_layout(db, layout, H), lstm.bias_ih_l0.grad.numpy(), **tol)


def test_gru_torch_form_matches_torch():
    torch = pytest.importorskip("torch")
    N, T, D, H = 2, 5, 3, 6
    d = _inputs("gru", (N, T, D, H), np.float64, seed=4)
    hs, acts = K.gru_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"], d["bh"], form="torch")
    grads = K.gru_backward(d["dhs"], d["x"], d["h0"], d["Wx"], d["Wh"], hs, acts, form="torch")
    gru = torch.nn.GRU(D, H, batch_first=True).double()
    with torch.no_grad():
        for name, a in (("weight_ih_l0", d["Wx"].T), ("weight_hh_l0", d["Wh"].T), ("bias_ih_l0", d["b"]),
                        ("bias_hh_l0", d["bh"])):
            getattr(gru, name).copy_(torch.from_numpy(a.copy()))
    x = torch.tensor(d["x"], requires_grad=True)
    h0 = torch.tensor(d["h0"][None], requires_grad=True)
    out, _ = gru(x, h0)
    (out * torch.from_numpy(d["dhs"])).sum().backward()
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(hs, out.detach().numpy(), **tol)
    expected = (x.grad, h0.grad[0], gru.weight_ih_l0.grad.T, gru.weight_hh_l0.grad.T, gru.bias_ih_l0.grad,
                gru.bias_hh_l0.grad)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), **tol)


def test_gru_dlfs2_form_is_not_torch_form():
    """The two forms differ (where r is applied, which block is z): the form argument is not decorative."""
    d = _inputs("gru", (2, 3, 4, 5), np.float64)
    a = (d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])
    dlfs2 = K.gru_forward(*a)[0]
    torch_form = K.gru_forward(*a, np.zeros_like(d["b"]), form="torch")[0]
    assert np.abs(dlfs2 - torch_form).max() > 1e-3


def test_gru_dlfs2_step_formula():
    """One step of the dlfs2 form written out from Deep Learning from Scratch 2's GRU.forward."""
    d = _inputs("gru", (3, 1, 4, 5), np.float64, seed=7)
    x, h, Wx, Wh, b = d["x"][:, 0], d["h0"], d["Wx"], d["Wh"], d["b"]
    H = 5

    def sig(v):
        return 1 / (1 + np.exp(-v))

    z = sig(x @ Wx[:, :H] + h @ Wh[:, :H] + b[:H])
    r = sig(x @ Wx[:, H:2 * H] + h @ Wh[:, H:2 * H] + b[H:2 * H])
    hh = np.tanh(x @ Wx[:, 2 * H:] + (r * h) @ Wh[:, 2 * H:] + b[2 * H:])
    expected = (1 - z) * h + z * hh
    np.testing.assert_allclose(K.gru_forward(d["x"], h, Wx, Wh, b)[0][:, 0], expected, rtol=1e-13, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# Bad input: same errors from kernel and twin, raised before any work


@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
def test_bad_input(impl):
    d = _inputs("lstm", (2, 3, 4, 5), np.float32)
    a = (d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
    with pytest.raises(ValueError, match=r"lstm_forward: layout must be a permutation of 'ifgo'"):
        impl.lstm_forward(*a, layout="ifgg")
    with pytest.raises(TypeError, match=r"lstm_forward: layout"):
        impl.lstm_forward(*a, layout=None)
    with pytest.raises(ValueError, match=r"lstm_forward: Wh must be of shape \(H, 4\*H\)"):
        impl.lstm_forward(*a[:4], d["Wh"][:, :-1], d["b"])
    with pytest.raises(ValueError, match=r"lstm_forward: Wx must be of shape \(4, 20\)"):
        impl.lstm_forward(d["x"], d["h0"], d["c0"], d["Wx"][:3], d["Wh"], d["b"])
    with pytest.raises(ValueError, match=r"lstm_forward: h0 must be of shape \(2, 5\)"):
        impl.lstm_forward(d["x"], d["h0"][:1], *a[2:])
    with pytest.raises(ValueError, match=r"lstm_forward: x must be of shape \(N, T, D\) with T >= 1"):
        impl.lstm_forward(d["x"][:, :0], *a[1:])
    with pytest.raises(ValueError, match=r"lstm_backward: dc_last must be of shape \(2, 5\)"):
        impl.lstm_backward(d["dhs"], d["dc_last"].T, *a[:5], *R.lstm_forward(*a))
    g = _inputs("gru", (2, 3, 4, 5), np.float32)
    ga = (g["x"], g["h0"], g["Wx"], g["Wh"], g["b"])
    with pytest.raises(ValueError, match=r"gru_forward: bh must be None with form='dlfs2'"):
        impl.gru_forward(*ga, g["bh"])
    with pytest.raises(ValueError, match=r"gru_forward: bh must be None"):
        impl.gru_forward(*ga, form="torch")
    with pytest.raises(ValueError, match=r"gru_forward: form must be 'dlfs2' or 'torch'"):
        impl.gru_forward(*ga, form="pytorch")
    hs, acts = R.gru_forward(*ga)
    with pytest.raises(ValueError, match=r"gru_backward: acts must be of shape \(2, 3, 20\)"):
        impl.gru_backward(g["dhs"], *ga[:4], hs, acts, form="torch")
    with pytest.raises(TypeError, match=r"rnn_forward: x must be a NumPy array"):
        impl.rnn_forward("x", d["h0"], d["Wx"][:, :5], d["Wh"][:, :5], d["b"][:5])


def test_dtype_promotion():
    d = _inputs("rnn", (2, 3, 4, 5), np.float32)
    hs = K.rnn_forward(d["x"], d["h0"].astype(np.float64), d["Wx"], d["Wh"], d["b"])
    assert hs.dtype == np.float64
    hs = K.rnn_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])
    assert hs.dtype == np.float32
