"""Reproduce the figures of chapter 6 of Deep Learning from Scratch ("Training techniques") with fastnn.

NAME is one of:

* ``optimizers`` -- SGD, Momentum, AdaGrad, RMSprop, Adam and AdamW train the same 4x100 MultiLayerNet from the
  same initial weights on the same batches; smoothed loss curves in one plot (the book's Figure 6-9).
* ``init`` -- the same net trained from weights of standard deviation 0.01, Xavier's and He's scale (Fig. 6-15).
* ``activations`` -- histograms of the activations of each layer of a 5-layer net fed random data, for sigmoid,
  tanh and ReLU with different initial scales (Figures 6-10 to 6-14).
* ``batchnorm`` -- a 5x100 net trained with and without batch normalization from 16 initial scales (Fig. 6-19).
* ``overfit`` -- a 6x100 net on 300 training images, with no regularisation, weight decay and dropout: train
  vs test accuracy (Figures 6-20 to 6-23).

Each prints a table of the final numbers and writes ``experiment_<NAME>.png`` in ``--out``. The book uses MNIST
(``--dataset mnist``); the default, scikit-learn's 8x8 digits, needs no download and shows the same effects.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _data, add_threads_argument, apply_threads

NAMES = ("optimizers", "init", "activations", "batchnorm", "overfit")

#: The optimizers of the book's optimizer_compare_mnist.py with its hyperparameters (the book's defaults), and
#: two more: RMSprop at lr 0.001 (at the book's 0.01 its loss spikes on this net) and AdamW (PyTorch's defaults).
OPTIMIZERS: dict[str, tuple[str, dict[str, float]]] = {
    "SGD (lr 0.01)": ("sgd", {"lr": 0.01}),
    "Momentum (lr 0.01)": ("momentum", {"lr": 0.01}),
    "AdaGrad (lr 0.01)": ("adagrad", {"lr": 0.01}),
    "RMSprop (lr 0.001)": ("rmsprop", {"lr": 0.001}),
    "Adam (lr 0.001)": ("adam", {"lr": 0.001}),
    "AdamW (lr 0.001, wd 0.01)": ("adamw", {"lr": 0.001, "weight_decay": 0.01}),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=NAMES, metavar="NAME", help=" | ".join(NAMES))
    p.add_argument("--dataset", choices=list(_data.DATASETS), default="digits",
                   help="; ".join(f"{k}: {v}" for k, v in _data.DATASETS.items()))
    p.add_argument("--data-dir", default=None,
                   help="MNIST folder (default $FASTNN_DATA/mnist, else ~/.cache/fastnn/mnist)")
    p.add_argument("--iters", type=_positive_int, default=None,
                   help="optimizers, init: training iterations (default 2000 as the book; optimizers on digits: "
                        "500, by when all but SGD have learnt them)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="batchnorm: epochs per run (default 20); overfit: epochs of every run (default 200, "
                        "dropout 300, as the book)")
    p.add_argument("--scales", type=_positive_int, default=16,
                   help="batchnorm: number of initial weight scales, log-spaced from 1 to 1e-4")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="dtype of data and weights")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batches")
    p.add_argument("--out", default=".", help="folder for the PNG")
    p.add_argument("--no-plot", action="store_true", help="print the table only (no matplotlib needed)")
    add_threads_argument(p)
    p.set_defaults(run=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    apply_threads(args.threads)
    if not args.no_plot:
        from ..datasets._optional import require

        require("matplotlib", f"fastnn experiment {args.name}'s plot (or pass --no-plot)")
    os.makedirs(args.out, exist_ok=True)
    png = None if args.no_plot else os.path.join(args.out, f"experiment_{args.name}.png")
    EXPERIMENTS[args.name](args, np.dtype(args.dtype), png)
    if png is not None:
        print(f"plot: {png}")
    print(f"wall time: {time.perf_counter() - start:.2f} s")
    return 0


def _table(header: list[str], rows: list[list[Any]]) -> None:
    """Print a plain aligned table (floats with 4 decimals)."""
    cells = [header] + [[f"{c:.4f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def _load(args: argparse.Namespace, dtype: np.dtype) -> _data.Split:
    data = _data.load(args.dataset, flatten=True, dtype=dtype, seed=args.seed, data_dir=args.data_dir)
    (x, _), (xt, _) = data
    print(f"data: {args.dataset}, {len(x)} training and {len(xt)} test images of {x.shape[1]} pixels, {dtype}")
    return data


def _batches(rng: np.random.Generator, n: int, batch_size: int, count: int) -> np.ndarray:
    """``count`` batches of row indices drawn with replacement, as the book's ``np.random.choice(n, batch)``."""
    return rng.integers(0, n, size=(count, batch_size))


# -- optimizers and init: loss curves ------------------------------------------------------------------------------
def _loss_race(args: argparse.Namespace, dtype: np.dtype, png: str | None, runs: dict[str, Callable[[], Any]],
               title: str, ylim: tuple[float, float]) -> None:
    """Train each (net, optimizer) of ``runs`` for ``--iters`` steps on the same batches; table and loss plot."""
    (x, t), (xt, tt) = _load(args, dtype)
    # The book's 2000, except for optimizers on digits: every optimizer but SGD has learnt them by 500.
    iters = args.iters or (500 if args.dataset == "digits" and args.name == "optimizers" else 2000)
    batches = _batches(np.random.default_rng(args.seed + 1), len(x), 128, iters)
    curves, rows = {}, []
    for name, make in runs.items():
        net, optimizer = make(x.shape[1])
        losses = np.empty(iters)
        t0 = time.perf_counter()
        for i, idx in enumerate(batches):
            xb, tb = x[idx], t[idx]
            grads = net.gradient(xb, tb)
            optimizer.update(net.params, grads)
            losses[i] = float(net.loss(xb, tb))
        seconds = time.perf_counter() - t0
        curves[name] = losses
        tail = losses[-max(iters // 10, 1):]
        rows.append([name, float(np.mean(tail)), float(net.accuracy(x, t)), float(net.accuracy(xt, tt)),
                     f"{1e3 * seconds / iters:.2f}"])
    print(f"{iters} iterations, batch 128; final loss = mean of the last 10% of iterations")
    _table(["run", "final loss", "train acc", "test acc", "ms/iter"], rows)
    if png is not None:
        from .plotting import loss_curves

        loss_curves(curves, png, f"{title}\n({args.dataset}, {iters} iterations, batch 128, fastnn {dtype})", ylim)


def _optimizers(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> None:
    from ..nets import MultiLayerNet
    from ..optim import get

    def maker(name: str, hyper: dict[str, float]) -> Callable[[int], Any]:
        # Same seed: every optimizer starts from the same initial weights.
        return lambda d: (MultiLayerNet(d, [100] * 4, 10, dtype=dtype, seed=args.seed), get(name, **hyper))

    runs = {label: maker(name, hyper) for label, (name, hyper) in OPTIMIZERS.items()}
    _loss_race(args, dtype, png, runs, "Optimizers on a 4x100 MultiLayerNet", (0.0, 1.0))


def _init(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> None:
    from ..nets import MultiLayerNet
    from ..optim import SGD

    def maker(std: Any) -> Callable[[int], Any]:
        return lambda d: (MultiLayerNet(d, [100] * 4, 10, weight_init_std=std, dtype=dtype, seed=args.seed),
                          SGD(lr=0.01))

    runs = {"std=0.01": maker(0.01), "Xavier": maker("sigmoid"), "He": maker("relu")}
    _loss_race(args, dtype, png, runs, "Weight initialisation (ReLU, SGD lr 0.01)", (0.0, 2.5))


# -- activations: histograms ----------------------------------------------------------------------------------------
#: (label, activation, scale of N(0, 1) weights as a function of the fan-in n) -- the book's Figures 6-10..6-14.
ACTIVATION_RUNS: list[tuple[str, str, Callable[[int], float]]] = [
    ("sigmoid, std=1", "sigmoid", lambda n: 1.0),
    ("sigmoid, std=0.01", "sigmoid", lambda n: 0.01),
    ("sigmoid, Xavier", "sigmoid", lambda n: np.sqrt(1.0 / n)),
    ("tanh, Xavier", "tanh", lambda n: np.sqrt(1.0 / n)),
    ("ReLU, std=0.01", "relu", lambda n: 0.01),
    ("ReLU, Xavier", "relu", lambda n: np.sqrt(1.0 / n)),
    ("ReLU, He", "relu", lambda n: np.sqrt(2.0 / n)),
]


def _activations(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> None:
    from .. import kernels

    forward = {"sigmoid": kernels.sigmoid_forward, "tanh": kernels.tanh_forward, "relu": kernels.relu_forward}
    node_num, layers = 100, 5
    rng = np.random.default_rng(args.seed)
    x0 = rng.standard_normal((1000, node_num)).astype(dtype)
    rows, hist_rows, ranges, y_max = [], [], {}, {}
    for label, act, scale in ACTIVATION_RUNS:
        z, per_layer = x0, []
        weights = np.random.default_rng(args.seed + 1)  # the same draws for every configuration
        for _ in range(layers):
            w = (weights.standard_normal((node_num, node_num)) * scale(node_num)).astype(dtype)
            z = forward[act](z @ w)
            per_layer.append(z)
        hist_rows.append((label, per_layer))
        ranges[label] = (-1.0, 1.0) if act == "tanh" else (0.0, 1.0)
        if act == "relu":
            y_max[label] = 0.07 * x0.size  # the book's Figure 6-14 caps the axis at 7,000 of 100,000 values
        rows.append([label] + [f"{a.mean():.3f}/{a.std():.3f}" for a in per_layer])
    print(f"{layers} layers of {node_num} nodes, 1000 random N(0, 1) inputs; mean/std of each layer's activations")
    _table(["configuration"] + [f"layer {i + 1}" for i in range(layers)], rows)
    if png is not None:
        from .plotting import activation_histograms

        activation_histograms(hist_rows, png, f"Activation distributions per layer (fastnn {dtype})", ranges,
                              y_max)


# -- batchnorm: accuracy with and without, per initial scale -------------------------------------------------------
def _accuracy_curves(net: Any, optimizer: Any, x: np.ndarray, t: np.ndarray, xt: np.ndarray | None,
                     tt: np.ndarray | None, epochs: int, batch_size: int, rng: np.random.Generator
                     ) -> tuple[list[float], list[float]]:
    """The book's loop (batch_norm_test.py, overfit_*.py): random batches; at the first step of every epoch, after
    the update, record train (and test) accuracy; stop after ``epochs`` records."""
    iter_per_epoch = max(len(x) // batch_size, 1)
    train_acc: list[float] = []
    test_acc: list[float] = []
    for i in range(iter_per_epoch * (epochs - 1) + 1):
        idx = rng.integers(0, len(x), batch_size)
        grads = net.gradient(x[idx], t[idx])
        optimizer.update(net.params, grads)
        if i % iter_per_epoch == 0:
            train_acc.append(float(net.accuracy(x, t)))
            if xt is not None:
                test_acc.append(float(net.accuracy(xt, tt)))
    return train_acc, test_acc


def _batchnorm(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> None:
    from ..nets import MultiLayerNetExtend
    from ..optim import SGD

    (x, t), _ = _load(args, dtype)
    x, t = x[:1000], t[:1000]
    epochs = args.epochs or 20
    scales = np.logspace(0, -4, num=args.scales)
    with_bn, without_bn, rows = [], [], []
    for scale in scales:
        curves = []
        for use_bn in (True, False):
            net = MultiLayerNetExtend(x.shape[1], [100] * 5, 10, weight_init_std=float(scale), use_batchnorm=use_bn,
                                      dtype=dtype, seed=args.seed)
            with np.errstate(all="ignore"):  # large scales without batchnorm diverge to inf/nan: the point shown
                acc, _ = _accuracy_curves(net, SGD(lr=0.01), x, t, None, None, epochs, 100,
                                          np.random.default_rng(args.seed + 1))
            curves.append(acc)
        with_bn.append(curves[0])
        without_bn.append(curves[1])
        rows.append([f"{scale:.2e}", curves[0][-1], curves[1][-1]])
    print(f"{len(x)} training images, SGD lr 0.01, batch 100, {epochs} epochs; final training accuracy")
    _table(["weight scale", "with batchnorm", "without"], rows)
    if png is not None:
        from .plotting import batchnorm_grid

        batchnorm_grid(list(scales), with_bn, without_bn, png,
                       f"Batch normalization: training accuracy by initial weight scale\n"
                       f"({args.dataset}, {len(x)} images, SGD lr 0.01, fastnn {dtype})")


# -- overfit: weight decay and dropout -------------------------------------------------------------------------------
def _overfit(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> None:
    from ..nets import MultiLayerNet, MultiLayerNetExtend
    from ..optim import SGD

    (x, t), (xt, tt) = _load(args, dtype)
    x, t = x[:300], t[:300]
    d = x.shape[1]
    # (net, epochs): the book's overfit_weight_decay.py runs 200 epochs, overfit_dropout.py 300 (dropout learns
    # more slowly); --epochs sets all three.
    runs = {
        "no regularisation": (lambda: MultiLayerNet(d, [100] * 6, 10, dtype=dtype, seed=args.seed), 200),
        "weight decay (lambda 0.1)": (lambda: MultiLayerNet(d, [100] * 6, 10, weight_decay_lambda=0.1, dtype=dtype,
                                                            seed=args.seed), 200),
        "dropout (ratio 0.2)": (lambda: MultiLayerNetExtend(d, [100] * 6, 10, use_dropout=True, dropout_ration=0.2,
                                                            dtype=dtype, seed=args.seed), 300),
    }
    panels, rows = {}, []
    for name, (make, default_epochs) in runs.items():
        epochs = args.epochs or default_epochs
        train_acc, test_acc = _accuracy_curves(make(), SGD(lr=0.01), x, t, xt, tt, epochs, 100,
                                               np.random.default_rng(args.seed + 1))
        panels[name] = (train_acc, test_acc)
        rows.append([name, epochs, train_acc[-1], test_acc[-1], train_acc[-1] - test_acc[-1]])
    print(f"{len(x)} training images, {len(xt)} test images, 6x100 MultiLayerNet, SGD lr 0.01, batch 100")
    _table(["regularisation", "epochs", "train acc", "test acc", "gap"], rows)
    if png is not None:
        from .plotting import train_test_panels

        train_test_panels(panels, png, f"Overfitting on {len(x)} images ({args.dataset}, fastnn {dtype})")


EXPERIMENTS: dict[str, Callable[[argparse.Namespace, np.dtype, str | None], None]] = {
    "optimizers": _optimizers,
    "init": _init,
    "activations": _activations,
    "batchnorm": _batchnorm,
    "overfit": _overfit,
}
