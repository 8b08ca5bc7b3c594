"""fastnn.compat.dlfs2's layers, time layers, optimizers, clip_grads, remove_duplicate and BaseModel against the
book's own code (where its repository is at hand, see ``dlfs2_book.py``) and against the contract DLFS-2 code
relies on (checked without the book)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from fastnn import backend
from fastnn.compat.dlfs2 import layers as L
from fastnn.compat.dlfs2 import optimizer as O
from fastnn.compat.dlfs2 import time_layers as TL
from fastnn.compat.dlfs2.base_model import BaseModel
from fastnn.compat.dlfs2.trainer import remove_duplicate
from fastnn.compat.dlfs2.util import clip_grads

from .dlfs2_book import book  # noqa: F401 -- fixture

F32 = {"rtol": 2e-5, "atol": 2e-6}


def _r(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype("f")


def _pair(book_mod, name, *arrays):
    """The book's layer and fastnn's, each on its own copies of ``arrays``."""
    return getattr(book_mod, name)(*[a.copy() for a in arrays]), getattr(TL, name)(*[a.copy() for a in arrays])


def _close(a, b, **kw):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, **{**F32, **kw})


# ---------------------------------------------------------------------------------------------------------------
# Layers against the book


@pytest.mark.parametrize("impl", ["kernels", "reference"])
def test_layers_match_the_book(book, impl):  # noqa: F811
    bl = book("common.layers")
    x, W, b = _r(4, 5), _r(5, 3, seed=1), _r(3, seed=2)
    dout = _r(4, 3, seed=3)
    t = np.array([0, 2, 1, 2])
    with backend.using(impl):
        for name, args, fwd in [("MatMul", (W,), (x,)), ("Affine", (W, b), (x,)), ("Softmax", (), (x,)),
                                ("Sigmoid", (), (x,))]:
            ref, new = getattr(bl, name)(*[a.copy() for a in args]), getattr(L, name)(*[a.copy() for a in args])
            _close(new.forward(*fwd), ref.forward(*fwd))
            d = dout if name in ("MatMul", "Affine") else _r(4, 5, seed=4)
            _close(new.backward(d), ref.backward(d.copy()))
            for g, gr in zip(new.grads, ref.grads, strict=True):
                _close(g, gr)
        s = x[:, :3]
        ref, new = bl.SoftmaxWithLoss(), L.SoftmaxWithLoss()
        _close(new.forward(s, t), ref.forward(s, t))
        _close(new.backward(), ref.backward())
        onehot = np.eye(3, dtype="f")[t]
        _close(L.SoftmaxWithLoss().forward(s, onehot), ref.forward(s, onehot))
        ref, new = bl.SigmoidWithLoss(), L.SigmoidWithLoss()
        y = np.array([1, 0, 0, 1], np.int32)
        _close(new.forward(x[:, 0], y), ref.forward(x[:, 0], y))
        _close(new.backward(), ref.backward())
        _close(new.y, ref.y)
        # Embedding with repeated ids
        E = _r(6, 3, seed=5)
        ids = np.array([1, 5, 1, 1, 0])
        ref, new = bl.Embedding(E.copy()), L.Embedding(E.copy())
        _close(new.forward(ids), ref.forward(ids))
        de = _r(5, 3, seed=6)
        assert new.backward(de) is None
        ref.backward(de)
        _close(new.grads[0], ref.grads[0])
        # Dropout: the book's draws from NumPy's global generator
        for train in (True, False):
            np.random.seed(7)  # noqa: NPY002 -- the book draws from the global generator
            ref = bl.Dropout(0.3)
            a = ref.forward(x, train)
            np.random.seed(7)  # noqa: NPY002 -- the book draws from the global generator
            drop = L.Dropout(0.3)
            _close(drop.forward(x, train), a, rtol=0, atol=0)
            if train:
                d = _r(4, 5, seed=8)
                _close(drop.backward(d), ref.backward(d), rtol=0, atol=0)


@pytest.mark.parametrize("impl", ["kernels", "reference"])
def test_time_layers_match_the_book(book, impl):  # noqa: F811
    bt = book("common.time_layers")
    N, T, V, D = 3, 4, 7, 5
    xs = np.random.default_rng(0).integers(0, V, (N, T))
    ts = np.random.default_rng(1).integers(0, V, (N, T))
    ts[1, 2] = ts[0, 0] = -1
    with backend.using(impl):
        ref, new = _pair(bt, "TimeEmbedding", _r(V, D))
        _close(new.forward(xs), ref.forward(xs))
        dout = _r(N, T, D, seed=2)
        assert new.backward(dout) is None
        ref.backward(dout)
        _close(new.grads[0], ref.grads[0])

        W, b = _r(D, V, seed=3), _r(V, seed=4)
        ref, new = _pair(bt, "TimeAffine", W, b)
        h = _r(N, T, D, seed=5)
        _close(new.forward(h), ref.forward(h))
        d = _r(N, T, V, seed=6)
        _close(new.backward(d), ref.backward(d))
        for g, gr in zip(new.grads, ref.grads, strict=True):
            _close(g, gr)

        scores = _r(N, T, V, seed=7, scale=3.0)
        ref, new = bt.TimeSoftmaxWithLoss(), TL.TimeSoftmaxWithLoss()
        loss = new.forward(scores, ts)
        assert loss.dtype == np.float64  # as the book's
        _close(loss, ref.forward(scores, ts))
        _close(new.backward(2.0), ref.backward(2.0))
        onehot = np.eye(V, dtype="f")[np.where(ts < 0, 0, ts)]
        _close(TL.TimeSoftmaxWithLoss().forward(scores, onehot), bt.TimeSoftmaxWithLoss().forward(scores, onehot))

        ref, new = bt.TimeSigmoidWithLoss(), TL.TimeSigmoidWithLoss()
        y = np.random.default_rng(8).integers(0, 2, (N, T))
        _close(new.forward(scores[:, :, 0], y), ref.forward(scores[:, :, 0], y))
        _close(new.backward(), ref.backward())

        ref, new = bt.TimeDropout(0.4), TL.TimeDropout(0.4)
        np.random.seed(3)  # noqa: NPY002 -- the book draws from the global generator
        a = ref.forward(h)
        np.random.seed(3)  # noqa: NPY002 -- the book draws from the global generator
        _close(new.forward(h), a, rtol=0, atol=0)  # the same draws: the same masks, bit for bit
        _close(new.mask, ref.mask, rtol=0, atol=0)
        _close(new.backward(d[:, :, :D]), ref.backward(d[:, :, :D]), rtol=0, atol=0)
        new.train_flg = ref.train_flg = False  # switched from outside, as the book's models do
        assert new.forward(h) is h


def test_optimizers_match_the_book(book):  # noqa: F811
    bo = book("common.optimizer")
    for name in ("SGD", "Momentum", "AdaGrad", "RMSprop", "Adam"):
        ref, new = getattr(bo, name)(), getattr(O, name)()
        assert new.lr == ref.lr
        p_ref = [_r(3, 4, seed=1), _r(4, seed=2)]
        p_new = [p.copy() for p in p_ref]
        kept = list(p_new)
        for step in range(3):
            g = [_r(3, 4, seed=10 + step), _r(4, seed=20 + step)]
            if step == 2:
                ref.lr = new.lr = ref.lr / 4  # re-read on every update
            ref.update(p_ref, [a.copy() for a in g])
            new.update(p_new, g)
        for a, b, k in zip(p_new, p_ref, kept, strict=True):
            assert a is k  # updated in place
            _close(a, b, rtol=1e-5, atol=1e-6)


def test_nesterov_is_the_cited_papers_update_not_dlfs2s_order():
    """DLFS-2's Nesterov updates v first and adds mu*mu*v_new; fastnn keeps arXiv:1212.0901 (and DLFS-1's) order:
    p += mu*mu*v_old - (1 + mu)*lr*g. Two steps from v = 0, lr 0.1, mu 0.9, g = 1 then 2."""
    p = [np.zeros(1, "f")]
    opt = O.Nesterov(lr=0.1, momentum=0.9)
    opt.update(p, [np.ones(1, "f")])
    np.testing.assert_allclose(p[0], [-0.19], rtol=1e-6)  # DLFS-2's order gives -0.19 - 0.081 = -0.271
    opt.update(p, [np.full(1, 2.0, "f")])
    np.testing.assert_allclose(p[0], [-0.19 + 0.81 * -0.1 - 1.9 * 0.2], rtol=1e-6)


def test_clip_grads_and_remove_duplicate_match_the_book(book):  # noqa: F811
    bu, btr = book("common.util"), book("common.trainer")
    for scale in (0.01, 3.0):
        g_ref = [_r(5, 4, seed=1, scale=scale), _r(4, seed=2, scale=scale)]
        g_new = [g.copy() for g in g_ref]
        kept = list(g_new)
        bu.clip_grads(g_ref, 0.5)
        assert clip_grads(g_new, 0.5) is None
        for a, b, k in zip(g_new, g_ref, kept, strict=True):
            assert a is k
            _close(a, b)
    # tied weights: the same array twice and a transposed view (BetterRnnlm), plus an unrelated array
    E = _r(6, 3)
    other = _r(3, 6, seed=9)
    params = [E, _r(3, seed=1), E, other, E.T, _r(3, seed=2)]
    grads = [_r(*p.shape, seed=10 + i) for i, p in enumerate(params)]
    p_ref, g_ref = btr.remove_duplicate(params, [g.copy() for g in grads])
    g_copy = [g.copy() for g in grads]
    p_new, g_new = remove_duplicate(params, g_copy)
    assert len(p_new) == len(p_ref) == 4 and len(params) == 6
    assert all(a is b for a, b in zip(p_new, p_ref, strict=True))
    assert g_new[0] is g_copy[0]  # merged in place into the first occurrence's gradient
    for a, b in zip(g_new, g_ref, strict=True):
        _close(a, b)


# ---------------------------------------------------------------------------------------------------------------
# The contract, without the book


def test_layers_keep_the_arrays_given_and_write_gradients_in_place():
    W, b = _r(4, 6), _r(6, seed=1)
    aff = TL.TimeAffine(W.T, b[:4])  # a transposed view, as BetterRnnlm's tied TimeAffine(embed_W.T, b)
    assert aff.params[0].base is W and aff.params[1].base is b
    g0, g1 = aff.grads
    h = _r(2, 3, 6, seed=2)
    out = aff.forward(h)
    dx = aff.backward(np.ones_like(out))
    assert aff.grads[0] is g0 and aff.grads[1] is g1
    np.testing.assert_allclose(g0, h.reshape(6, 6).T @ np.ones((6, 4), "f"), rtol=1e-5)
    assert dx.flags.writeable and dx.flags.owndata or dx.base is not None and dx.base.flags.owndata
    # an update through the view reaches the embedding (the tie survives)
    O.SGD(lr=1.0).update([aff.params[0]], [np.ones((6, 4), "f")])
    np.testing.assert_allclose(W, _r(4, 6) - 1, rtol=1e-6)
    emb = TL.TimeEmbedding(W)
    assert emb.params[0] is W and emb.W is W
    dW = emb.grads[0]
    emb.forward(np.array([[0, 1, 1]]))
    emb.backward(np.ones((1, 3, 6), "f"))
    assert emb.grads[0] is dW and dW.dtype == np.float32
    np.testing.assert_array_equal(dW[:, 0], [1, 2, 0, 0])


def test_gradients_written_into_grads_replace_them_and_an_error_leaves_them():
    """dW is written straight into the gradient arrays (a tied view's Fortran-order one too): a second backward
    replaces the first's values, a bad dout raises before anything is written."""
    W = _r(5, 6)
    aff, emb, mm = TL.TimeAffine(W.T, _r(5, seed=1)), TL.TimeEmbedding(W), L.MatMul(W)
    h, ids = _r(2, 3, 6, seed=2), np.array([[0, 4, 4], [1, 0, 4]])
    aff.forward(h)
    emb.forward(ids)
    mm.forward(h[0, :, :5])
    for scale in (3.0, 1.0):  # the second pass leaves no trace of the first
        dout = _r(2, 3, 5, seed=3, scale=scale)
        aff.backward(dout)
        emb.backward(np.tile(dout[..., :1], 6))
        mm.backward(_r(3, 6, seed=4, scale=scale))
    _close(aff.grads[0], h.reshape(6, 6).T @ dout.reshape(6, 5))
    _close(aff.grads[1], dout.reshape(6, 5).sum(0))
    want = np.zeros((5, 6), "f")
    np.add.at(want, ids.reshape(-1), np.tile(dout[..., :1], 6).reshape(6, 6))
    _close(emb.grads[0], want)
    _close(mm.grads[0], h[0, :, :5].T @ _r(3, 6, seed=4))
    kept = [g.copy() for g in (*aff.grads, *emb.grads, *mm.grads)]
    with pytest.raises(ValueError, match="TimeAffine.backward: dout must be"):
        aff.backward(_r(2, 3, 4))
    with pytest.raises(ValueError, match="embedding_backward: dout must be of shape"):
        emb.backward(_r(2, 2, 6))
    with pytest.raises(ValueError, match="matmul: b must be"):
        mm.backward(_r(3, 7))
    for g, k in zip((*aff.grads, *emb.grads, *mm.grads), kept, strict=True):
        np.testing.assert_array_equal(g, k)


def test_time_softmax_with_loss_ignores_and_refuses_all_ignored():
    layer = TL.TimeSoftmaxWithLoss()
    xs = _r(2, 3, 4, scale=3.0)
    ts = np.array([[0, -1, 3], [-1, -1, 2]])
    loss = layer.forward(xs, ts)
    logp = xs - np.log(np.exp(xs).sum(-1, keepdims=True))
    np.testing.assert_allclose(loss, -(logp[0, 0, 0] + logp[0, 2, 3] + logp[1, 2, 2]) / 3, rtol=1e-5)
    dx = layer.backward()
    assert not dx[ts == -1].any()
    # an ignored position whose last-column probability underflows: the book's log(0) * 0 makes its loss NaN
    xs[0, 1, -1] = -200
    assert np.isfinite(layer.forward(xs, ts))
    with pytest.raises(ValueError, match="t must be at least one label other than ignore_label -1"):
        layer.forward(xs, np.full((2, 3), -1))
    with pytest.raises(ValueError, match=r"t must be labels in \[0, 4\) or ignore_label -1"):
        layer.forward(xs, np.array([[0, 4, 3], [1, 1, 2]]))


def test_bad_input_is_refused_before_anything_is_written():
    emb = TL.TimeEmbedding(_r(5, 3))
    with pytest.raises(ValueError, match=r"idx must be token ids in \[0, 5\)"):
        emb.forward(np.array([[0, 5]]))
    emb.forward(np.array([[0, 4]]))
    dW = emb.grads[0].copy()
    with pytest.raises(ValueError, match="dout must be of shape"):
        emb.backward(np.ones((1, 3, 3), "f"))
    np.testing.assert_array_equal(emb.grads[0], dW)
    grads = [np.ones(3, "f"), np.ones(2, "f")]
    for bad in (np.inf, np.nan, -1.0):
        with pytest.raises(ValueError, match="clip_grads: max_norm must be a finite number"):
            clip_grads(grads, bad)
    np.testing.assert_array_equal(grads[0], 1)


class _Model(BaseModel):
    def __init__(self):
        super().__init__()
        W = _r(3, 4)
        self.params = [W, _r(4, seed=1), W.T]
        self.grads = [np.zeros_like(p) for p in self.params]


def test_save_and_load_params_keep_the_books_semantics(tmp_path):
    m = _Model()
    path = tmp_path / "m.pkl"
    m.save_params(str(path))
    with open(path, "rb") as f:
        assert f.read(2) == b"PK"  # an .npz archive, not a pickle
    saved = [p.copy() for p in m.params]
    arrays = list(m.params)
    for p in m.params[:2]:
        p[...] = 0
    m.load_params(str(path))
    assert all(a is b for a, b in zip(m.params, arrays, strict=True))  # loaded into the existing arrays
    for p, s in zip(m.params, saved, strict=True):
        assert p.dtype == np.float32
        np.testing.assert_array_equal(p, s.astype(np.float16).astype("f"))  # float16 storage
    # a file of other shapes changes nothing
    other = _Model()
    other.params = [_r(2, 2), _r(4), _r(2, 2)]
    other.save_params(str(tmp_path / "o.pkl"))
    before = [p.copy() for p in m.params]
    with pytest.raises(ValueError, match="load_params"):
        m.load_params(str(tmp_path / "o.pkl"))
    for p, b in zip(m.params, before, strict=True):
        np.testing.assert_array_equal(p, b)
    # the book's pickle: refused unless allow_pickle=True
    book_file = tmp_path / "book.pkl"
    with open(book_file, "wb") as f:
        pickle.dump([p.astype(np.float16) * 2 for p in saved], f)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        m.load_params(str(book_file))
    m.load_params(str(book_file), allow_pickle=True)
    np.testing.assert_array_equal(m.params[1], (saved[1].astype(np.float16) * 2).astype("f"))
    with pytest.raises(OSError, match="No file"):
        m.load_params(str(tmp_path / "missing.pkl"))


def test_negative_sampling_matches_the_book(book):  # noqa: F811
    bns = book("ch04.negative_sampling_layer")
    from fastnn.compat.dlfs2 import negative_sampling_layer as NS

    corpus = np.array([0, 1, 2, 3, 4, 1, 2, 1, 5, 6, 0, 3, 1])
    W, h, target = _r(7, 4, scale=0.1), _r(5, 4, seed=1), np.array([1, 2, 3, 0, 6])
    ref, new = bns.NegativeSamplingLoss(W.copy(), corpus, 0.75, 3), NS.NegativeSamplingLoss(W.copy(), corpus, 0.75, 3)
    np.testing.assert_array_equal(new.sampler.word_p, ref.sampler.word_p)  # the same p: the same draws
    np.random.seed(5)  # noqa: NPY002 -- the book draws from the global generator
    samples = ref.sampler.get_negative_sample(target)
    np.random.seed(5)  # noqa: NPY002
    np.testing.assert_array_equal(new.sampler.get_negative_sample(target), samples)
    np.random.seed(6)  # noqa: NPY002
    loss_ref = ref.forward(h, target)
    np.random.seed(6)  # noqa: NPY002
    _close(new.forward(h, target), loss_ref)
    _close(new.backward(), ref.backward())
    assert len(new.params) == 4 and all(p is new.params[0] for p in new.params)  # W once per EmbeddingDot
    for g, gr in zip(new.grads, ref.grads, strict=True):
        _close(g, gr)


def test_unigram_sampler_refuses_what_the_book_cannot_draw():
    from fastnn.compat.dlfs2.negative_sampling_layer import UnigramSampler

    with pytest.raises(ValueError, match="sample_size must be < the 3 distinct ids"):
        UnigramSampler(np.array([0, 1, 2, 1]), 0.75, 3)
    s = UnigramSampler(np.array([0, 1, 2, 1]), 0.75, 2)
    with pytest.raises(ValueError, match=r"target must be a 1-D array of ids in \[0, 3\)"):
        s.get_negative_sample(np.array([3]))
    rows = s.get_negative_sample(np.array([0, 1, 2]))
    assert rows.dtype == np.int32 and all(t not in r for t, r in zip([0, 1, 2], rows, strict=True))
