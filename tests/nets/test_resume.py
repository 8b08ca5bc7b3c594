"""Training stopped after k steps and resumed from checkpoint files gives exactly the uninterrupted parameters."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import checkpoint, optim
from fastnn.nets import MultiLayerNetExtend, SimpleConvNet


def _net(kind: str, dtype):
    if kind == "convnet":
        return SimpleConvNet(input_dim=(1, 12, 12), conv_param={"filter_num": 4, "filter_size": 3, "pad": 1,
                                                                  "stride": 1}, hidden_size=16, dtype=dtype, seed=3)
    return MultiLayerNetExtend(144, [20, 20], 10, use_batchnorm=True, use_dropout=True, dropout_ration=0.2,
                               weight_decay_lambda=0.01, dtype=dtype, seed=3)


def _batches(kind: str, dtype, steps: int):
    rng = np.random.default_rng(11)
    shape = (8, 1, 12, 12) if kind == "convnet" else (8, 144)
    return [(rng.standard_normal(shape).astype(dtype), rng.integers(0, 10, 8)) for _ in range(steps)]


def _layers(net):
    """The net's layer objects (the book keeps an OrderedDict in MultiLayerNetExtend, a list elsewhere)."""
    return list(net.layers.values()) if isinstance(net.layers, dict) else list(net.layers)


def _train(net, opt, batches):
    for x, t in batches:
        opt.update(net.params, net.gradient(x, t))


@pytest.mark.parametrize("kind", ["convnet", "mlp-bn-dropout"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resume_from_checkpoint_files_is_bit_identical(kind, dtype, tmp_path):
    steps, k = 12, 5
    batches = _batches(kind, dtype, steps)

    straight = _net(kind, dtype)
    _train(straight, optim.Adam(lr=0.01), batches)

    first = _net(kind, dtype)
    opt = optim.Adam(lr=0.01)
    _train(first, opt, batches[:k])
    first.save_params(tmp_path / "net.npz")
    checkpoint.save_arrays(tmp_path / "opt.npz", opt.state_dict())
    # Dropout's random stream is part of the training state; carry it over as a user resuming would re-seed.
    rng_states = [layer._snapshot() for layer in _layers(first)]

    resumed = _net(kind, dtype)
    resumed.load_params(tmp_path / "net.npz")
    for layer, state in zip(_layers(resumed), rng_states, strict=True):
        layer._restore(state)
    opt2 = optim.Adam(lr=0.5)  # other hyperparameters: load_state_dict restores them
    opt2.load_state_dict(checkpoint.load_arrays(tmp_path / "opt.npz"))
    _train(resumed, opt2, batches[k:])

    assert resumed.params.keys() == straight.params.keys()
    for key in straight.params:
        assert resumed.params[key].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(resumed.params[key], straight.params[key], err_msg=key)
