"""fastnn.trainer.Trainer: the book's loop on a real fastnn net, reproducibility, output modes, argument checks."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

import fastnn.optim as optim
from fastnn.nets import MultiLayerNet
from fastnn.trainer import Trainer, TrainResult


def _blobs(n, seed, d=10, k=3):
    """``k`` well separated Gaussian classes in ``d`` dimensions (learnable in a few epochs)."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).standard_normal((k, d)) * 2.0
    t = rng.integers(0, k, n)
    return centers[t] + rng.standard_normal((n, d)), t


X_TRAIN, T_TRAIN = _blobs(300, 1)
X_TEST, T_TEST = _blobs(100, 2)


class TinyNet:
    """Softmax regression with the book's network interface, recording what the Trainer asks of it."""

    def __init__(self, d=10, k=3, dtype=np.float64):
        self.params = {"W": np.zeros((d, k), dtype), "b": np.zeros(k, dtype)}
        self.batches = []
        self.accuracy_calls = []

    def _probs(self, x):
        s = x @ self.params["W"] + self.params["b"]
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def loss(self, x, t):
        return -np.mean(np.log(self._probs(x)[np.arange(len(t)), t] + 1e-12))

    def gradient(self, x, t):
        self.batches.append(x.copy())
        d = self._probs(x)
        d[np.arange(len(t)), t] -= 1
        d /= len(t)
        return {"W": x.T @ d, "b": d.sum(axis=0)}

    def accuracy(self, x, t):
        self.accuracy_calls.append(len(x))
        return float(np.mean(np.argmax(self._probs(x), axis=1) == t))


def _trainer(net=None, **kw):
    kw = {"epochs": 5, "mini_batch_size": 30, "verbose": False, "progress": False, **kw}
    net = net if net is not None else MultiLayerNet(10, [20], 3, seed=0)
    return Trainer(net, X_TRAIN, T_TRAIN, X_TEST, T_TEST, **kw)


@pytest.mark.parametrize("name,param", [("SGD", {"lr": 0.1}), ("Momentum", {"lr": 0.05}), ("Nesterov", {"lr": 0.05}),
                                        ("AdaGrad", {"lr": 0.1}), ("RMSprop", {"lr": 0.005}), ("Adam", {"lr": 0.01}),
                                        ("AdamW", {"lr": 0.01}), ("AMSGrad", {"lr": 0.01}),
                                        ("AdaBound", {"lr": 0.01})])
def test_multilayernet_learns_and_lists_have_book_lengths(name, param):
    tr = _trainer(optimizer=name, optimizer_param=param, seed=0)
    result = tr.train()
    # 300 rows / 30 per batch = 10 steps per epoch, 5 epochs
    assert tr.iter_per_epoch == 10 and tr.max_iter == 50
    assert len(tr.train_loss_list) == 50
    assert len(tr.train_acc_list) == len(tr.test_acc_list) == 5 == tr.current_epoch
    first, last = np.mean(tr.train_loss_list[:10]), np.mean(tr.train_loss_list[-10:])
    assert last < 0.6 * first, (first, last)
    assert result.test_acc >= 0.9 and result.train_acc >= 0.9
    assert isinstance(result, TrainResult) and result.iterations == 50 and result.epochs == 5
    assert result.final_loss == tr.train_loss_list[-1] and result.wall_time > 0
    assert all(type(v) is float for v in tr.train_loss_list + tr.train_acc_list + tr.test_acc_list)


def test_same_seed_same_lists_other_seed_other_lists():
    runs = []
    for seed in (7, 7, 8):
        tr = _trainer(optimizer="Adam", optimizer_param={"lr": 0.01}, seed=seed)
        tr.train()
        runs.append((tr.train_loss_list, tr.train_acc_list, tr.test_acc_list))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


def test_seed_none_follows_numpy_global_state_as_the_book():
    lists = []
    for _ in range(2):
        np.random.seed(3)  # noqa: NPY002 -- the book's global generator is the point here
        tr = _trainer(net=TinyNet(), epochs=2)
        tr.train()
        lists.append(tr.train_loss_list)
    assert lists[0] == lists[1]
    np.random.seed(3)  # noqa: NPY002
    expected_first = np.random.choice(300, 30)  # noqa: NPY002
    np.testing.assert_array_equal(_first_batch(seed=None, pre_seed=3), X_TRAIN[expected_first])


def _first_batch(seed, pre_seed=None):
    net = TinyNet()
    if pre_seed is not None:
        np.random.seed(pre_seed)  # noqa: NPY002
    _trainer(net=net, seed=seed).train_step()
    return net.batches[0]


def test_int_seed_draws_batches_from_default_rng():
    idx = np.random.default_rng(5).integers(0, 300, 30)
    np.testing.assert_array_equal(_first_batch(seed=5), X_TRAIN[idx])
    gen = np.random.default_rng(5)
    np.testing.assert_array_equal(_first_batch(seed=gen), X_TRAIN[idx])


def test_float32_network_stays_float32():
    net = MultiLayerNet(10, [16], 3, seed=1, dtype=np.float32)
    tr = _trainer(net=net, optimizer="adam", optimizer_param={"lr": 0.01}, seed=0, epochs=2)
    tr.train()
    assert all(p.dtype == np.float32 for p in net.params.values())
    assert all(a.dtype == np.float32 for s in ("m", "v") for a in getattr(tr.optimizer, s).values())
    assert tr.optimizer.iter == tr.max_iter == 20


def test_epoch_evaluation_at_each_epochs_first_step_with_sample_limit():
    net = TinyNet()
    tr = _trainer(net=net, epochs=3, evaluate_sample_num_per_epoch=40, seed=0)
    steps_at_eval = []
    for _ in range(tr.max_iter):
        before = len(tr.train_acc_list)
        tr.train_step()
        if len(tr.train_acc_list) > before:
            steps_at_eval.append(tr.current_iter - 1)
    assert steps_at_eval == [0, 10, 20]  # the book's `current_iter % iter_per_epoch == 0`
    assert net.accuracy_calls == [40, 40] * 3  # train sample, test sample, each epoch


def test_fractional_iter_per_epoch_still_evaluates_every_epoch():
    # 250 rows / 100 per batch: 2.5 steps an epoch, int(3 * 2.5) = 7 steps. The book's float modulo would
    # evaluate at step 0 only.
    x, t = _blobs(250, 4)
    tr = Trainer(TinyNet(), x, t, X_TEST, T_TEST, epochs=3, mini_batch_size=100, verbose=False, progress=False,
                 seed=0)
    tr.train()
    assert tr.max_iter == 7 and len(tr.train_loss_list) == 7
    assert len(tr.train_acc_list) == 3 and tr.current_epoch == 3


def test_batch_larger_than_training_set():
    x, t = _blobs(20, 5)
    tr = Trainer(TinyNet(), x, t, X_TEST, T_TEST, epochs=4, mini_batch_size=100, verbose=False, progress=False,
                 seed=0)
    tr.train()
    assert tr.iter_per_epoch == 1 and len(tr.train_loss_list) == 4 and len(tr.test_acc_list) == 4


def test_optimizer_instance_used_as_given():
    opt = optim.Momentum(lr=0.1, momentum=0.5)
    tr = _trainer(net=TinyNet(), optimizer=opt, epochs=1, seed=0)
    tr.train()
    assert tr.optimizer is opt and opt.iter == 10 and set(opt.v) == {"W", "b"}
    with pytest.raises(ValueError, match="Trainer: optimizer_param must be left out when optimizer is an instance"):
        _trainer(net=TinyNet(), optimizer=opt, optimizer_param={"lr": 0.3})


def test_named_optimizer_gets_param_and_default_is_books():
    tr = _trainer(net=TinyNet())
    assert type(tr.optimizer) is optim.SGD and tr.optimizer.lr == 0.01
    tr = _trainer(net=TinyNet(), optimizer="rmsprop", optimizer_param={"lr": 0.02, "decay_rate": 0.9})
    assert type(tr.optimizer) is optim.RMSprop and tr.optimizer.decay_rate == 0.9
    tr = _trainer(net=TinyNet(), optimizer="Adam")  # the book passes {'lr': 0.01} to any named optimizer
    assert tr.optimizer.lr == 0.01


# -- output ---------------------------------------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_verbose_without_bar_prints_as_the_book(capsys):
    _trainer(net=TinyNet(), epochs=2, verbose=True, progress=False, seed=0).train()
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("train loss:") for line in out) == 20
    epoch_lines = [line for line in out if line.startswith("=== epoch:")]
    assert len(epoch_lines) == 2 and epoch_lines[1].startswith("=== epoch:2, train acc:")
    assert out[-2] == "=============== Final Test Accuracy ===============" and out[-1].startswith("test acc:")


def test_progress_bar_shows_loss_and_accuracy(capsys):
    pytest.importorskip("tqdm")
    tr = _trainer(net=TinyNet(), epochs=2, verbose=True, progress=True, seed=0)
    tr.train()
    out = capsys.readouterr().out
    assert "train loss:" not in out  # the bar replaces the per-step lines
    assert "20/20" in out and "loss " in out and "test acc " in out and "epoch 2/2" in out
    assert out.count("=== epoch:") == 2 and "Final Test Accuracy" in out
    assert tr._bar is None  # closed


def test_progress_bar_without_verbose_shows_only_the_bar(capsys):
    pytest.importorskip("tqdm")
    _trainer(net=TinyNet(), epochs=1, verbose=False, progress=True, seed=0).train()
    out = capsys.readouterr().out
    assert "10/10" in out and "=== epoch" not in out and "Final" not in out


def test_silent_when_not_verbose_and_no_bar(capsys):
    _trainer(net=TinyNet(), epochs=1, verbose=False, seed=0).train()
    assert capsys.readouterr().out == ""


def test_progress_none_shows_bar_only_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stdout", pipe)
    _trainer(net=TinyNet(), epochs=1, verbose=True, progress=None, seed=0).train()
    assert "train loss:" in pipe.getvalue() and "10/10" not in pipe.getvalue()
    tty = _Terminal()
    monkeypatch.setattr(sys, "stdout", tty)
    _trainer(net=TinyNet(), epochs=1, verbose=True, progress=None, seed=0).train()
    assert "10/10" in tty.getvalue() and "train loss:" not in tty.getvalue()
    tty = _Terminal()
    monkeypatch.setattr(sys, "stdout", tty)
    _trainer(net=TinyNet(), epochs=1, verbose=False, progress=None, seed=0).train()
    assert tty.getvalue() == ""


def test_without_tqdm_falls_back_to_prints(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` now raises ImportError
    tty = _Terminal()
    monkeypatch.setattr(sys, "stdout", tty)
    _trainer(net=TinyNet(), epochs=1, verbose=True, progress=None, seed=0).train()
    assert tty.getvalue().count("train loss:") == 10
    tty = _Terminal()
    monkeypatch.setattr(sys, "stdout", tty)
    with pytest.warns(RuntimeWarning, match="progress=True needs tqdm"):
        _trainer(net=TinyNet(), epochs=1, verbose=True, progress=True, seed=0).train()
    assert tty.getvalue().count("train loss:") == 10


# -- arguments ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,exc,msg", [
    ({"epochs": 0}, ValueError, "Trainer: epochs must be >= 1, got 0"),
    ({"epochs": 2.5}, TypeError, "Trainer: epochs must be an int"),
    ({"mini_batch_size": 0}, ValueError, "Trainer: mini_batch_size must be >= 1"),
    ({"evaluate_sample_num_per_epoch": 0}, ValueError, "evaluate_sample_num_per_epoch must be >= 1"),
    ({"optimizer": "adm"}, ValueError, "fastnn.optim.get: name must be one of 'sgd'"),
    ({"optimizer": 3}, TypeError, "Trainer: optimizer must be a name such as 'Adam'"),
    ({"optimizer": "adam", "optimizer_param": {"lr": -1}}, ValueError, "Adam: lr must be a finite number > 0.0"),
    ({"optimizer_param": [("lr", 0.1)]}, TypeError, "Trainer: optimizer_param must be a dict"),
    ({"progress": "yes"}, TypeError, "Trainer: progress must be None, True or False"),
    ({"seed": -1}, ValueError, "Trainer: seed must be >= 0"),
    ({"seed": "a"}, TypeError, "Trainer: seed must be an int"),
])
def test_bad_arguments(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        _trainer(net=TinyNet(), **kw)


def test_bad_data_and_network():
    with pytest.raises(ValueError, match="Trainer: the labels of x_train must be 300 rows like x_train, got 299"):
        Trainer(TinyNet(), X_TRAIN, T_TRAIN[:-1], X_TEST, T_TEST)
    with pytest.raises(ValueError, match="the labels of x_test must be 100 rows"):
        Trainer(TinyNet(), X_TRAIN, T_TRAIN, X_TEST, T_TEST[:5])
    with pytest.raises(ValueError, match="Trainer: x_train must be at least 1 row"):
        Trainer(TinyNet(), X_TRAIN[:0], T_TRAIN[:0], X_TEST, T_TEST)
    with pytest.raises(TypeError, match="Trainer: network must be an object with params.*without 'accuracy'"):
        Trainer(object.__new__(type("NoAcc", (), {"params": {}, "gradient": 0, "loss": 0})), X_TRAIN, T_TRAIN,
                X_TEST, T_TEST)


def test_optimizer_error_in_a_step_leaves_params_unchanged():
    """A network whose gradient has a wrong shape: the optimizer refuses before touching anything."""
    net = TinyNet()
    net.params["W"][...] = 1.0
    bad = net.gradient
    net.gradient = lambda x, t: {**bad(x, t), "b": np.zeros(4)}
    tr = _trainer(net=net, seed=0)
    with pytest.raises(ValueError, match=r"SGD.update: grads\['b'\] must be of shape \(3,\)"):
        tr.train_step()
    assert np.all(net.params["W"] == 1.0) and tr.train_loss_list == []
