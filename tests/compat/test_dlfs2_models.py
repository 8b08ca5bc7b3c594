"""DLFS-2's models on fastnn by an import swap: SimpleRnnlm, Rnnlm, BetterRnnlm, Seq2seq and PeekySeq2seq start
from the book's weights (the same draws), give the book's losses and gradients, and keep the book's contract
(params/grads collected once, tied weights, stateful layers, train_flg switched from outside)."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import backend
from fastnn.compat.dlfs2.better_rnnlm import BetterRnnlm
from fastnn.compat.dlfs2.optimizer import SGD
from fastnn.compat.dlfs2.peeky_seq2seq import PeekySeq2seq
from fastnn.compat.dlfs2.rnnlm import Rnnlm
from fastnn.compat.dlfs2.seq2seq import Seq2seq
from fastnn.compat.dlfs2.simple_rnnlm import SimpleRnnlm
from fastnn.compat.dlfs2.trainer import remove_duplicate
from fastnn.compat.dlfs2.util import clip_grads

from .dlfs2_book import book  # noqa: F401 -- fixture

V, D, H, N, T = 13, 5, 6, 3, 4
MODELS = {"SimpleRnnlm": ("ch05.simple_rnnlm", SimpleRnnlm), "Rnnlm": ("ch06.rnnlm", Rnnlm),
          "BetterRnnlm": ("ch06.better_rnnlm", BetterRnnlm), "Seq2seq": ("ch07.seq2seq", Seq2seq),
          "PeekySeq2seq": ("ch07.peeky_seq2seq", PeekySeq2seq)}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T + (1 if seed else 0)))


def _build(cls, seed=0):
    np.random.seed(seed)  # noqa: NPY002 -- the book draws its weights from the global generator
    # BetterRnnlm ties the output affine to the embedding: D must equal H
    return cls(V, H, H) if cls.__name__ == "BetterRnnlm" else cls(V, D, H)


def _steps(model, xs, ts, opt, remove, clip, steps=2):
    """Training steps as the book's trainer takes them; the losses, the last merged gradients, the parameters."""
    losses = []
    for _ in range(steps):
        np.random.seed(11)  # noqa: NPY002 -- BetterRnnlm's dropout masks: the book's draws
        losses.append(float(model.forward(xs, ts)))
        model.backward()
        params, grads = remove(model.params, model.grads)
        clip(grads, 1.0)
        grad_copy = [g.copy() for g in grads]
        opt.update(params, grads)
    return losses, grad_copy, [p.copy() for p in params]


def _run(model, xs, ts):
    return _steps(model, xs, ts, SGD(lr=0.5), remove_duplicate, clip_grads)


@pytest.mark.parametrize("name", list(MODELS))
def test_models_match_the_book(book, name):  # noqa: F811
    module, cls = MODELS[name]
    xs, ts = _data(1 if "seq2seq" in module else 0)
    ref, new = _build(getattr(book(module), name)), _build(cls)
    for p, q in zip(new.params, ref.params, strict=True):
        np.testing.assert_array_equal(p, q)  # the book's draws: the book's initial weights, bit for bit
    want = _steps(ref, xs, ts, book("common.optimizer").SGD(lr=0.5), book("common.trainer").remove_duplicate,
                  book("common.util").clip_grads)
    got = _run(new, xs, ts)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-5)
    for g, r in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(g, r, rtol=2e-3, atol=2e-6)
    for p, r in zip(got[2], want[2], strict=True):
        np.testing.assert_allclose(p, r, rtol=2e-4, atol=2e-6)


def test_models_run_on_the_twins_with_the_same_numbers():
    xs, ts = _data()
    fast = _run(_build(BetterRnnlm), xs, ts)
    with backend.using("reference"):
        slow = _run(_build(BetterRnnlm), xs, ts)
    np.testing.assert_allclose(fast[0], slow[0], rtol=2e-5)
    for a, b in zip(fast[2], slow[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_better_rnnlm_contract():
    model = _build(BetterRnnlm)
    embed_W, affine_W = model.layers[0].params[0], model.layers[-1].params[0]
    assert affine_W.base is embed_W and all(p.dtype == np.float32 for p in model.params)
    params, grads = model.params, model.grads  # collected once, at construction
    xs, ts = _data()
    model.forward(xs, ts)
    model.backward()
    assert model.params is params and model.grads is grads
    assert all(g is lg for g, lg in zip(grads, [g for layer in model.layers for g in layer.grads], strict=True))
    merged_p, merged_g = remove_duplicate(params, grads)
    assert len(merged_p) == len(params) - 1 and merged_g[0] is grads[0]
    SGD(lr=1.0).update(merged_p, merged_g)
    np.testing.assert_array_equal(model.layers[-1].params[0], embed_W.T)  # the tie survives the update
    assert all(d.train_flg for d in model.drop_layers)
    model.predict(xs)  # inference: predict switches dropout off, from outside
    assert not any(d.train_flg for d in model.drop_layers)
    h = model.lstm_layers[0].h.copy()
    model.reset_state()
    assert model.lstm_layers[0].h is None and h.shape == (N, H)


def test_save_and_load_params_round_trip_a_model(tmp_path):
    model = _build(Rnnlm)
    path = tmp_path / "Rnnlm.pkl"
    model.save_params(str(path))
    other = _build(Rnnlm, seed=1)
    arrays = list(other.params)
    other.load_params(str(path))
    for p, q, a in zip(other.params, model.params, arrays, strict=True):
        assert p is a
        np.testing.assert_array_equal(p, q.astype(np.float16).astype(np.float32))


def test_seq2seq_generate_and_decoder_state():
    model = _build(PeekySeq2seq)
    xs, _ = _data(1)
    h = model.encoder.forward(xs[:1])
    h_copy = h.copy()
    out = model.generate(xs[:1], 0, 5)
    assert len(out) == 5 and all(0 <= int(c) < V for c in out)
    np.testing.assert_array_equal(h, h_copy)  # set_state never wrote into the encoder's strided output


@pytest.mark.parametrize(("kw", "match"), [({"max_grad": np.inf}, "max_grad must be a finite number >= 0.0"),
                                           ({"max_grad": np.nan}, "max_grad must be a finite number"),
                                           ({"batch_size": 0}, "batch_size must be >= 1"),
                                           ({"time_size": 100}, r"the data must be at least one batch")])
def test_rnnlm_trainer_refuses_bad_settings_before_training(kw, match):
    from fastnn.compat.dlfs2.trainer import RnnlmTrainer

    model = _build(Rnnlm)
    before = [p.copy() for p in model.params]
    corpus = np.random.default_rng(0).integers(0, V, 200)
    args = {"max_epoch": 1, "batch_size": 2, "time_size": 5, "max_grad": 0.25, **kw}
    with pytest.raises(ValueError, match=f"^RnnlmTrainer.fit: {match}"):
        RnnlmTrainer(model, SGD(1.0)).fit(corpus[:-1], corpus[1:], **args)
    for p, b in zip(model.params, before, strict=True):
        np.testing.assert_array_equal(p, b)
