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
* ``hyperparam`` -- the book's random search (ch06/hyperparameter_optimization.py): 100 trials of learning rate
  10^U(-6,-2) and weight decay 10^U(-8,-4) on a 6x100 net, 500 training images of which 20% validate, SGD, batch
  100, 50 epochs; the validation curves of the best 20 (Figure 6-24) and accuracy over (lr, weight decay).
  Every trial is appended to ``--results`` (JSON lines) as it finishes; ``--resume`` runs only the missing ones.

Each prints a table of the final numbers and writes ``experiment_<NAME>.png`` in ``--out``. The book uses MNIST
(``--dataset mnist``); the default, scikit-learn's 8x8 digits, needs no download and shows the same effects.

The trainings of an experiment are independent: they run on a Dask cluster (the ``distributed`` extra), a
LocalCluster of one single-threaded worker per core started for the command, or the scheduler at ``--scheduler
ADDRESS``. ``--scheduler none`` (or a missing extra) runs them one after another in this process. A training gives
the same numbers wherever it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import CLIError, _data, _positive_int, add_quiet_argument, add_threads_argument, apply_threads

NAMES = ("optimizers", "init", "activations", "batchnorm", "overfit", "hyperparam")

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
                        "dropout 300, as the book); hyperparam: epochs per trial (default 50 as the book)")
    p.add_argument("--trials", type=_positive_int, default=100, help="hyperparam: trials of the random search")
    p.add_argument("--results", default=None,
                   help="hyperparam: JSON-lines file, one line per finished trial (default "
                        "OUT/experiment_hyperparam.jsonl)")
    p.add_argument("--resume", action="store_true",
                   help="hyperparam: keep the trials already in --results and run only the missing ones")
    p.add_argument("--scales", type=_positive_int, default=16,
                   help="batchnorm: number of initial weight scales, log-spaced from 1 to 1e-4")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="dtype of data and weights")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batches")
    p.add_argument("--out", default=".", help="folder for the PNG")
    p.add_argument("--no-plot", action="store_true", help="print the table only (no matplotlib needed)")
    add_threads_argument(p)
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler (tcp://host:8786) to run the trainings on; 'local' starts a LocalCluster "
                        "for this command, 'none' runs them here (default: local when the distributed extra is "
                        "installed, else none)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="LocalCluster: worker processes (default: cores // --worker-threads)")
    p.add_argument("--worker-threads", type=_positive_int, default=1,
                   help="Numba threads per worker (more: fewer, fatter workers)")
    add_quiet_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    apply_threads(args.threads)
    if args.name != "hyperparam" and (args.resume or args.results is not None):
        raise CLIError("--results and --resume apply to the hyperparam experiment only")
    with _cluster(args) as client:
        _run(args, client)
    print(f"wall time: {time.perf_counter() - start:.2f} s")
    return 0


def _run(args: argparse.Namespace, client: Any) -> dict[str, Any]:
    if not args.no_plot:
        from ..datasets._optional import require

        require("matplotlib", f"fastnn experiment {args.name}'s plot (or pass --no-plot)")
    os.makedirs(args.out, exist_ok=True)
    args.client = client
    png = None if args.no_plot else os.path.join(args.out, f"experiment_{args.name}.png")
    result = EXPERIMENTS[args.name](args, np.dtype(args.dtype), png)
    if png is not None:
        print(f"plot: {png}")
    return result


def run_named(name: str, client: Any = None, **options: Any) -> dict[str, Any]:
    """:func:`fastnn.distributed.run_experiment`: experiment ``name`` with the command line's defaults and
    ``options`` (long option names with ``_``), its trainings on ``client`` (None: in this process)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    if name not in NAMES:
        raise ValueError(f"run_experiment: name must be one of {', '.join(NAMES)}, got {name!r}")
    args = parser.parse_args([name])
    for key, value in options.items():
        if key in ("name", "run", "scheduler", "workers", "worker_threads") or not hasattr(args, key):
            raise TypeError(f"run_experiment: unknown option {key!r}")
        setattr(args, key, value)
    return _run(args, client)


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Any:
    """The Dask client the trainings go to (None: this process), per ``--scheduler``."""
    import importlib.util

    scheduler = args.scheduler
    if scheduler is None:
        scheduler = "local" if importlib.util.find_spec("distributed") is not None else "none"
    if scheduler == "none":
        print("running in this process")
        yield None
        return
    from ..distributed import connect

    with connect(None if scheduler == "local" else scheduler, n_workers=args.workers,
                 threads=args.worker_threads) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        kind = "LocalCluster" if scheduler == "local" else f"scheduler {scheduler}"
        print(f"cluster: {kind}, {len(workers)} workers x {args.worker_threads} Numba thread(s)")
        yield client


def _map(args: argparse.Namespace, task: Callable[..., Any], items: list[dict[str, Any]], data: Any
         ) -> list[Any]:
    """``task(item, args.seed, data)`` for every item, on ``args.client``'s workers or here; results in order.

    On a cluster each machine first runs every item for a couple of steps (``item['warm']``), which compiles the
    kernels once per machine before the workers need them.
    """
    from ..distributed import Trial, run_trials

    trials = [Trial(i, args.seed, item) for i, item in enumerate(items)]
    warm = functools.partial(_warm_items, task, items, args.seed) if args.client is not None else None
    records = run_trials(trials, task, data=data, client=args.client, warm=warm, progress=not args.quiet,
                         desc=args.name)
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        raise CLIError(f"{len(failed)} of {len(records)} trainings failed; the first: {failed[0]['error']}")
    return [r["result"] for r in records]


def _warm_items(task: Callable[..., Any], items: list[dict[str, Any]], seed: int, data: Any) -> None:
    for item in items:
        task({**item, "warm": True}, seed, data)


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
def _make_net(spec: dict[str, Any], d: int, dtype: np.dtype, seed: int) -> Any:
    """A MultiLayerNet(Extend) from a picklable spec: ``{'extend': bool, 'hidden': [...], **keyword arguments}``."""
    from ..nets import MultiLayerNet, MultiLayerNetExtend

    spec = dict(spec)
    cls = MultiLayerNetExtend if spec.pop("extend", False) else MultiLayerNet
    hidden = spec.pop("hidden")
    return cls(d, list(hidden), 10, dtype=dtype, seed=seed, **spec)


def _loss_run(item: dict[str, Any], seed: int, data: tuple) -> dict[str, Any]:
    """One net of a loss race: ``item['iters']`` steps on the shared batches; its losses and accuracies."""
    from ..optim import get

    x, t, xt, tt, batches = data
    net = _make_net(item["net"], x.shape[1], x.dtype, seed)
    optimizer = get(item["optimizer"], **item["hyper"])
    batches = batches[:2] if item.get("warm") else batches
    losses = np.empty(len(batches))
    t0 = time.perf_counter()
    for i, idx in enumerate(batches):
        xb, tb = x[idx], t[idx]
        grads = net.gradient(xb, tb)
        optimizer.update(net.params, grads)
        losses[i] = float(net.loss(xb, tb))
    seconds = time.perf_counter() - t0
    return {"losses": losses, "train_acc": float(net.accuracy(x, t)), "test_acc": float(net.accuracy(xt, tt)),
            "seconds": seconds}


def _loss_race(args: argparse.Namespace, dtype: np.dtype, png: str | None, runs: dict[str, dict[str, Any]],
               title: str, ylim: tuple[float, float]) -> dict[str, Any]:
    """Train each (net, optimizer) of ``runs`` for ``--iters`` steps on the same batches; table and loss plot."""
    (x, t), (xt, tt) = _load(args, dtype)
    # The book's 2000, except for optimizers on digits: every optimizer but SGD has learnt them by 500.
    iters = args.iters or (500 if args.dataset == "digits" and args.name == "optimizers" else 2000)
    batches = _batches(np.random.default_rng(args.seed + 1), len(x), 128, iters)
    outcomes = _map(args, _loss_run, list(runs.values()), (x, t, xt, tt, batches))
    curves, rows = {}, []
    for name, out in zip(runs, outcomes, strict=True):
        losses = out["losses"]
        curves[name] = losses
        tail = losses[-max(iters // 10, 1):]
        rows.append([name, float(np.mean(tail)), out["train_acc"], out["test_acc"],
                     f"{1e3 * out['seconds'] / iters:.2f}"])
    print(f"{iters} iterations, batch 128; final loss = mean of the last 10% of iterations")
    _table(["run", "final loss", "train acc", "test acc", "ms/iter"], rows)
    if png is not None:
        from .plotting import loss_curves

        loss_curves(curves, png, f"{title}\n({args.dataset}, {iters} iterations, batch 128, fastnn {dtype})", ylim)
    return {"curves": curves, "rows": rows}


def _optimizers(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> dict[str, Any]:
    # Same seed: every optimizer starts from the same initial weights.
    runs = {label: {"net": {"hidden": [100] * 4}, "optimizer": name, "hyper": hyper}
            for label, (name, hyper) in OPTIMIZERS.items()}
    return _loss_race(args, dtype, png, runs, "Optimizers on a 4x100 MultiLayerNet", (0.0, 1.0))


def _init(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> dict[str, Any]:
    runs = {label: {"net": {"hidden": [100] * 4, "weight_init_std": std}, "optimizer": "sgd", "hyper": {"lr": 0.01}}
            for label, std in (("std=0.01", 0.01), ("Xavier", "sigmoid"), ("He", "relu"))}
    return _loss_race(args, dtype, png, runs, "Weight initialisation (ReLU, SGD lr 0.01)", (0.0, 2.5))


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


def _activation_run(item: dict[str, Any], seed: int, x0: np.ndarray) -> list[np.ndarray]:
    """The activations of each layer of one configuration."""
    from ..backend import ops

    forward = {"sigmoid": ops.sigmoid_forward, "tanh": ops.tanh_forward, "relu": ops.relu_forward}
    node_num = x0.shape[1]
    z, per_layer = x0, []
    weights = np.random.default_rng(seed + 1)  # the same draws for every configuration
    for _ in range(1 if item.get("warm") else item["layers"]):
        w = (weights.standard_normal((node_num, node_num)) * item["scale"]).astype(x0.dtype)
        z = forward[item["activation"]](z @ w)
        per_layer.append(z)
    return per_layer


def _activations(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> dict[str, Any]:
    node_num, layers = 100, 5
    rng = np.random.default_rng(args.seed)
    x0 = rng.standard_normal((1000, node_num)).astype(dtype)
    items = [{"activation": act, "scale": float(scale(node_num)), "layers": layers}
             for _, act, scale in ACTIVATION_RUNS]
    outcomes = _map(args, _activation_run, items, x0)
    rows, hist_rows, ranges, y_max = [], [], {}, {}
    for (label, act, _), per_layer in zip(ACTIVATION_RUNS, outcomes, strict=True):
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
    return {"rows": rows}


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


def _curves_run(item: dict[str, Any], seed: int, data: tuple) -> tuple[list[float], list[float]]:
    """One net of batchnorm or overfit: the book's loop with SGD lr 0.01, batch 100."""
    from ..optim import SGD

    x, t, xt, tt = data
    net = _make_net(item["net"], x.shape[1], x.dtype, seed)
    with np.errstate(all="ignore"):  # large scales without batchnorm diverge to inf/nan: the point shown
        return _accuracy_curves(net, SGD(lr=0.01), x, t, xt, tt, 2 if item.get("warm") else item["epochs"], 100,
                                np.random.default_rng(seed + 1))


def _batchnorm(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> dict[str, Any]:
    (x, t), _ = _load(args, dtype)
    x, t = x[:1000], t[:1000]
    epochs = args.epochs or 20
    scales = np.logspace(0, -4, num=args.scales)
    items = [{"net": {"extend": True, "hidden": [100] * 5, "weight_init_std": float(scale),
                      "use_batchnorm": use_bn}, "epochs": epochs}
             for scale in scales for use_bn in (True, False)]
    outcomes = _map(args, _curves_run, items, (x, t, None, None))
    with_bn = [acc for acc, _ in outcomes[0::2]]
    without_bn = [acc for acc, _ in outcomes[1::2]]
    rows = [[f"{scale:.2e}", a[-1], b[-1]] for scale, a, b in zip(scales, with_bn, without_bn, strict=True)]
    print(f"{len(x)} training images, SGD lr 0.01, batch 100, {epochs} epochs; final training accuracy")
    _table(["weight scale", "with batchnorm", "without"], rows)
    if png is not None:
        from .plotting import batchnorm_grid

        batchnorm_grid(list(scales), with_bn, without_bn, png,
                       f"Batch normalization: training accuracy by initial weight scale\n"
                       f"({args.dataset}, {len(x)} images, SGD lr 0.01, fastnn {dtype})")
    return {"rows": rows, "with_batchnorm": with_bn, "without": without_bn}


# -- overfit: weight decay and dropout -------------------------------------------------------------------------------
def _overfit(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> dict[str, Any]:
    (x, t), (xt, tt) = _load(args, dtype)
    x, t = x[:300], t[:300]
    # (net, epochs): the book's overfit_weight_decay.py runs 200 epochs, overfit_dropout.py 300 (dropout learns
    # more slowly); --epochs sets all three.
    runs = {
        "no regularisation": ({"hidden": [100] * 6}, 200),
        "weight decay (lambda 0.1)": ({"hidden": [100] * 6, "weight_decay_lambda": 0.1}, 200),
        "dropout (ratio 0.2)": ({"extend": True, "hidden": [100] * 6, "use_dropout": True, "dropout_ration": 0.2},
                                300),
    }
    items = [{"net": net, "epochs": args.epochs or default_epochs} for net, default_epochs in runs.values()]
    outcomes = _map(args, _curves_run, items, (x, t, xt, tt))
    panels, rows = {}, []
    for name, item, (train_acc, test_acc) in zip(runs, items, outcomes, strict=True):
        panels[name] = (train_acc, test_acc)
        rows.append([name, item["epochs"], train_acc[-1], test_acc[-1], train_acc[-1] - test_acc[-1]])
    print(f"{len(x)} training images, {len(xt)} test images, 6x100 MultiLayerNet, SGD lr 0.01, batch 100")
    _table(["regularisation", "epochs", "train acc", "test acc", "gap"], rows)
    if png is not None:
        from .plotting import train_test_panels

        train_test_panels(panels, png, f"Overfitting on {len(x)} images ({args.dataset}, fastnn {dtype})")
    return {"rows": rows, "panels": panels}


# -- hyperparam: the book's random search ----------------------------------------------------------------------------
def _hyperparam(args: argparse.Namespace, dtype: np.dtype, png: str | None) -> dict[str, Any]:
    from ..distributed import best, hyperparam, search

    book = hyperparam.BOOK
    (x, t), _ = _load(args, dtype)
    data = hyperparam.split(x, t, train_size=book["train_size"], validation_rate=book["validation_rate"],
                            seed=args.seed)
    epochs = args.epochs or book["epochs"]
    results = args.results or os.path.join(args.out, "experiment_hyperparam.jsonl")
    train = functools.partial(hyperparam.train, epochs=epochs, batch_size=book["batch_size"])
    print(f"{args.trials} trials: lr 10^U(-6,-2), weight decay 10^U(-8,-4); 6x100 net, {len(data[0])} training "
          f"and {len(data[2])} validation images, SGD, batch {book['batch_size']}, {epochs} epochs")
    try:
        records = search(hyperparam.SPACE, train, args.trials, seed=args.seed, client=args.client, data=data,
                         results=results, resume=args.resume, warm=hyperparam.warm,
                         tag=(args.dataset, str(dtype), book["train_size"], book["validation_rate"]))
    except (FileExistsError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    print(f"results: {results}")
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        print(f"failed: trial {r['trial']} (lr {r['params']['lr']:.3g}, weight decay "
              f"{r['params']['weight_decay']:.3g}): {r['error']}")
    top = best(records, lambda r: r["result"]["final_val_acc"], book["top"])
    print("=========== Hyper-Parameter Optimization Result ===========")
    _table(["rank", "trial", "val acc", "lr", "weight decay"],
           [[f"Best-{i + 1}", r["trial"], r["result"]["final_val_acc"], f"{r['params']['lr']:.3e}",
             f"{r['params']['weight_decay']:.3e}"] for i, r in enumerate(top)])
    print(f"{len(records) - len(failed)} trials done, {len(failed)} failed")
    if png is not None:
        _hyperparam_figure(records, top, png, f"Random search, best {len(top)} of {len(records)} trials "
                           f"({args.dataset}, {epochs} epochs, fastnn {dtype})")
    return {"records": records, "best": top}


def _hyperparam_figure(records: list[dict[str, Any]], top: list[dict[str, Any]], png: str, title: str) -> str:
    """The book's Figure 6-24 (validation, solid, and training, dashed, accuracy of the best trials, 5 per row)
    beside a scatter of final validation accuracy over (lr, weight decay); failed trials as grey crosses."""
    from .plotting import _figure, _save

    fig = _figure(15, 6)
    left, right = fig.subfigures(1, 2, width_ratios=[2, 1])
    rows = max(math.ceil(len(top) / 5), 1)
    axes = np.atleast_1d(left.subplots(rows, 5, sharey=True)).ravel()
    for i, ax in enumerate(axes):
        if i >= len(top):
            ax.set_axis_off()
            continue
        r = top[i]["result"]
        ax.plot(np.arange(len(r["val_acc"])), r["val_acc"])
        ax.plot(np.arange(len(r["train_acc"])), r["train_acc"], "--")
        ax.set_title(f"Best-{i + 1}", fontsize=9)
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks([])
    left.suptitle(title)
    ax = right.subplots()
    ok = [r for r in records if r["status"] == "ok"]
    acc = np.array([r["result"]["final_val_acc"] for r in ok], dtype=np.float64)
    sc = ax.scatter([r["params"]["lr"] for r in ok], [r["params"]["weight_decay"] for r in ok], c=acc,
                    cmap="viridis", vmin=0.0, vmax=1.0, s=25)
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        ax.scatter([r["params"]["lr"] for r in bad], [r["params"]["weight_decay"] for r in bad], marker="x",
                   color="grey", label="failed")
        ax.legend()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("weight decay")
    ax.set_title("final validation accuracy")
    right.colorbar(sc, ax=ax)
    return _save(fig, png)


EXPERIMENTS: dict[str, Callable[[argparse.Namespace, np.dtype, str | None], dict[str, Any]]] = {
    "optimizers": _optimizers,
    "init": _init,
    "activations": _activations,
    "batchnorm": _batchnorm,
    "overfit": _overfit,
    "hyperparam": _hyperparam,
}
