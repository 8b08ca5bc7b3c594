"""Transformer layers: PyTorch's modules with copied weights (the (in, out) <-> (out, in) mapping), gradients by
central differences, float32 end to end, bad arguments; the TransformerLM net under Trainer and on the twins."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import backend
from fastnn.layers import (
    GELU,
    FeedForward,
    MultiHeadAttention,
    PositionalEncoding,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
)
from fastnn.nets import TransformerLM
from fastnn.trainer import Trainer

E, H, N, S, T = 12, 3, 2, 5, 7


def _rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _load_mha(torch, mha, tm, seed=1):
    """Copy fastnn's weights into torch's module (transposed), with random biases on both."""
    mha.params["b_in"][:] = _rand(3 * E, seed=seed, dtype=mha.params["b_in"].dtype)
    mha.params["b_out"][:] = _rand(E, seed=seed + 1, dtype=mha.params["b_out"].dtype)
    with torch.no_grad():
        tm.in_proj_weight.copy_(torch.from_numpy(mha.params["W_in"].T.copy()))
        tm.in_proj_bias.copy_(torch.from_numpy(mha.params["b_in"]))
        tm.out_proj.weight.copy_(torch.from_numpy(mha.params["W_out"].T.copy()))
        tm.out_proj.bias.copy_(torch.from_numpy(mha.params["b_out"]))


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-11}


@pytest.mark.parametrize("mode", ["self-causal", "cross-masked"])
def test_multihead_attention_matches_torch(mode, dtype):
    torch = pytest.importorskip("torch")
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    causal = mode == "self-causal"
    mha = MultiHeadAttention(E, H, causal=causal, dtype=dtype, seed=0)
    tm = torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=tdt)
    _load_mha(torch, mha, tm)
    x, dout = _rand(N, S, E, dtype=dtype), _rand(N, S, E, seed=2, dtype=dtype)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    if causal:
        out, grads = mha.forward(x), None
        ty = tm(tx, tx, tx, attn_mask=torch.triu(torch.ones(S, S, dtype=torch.bool), 1), need_weights=False)[0]
    else:
        mem = _rand(N, T, E, seed=3, dtype=dtype)
        mask = np.random.default_rng(4).random((S, T)) < 0.7
        mask[:, 0] = True
        out = mha.forward(x, mem, mem, attn_mask=mask)
        tm_mem = torch.from_numpy(mem.copy()).requires_grad_()
        # torch's bool attn_mask forbids where True; fastnn's (SDPA's, cs231n's) allows where True
        ty = tm(tx, tm_mem, tm_mem, attn_mask=torch.from_numpy(~mask), need_weights=False)[0]
    ty.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, ty.detach().numpy(), **_tol(dtype))
    assert out.dtype == dtype
    grads = mha.backward(dout)
    if causal:
        np.testing.assert_allclose(grads, tx.grad.numpy(), **_tol(dtype))
    else:
        dq, dk, dv = grads
        np.testing.assert_allclose(dq, tx.grad.numpy(), **_tol(dtype))
        np.testing.assert_allclose(dk + dv, tm_mem.grad.numpy(), **_tol(dtype))
    np.testing.assert_allclose(mha.grads["W_in"], tm.in_proj_weight.grad.numpy().T, **_tol(dtype))
    np.testing.assert_allclose(mha.grads["b_in"], tm.in_proj_bias.grad.numpy(), **_tol(dtype))
    np.testing.assert_allclose(mha.grads["W_out"], tm.out_proj.weight.grad.numpy().T, **_tol(dtype))
    np.testing.assert_allclose(mha.grads["b_out"], tm.out_proj.bias.grad.numpy(), **_tol(dtype))
    assert all(g.dtype == dtype for g in mha.grads.values())


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_encoder_layer_matches_torch(norm_first):
    torch = pytest.importorskip("torch")
    layer = TransformerEncoderLayer(E, H, dim_feedforward=10, norm_first=norm_first, dtype=np.float64, seed=0)
    tl = torch.nn.TransformerEncoderLayer(E, H, 10, dropout=0.0, activation="gelu", batch_first=True,
                                          norm_first=norm_first, dtype=torch.float64)
    _load_mha(torch, layer.attn, tl.self_attn)
    with torch.no_grad():
        for name in ("1", "2"):
            getattr(tl, f"linear{name}").weight.copy_(torch.from_numpy(layer.params[f"ff.W{name}"].T.copy()))
            layer.params[f"ff.b{name}"][:] = _rand(layer.params[f"ff.b{name}"].size, seed=7)
            getattr(tl, f"linear{name}").bias.copy_(torch.from_numpy(layer.params[f"ff.b{name}"]))
    x, dout = _rand(N, S, E), _rand(N, S, E, seed=2)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = tl(tx)
    ty.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(layer.backward(dout), tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(layer.grads["ff.W1"], tl.linear1.weight.grad.numpy().T, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(layer.grads["norm1.gamma"], tl.norm1.weight.grad.numpy(), rtol=1e-9, atol=1e-11)


def _numeric(f, a, h=1e-6, picks=4, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(picks):
        i = tuple(rng.integers(0, s) for s in a.shape)
        old = a[i]
        a[i] = old + h
        plus = f()
        a[i] = old - h
        minus = f()
        a[i] = old
        out.append((i, (plus - minus) / (2 * h)))
    return out


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_decoder_layer_gradients(norm_first):
    layer = TransformerDecoderLayer(E, H, 16, norm_first=norm_first, dtype=np.float64, seed=0)
    x, mem, dout = _rand(N, S, E), _rand(N, T, E, seed=1), _rand(N, S, E, seed=2)

    def f():
        return float(np.sum(layer.forward(x, mem, train_flg=False) * dout))

    layer.forward(x, mem, train_flg=False)
    dx, dmem = layer.backward(dout)
    grads = dict(layer.grads)
    for a, g in [(x, dx), (mem, dmem), *((layer.params[k], grads[k]) for k in
                                          ("self_attn.W_in", "cross_attn.W_in", "ff.W2", "norm3.gamma"))]:
        for i, num in _numeric(f, a):
            assert abs(g[i] - num) <= 1e-6 * (1 + abs(num)), (i, g[i], num)


def test_float32_end_to_end_and_dropout_only_in_training():
    layer = TransformerEncoderLayer(E, H, dropout=0.3, causal=True, seed=0)
    x = _rand(N, S, E, dtype=np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32 and layer.backward(np.ones_like(y)).dtype == np.float32
    assert all(p.dtype == np.float32 for p in layer.params.values())
    assert all(g.dtype == np.float32 for g in layer.grads.values())
    a, b = layer.forward(x, train_flg=False), layer.forward(x, train_flg=False)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(layer.forward(x), a)
    pe = PositionalEncoding(E, dropout=0.0)
    np.testing.assert_allclose(pe.forward(np.zeros((1, 2, E), np.float32))[0, 1, :2], [np.sin(1), np.cos(1)],
                               rtol=1e-6)
    ff, g = FeedForward(E, seed=0), GELU("tanh")
    assert ff.forward(x).shape == x.shape and g.forward(x).dtype == np.float32


@pytest.mark.parametrize(("make", "match"), [
    (lambda: MultiHeadAttention(10, 3), "^MultiHeadAttention: num_heads must be a divisor of embed_dim=10"),
    (lambda: MultiHeadAttention(12, 3, dropout=1.0), "^MultiHeadAttention: dropout must be"),
    (lambda: GELU("erf"), "^gelu_forward: approximate must be"),
    (lambda: MultiHeadAttention(12, 3).forward(np.zeros((2, 4, 12)), np.zeros((2, 5, 12)), np.zeros((2, 6, 12))),
     "^MultiHeadAttention.forward: value must be"),
    (lambda: MultiHeadAttention(12, 3).forward(np.zeros((2, 4, 12)), attn_mask=np.ones((3, 4), bool)),
     "^attention_forward: mask must be broadcastable"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _lm(**kw):
    return TransformerLM(11, 6, embed_dim=8, num_heads=2, num_layers=2, dtype=np.float64, seed=0, **kw)


@pytest.mark.parametrize(("tie", "norm_first"), [(True, True), (False, False)])
def test_transformer_lm_gradient(tie, norm_first):
    net = _lm(tie_weights=tie, norm_first=norm_first)
    rng = np.random.default_rng(0)
    for k, p in net.params.items():
        if k.endswith(("b", "b_in", "b_out", "beta")):
            p[...] = rng.standard_normal(p.shape) * 0.1  # non-zero biases, so their gradients are exercised
    x, t = rng.integers(0, 11, (3, 6)), rng.integers(0, 11, (3, 6))
    grads = net.gradient(x, t)
    assert list(grads) == list(net.params)
    for k in ("embed.W", "block1.attn.W_in", "block2.ff.W1", "head.b", *(("head.W",) if not tie else ())):
        for i, num in _numeric(lambda: float(net.loss(x, t)), net.params[k], picks=3):
            assert abs(grads[k][i] - num) <= 1e-7 * (1 + abs(num)) + 1e-9, (k, i, grads[k][i], num)


def test_transformer_lm_learns_under_trainer_and_twins_agree():
    """A periodic sequence is learnt (loss far below log V); three steps on the NumPy twins give the kernels'
    losses."""
    seq = np.tile(np.arange(7), 40)
    windows = np.lib.stride_tricks.sliding_window_view(seq, 7)
    x, t = windows[:, :6].copy(), windows[:, 1:].copy()
    net = TransformerLM(11, 6, embed_dim=16, num_heads=2, num_layers=1, seed=0)
    trainer = Trainer(net, x, t, x[:20], t[:20], epochs=3, mini_batch_size=16,
                      optimizer="Adam", optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    trainer.train()
    assert trainer.train_loss_list[-1] < 0.3 * np.log(11)
    assert net.accuracy(x, t) > 0.9
    assert net.generate([0, 1, 2], 4, 0, temperature=0.01) == [3, 4, 5, 6]
    losses = {}
    for name in ("kernels", "reference"):
        net = _lm()
        with backend.using(name):
            from fastnn.optim import Adam
            opt = Adam(lr=0.01)
            losses[name] = []
            for _ in range(3):
                g = net.gradient(x[:8], t[:8])
                opt.update(net.params, g)
                losses[name].append(float(net.loss(x[:8], t[:8])))
    np.testing.assert_allclose(losses["kernels"], losses["reference"], rtol=1e-10)
