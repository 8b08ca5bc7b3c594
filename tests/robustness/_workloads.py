"""Workloads run by the thread, process, cache and determinism tests (importable by spawned children).

:func:`compute` runs a fixed mix of kernels on inputs drawn from ``seed`` and returns every result by name, so two
runs (another thread, process, thread count or cache state) can be compared array by array.
"""

from __future__ import annotations

import numpy as np

import fastnn.kernels as K

#: The inference mix of the thread tests: convolution, pooling, batch-norm inference, ReLU.
INFERENCE = ("conv", "maxpool", "bn_infer", "relu")
#: The sequence mix: the recurrent kernels' forward and backward (the LSTM's batch cut runs its row parts on the
#: slot pool), the embedding, the time-step loss and the gradient clipping of a language model's training step.
SEQUENCE = ("rnn", "lstm", "gru", "embedding", "time_ce", "clip")
#: Sequences of the sequence mix: (N, T, D, H, V). N = 16 is the smallest batch the LSTM cuts into two row parts.
SEQ_SIZES = (16, 3, 5, 6, 11)


def inputs(seed: int, dtype=np.float32, n: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    return {"x": f(n, 3, 12, 12), "W": f(8, 3, 3, 3), "b": f(8), "gamma": f(8) + 2, "beta": f(8),
            "rmean": f(8), "rvar": np.abs(f(8)) + 0.5, "t": rng.integers(0, 10, n), "fc": f(n, 10)}


def sequence_inputs(seed: int, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 1_000_003)  # not the image mix's draws
    N, T, D, H, V = SEQ_SIZES
    f = lambda *s: (rng.standard_normal(s) * 0.5).astype(dtype)  # noqa: E731
    ids = rng.integers(0, V, (N, T))
    labels = ids.copy()
    labels[0, 0] = labels[N - 1, T - 1] = -1  # positions the loss ignores
    return {"x": f(N, T, D), "h0": f(N, H), "c0": f(N, H), "dhs": f(N, T, H), "dc": f(N, H),
            "Wx4": f(D, 4 * H), "Wh4": f(H, 4 * H), "b4": f(4 * H), "Wx3": f(D, 3 * H), "Wh3": f(H, 3 * H),
            "b3": f(3 * H), "bh3": f(3 * H), "Wx1": f(D, H), "Wh1": f(H, H), "b1": f(H), "W": f(V, D),
            "ids": ids, "scores": f(N, T, V) * 4, "labels": labels}


def _sequence(s: dict[str, np.ndarray], on, out: dict[str, np.ndarray]) -> None:
    """The sequence mix's results into ``out`` (every array a kernel returns, by name)."""
    x, h0, c0, dhs = s["x"], s["h0"], s["c0"], s["dhs"]
    if on("rnn"):
        hs = K.rnn_forward(x, h0, s["Wx1"], s["Wh1"], s["b1"])
        out["rnn_hs"] = hs
        out.update(zip(("rnn_dx", "rnn_dh0", "rnn_dWx", "rnn_dWh", "rnn_db"),
                       K.rnn_backward(dhs, x, h0, s["Wx1"], s["Wh1"], hs), strict=True))
    if on("lstm"):  # DLFS-2's gate layout, with a gradient into the last cell state
        fwd = K.lstm_forward(x, h0, c0, s["Wx4"], s["Wh4"], s["b4"], layout="fgio")
        out.update(zip(("lstm_hs", "lstm_cs", "lstm_acts"), fwd, strict=True))
        out.update(zip(("lstm_dx", "lstm_dh0", "lstm_dc0", "lstm_dWx", "lstm_dWh", "lstm_db"),
                       K.lstm_backward(dhs, s["dc"], x, h0, c0, s["Wx4"], s["Wh4"], *fwd, layout="fgio"),
                       strict=True))
    if on("gru"):  # PyTorch's form, with its hidden bias
        hs, acts = K.gru_forward(x, h0, s["Wx3"], s["Wh3"], s["b3"], s["bh3"], form="torch")
        out["gru_hs"], out["gru_acts"] = hs, acts
        out.update(zip(("gru_dx", "gru_dh0", "gru_dWx", "gru_dWh", "gru_db", "gru_dbh"),
                       K.gru_backward(dhs, x, h0, s["Wx3"], s["Wh3"], hs, acts, form="torch"), strict=True))
    if on("embedding"):
        out["emb"] = K.embedding_forward(s["W"], s["ids"])
        out["emb_dW"] = K.embedding_backward(x, s["ids"], s["W"].shape[0])
    if on("time_ce"):
        loss, probs = K.time_softmax_cross_entropy_forward(s["scores"], s["labels"])
        out["tce_loss"], out["tce_probs"] = np.asarray(loss), probs
        out["tce_dx"] = K.time_softmax_cross_entropy_backward(probs, s["labels"])
    if on("clip"):
        grads = [s["Wx4"] * 40, s["b4"] * 40]  # a norm above max_norm: both are scaled
        out["clip_norm"] = np.asarray(K.clip_grads(grads, 1.0))
        out["clip_Wx"], out["clip_b"] = grads


def compute(seed: int, which: tuple[str, ...] | None = None, dtype=np.float32, n: int = 4) -> dict[str, np.ndarray]:
    """Results of the kernels named in ``which`` (default: all) on the inputs of ``seed``."""
    a = inputs(seed, dtype, n)
    want = set(which) if which is not None else None
    out: dict[str, np.ndarray] = {}

    def on(name: str) -> bool:
        return want is None or name in want

    # the image kernels' input; the sequence mix alone needs none of it
    conv = K.conv2d_forward(a["x"], a["W"], a["b"], 1, 1) if want is None or want - set(SEQUENCE) else None
    if on("conv"):
        out["conv"] = conv
    if on("conv_backward"):
        out["conv_dx"], out["conv_dW"], out["conv_db"] = K.conv2d_backward(conv, a["x"], a["W"], 1, 1)
    if on("maxpool"):
        pooled, argmax = K.maxpool2d_forward(conv, 3, 3, 2, 1)
        out["maxpool"], out["maxpool_argmax"] = pooled, argmax
        out["maxpool_dx"] = K.maxpool2d_backward(pooled, argmax, conv.shape, 3, 3, 2, 1)
    if on("avgpool"):
        out["avgpool"] = K.avgpool2d_forward(conv, 3, 3, 1, 1)
        out["avgpool_dx"] = K.avgpool2d_backward(out["avgpool"], conv.shape, 3, 3, 1, 1)
    if on("bn_infer"):
        out["bn_infer"] = K.batchnorm_forward_infer(conv, a["gamma"], a["beta"], a["rmean"], a["rvar"])
    if on("bn_train"):
        rm, rv = a["rmean"].copy(), a["rvar"].copy()
        out["bn_out"], out["bn_mean"], out["bn_inv_std"] = K.batchnorm_forward_train(conv, a["gamma"], a["beta"],
                                                                                     rm, rv)
        out["bn_running_mean"], out["bn_running_var"] = rm, rv
        out["bn_dx"], out["bn_dgamma"], out["bn_dbeta"] = K.batchnorm_backward(conv, conv, a["gamma"],
                                                                               out["bn_mean"], out["bn_inv_std"])
    if on("layernorm"):
        g = np.ones(conv.shape[1:], conv.dtype)
        out["ln_out"], out["ln_mean"], out["ln_inv_std"] = K.layernorm_forward(conv, g, g * 0)
        out["ln_dx"], out["ln_dgamma"], out["ln_dbeta"] = K.layernorm_backward(conv, conv, g, out["ln_mean"],
                                                                               out["ln_inv_std"])
    if on("relu"):
        out["relu"] = K.relu_forward(conv)
        out["relu_dx"] = K.relu_backward(conv, conv)
    if on("softmax_ce"):
        loss, probs = K.softmax_cross_entropy_forward(a["fc"], a["t"])
        out["ce_loss"], out["ce_probs"] = np.asarray(loss), probs
        out["ce_dx"] = K.softmax_cross_entropy_backward(probs, a["t"])
    if on("adam"):
        p, m, v = a["W"].copy(), np.zeros_like(a["W"]), np.zeros_like(a["W"])
        for step in range(1, 4):
            K.adam_step(p, a["W"] * step, m, v, 1e-2, 0.9, 0.999, 1e-8, 1 - 0.9**step, 1 - 0.999**step)
        out["adam_param"] = p
    if want is None or want & set(SEQUENCE):
        _sequence(sequence_inputs(seed, dtype), on, out)
    return out


def worker(seed: int) -> dict[str, np.ndarray]:
    """A pool task: every kernel of :func:`compute` (module-level, so spawned children can unpickle it)."""
    return compute(seed)


def worker_env(seed: int) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """A pool task that also reports how fastnn launched kernels in the child.

    It first sets the thread count (that must be harmless in a child that runs serial twins only).
    """
    import numba

    import fastnn
    from fastnn import _jit

    fastnn.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    result = compute(seed)
    return result, {"parallel_allowed": _jit._parallel_allowed, "layer": _jit.threading_layer(),
                    "threads": fastnn.get_num_threads()}
