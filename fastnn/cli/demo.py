"""Train the book's SimpleConvNet on real handwritten digits with fastnn, and measure the speed-up over NumPy.

Steps: (0) compile the kernels the training uses -- on a machine's first run only, since they are then cached on
disk; the demo says so, counts them as they compile and keeps that time out of its timings; (1) train SimpleConvNet
with Adam through ``fastnn.trainer.Trainer`` (a tqdm bar shows loss and accuracy when stdout is a terminal); (2) run
the same training steps -- same initial weights, same batches -- once on fastnn's kernels and once, with the same
network and optimizer code, on their NumPy twins (``fastnn.backend.using("reference")``), timing each step, and
print the speed-up and how far the two losses drift apart (rounding only); (3) print the final accuracies and wall
time; (4) save the trained parameters (``.npz``) and a PNG of the loss and accuracy curves in ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from .. import _compiling
from . import _data, _positive_int, add_quiet_argument, add_threads_argument, apply_threads, collector_paused

#: Per data set: SimpleConvNet's convolution, epochs, batch size and Adam's learning rate. The 8x8 digits get 3x3
#: filters with padding (a 5x5 filter would leave a 4x4 map, 2x2 after pooling); MNIST gets the book's
#: train_convnet.py network. Weights start at He's scale, with which Adam needs a few epochs only.
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"conv_param": {"filter_num": 30, "filter_size": 3, "pad": 1, "stride": 1}, "epochs": 8,
               "batch_size": 50, "adam_lr": 0.003},
    "mnist": {"conv_param": {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}, "epochs": 2,
              "batch_size": 100, "adam_lr": 0.001},
    "mnist-small": {"conv_param": {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}, "epochs": 4,
                    "batch_size": 100, "adam_lr": 0.003},
}

LEARNING_RATES = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.01, "rmsprop": 0.001,
                  "adam": 0.001, "adamw": 0.001, "amsgrad": 0.001, "adabound": 0.001}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=["image", "text", "transformer"], default="image",
                   help="image: SimpleConvNet on --dataset; text: a character-level LSTM language model on Tiny "
                        "Shakespeare (fastnn.cli.demo_text); transformer: a character-level Transformer on it "
                        "(fastnn.cli.demo_transformer)")
    p.add_argument("--dataset", choices=list(_data.DATASETS), default="digits",
                   help="; ".join(f"{k}: {v}" for k, v in _data.DATASETS.items()))
    p.add_argument("--data-dir", default=None,
                   help="MNIST folder (default $FASTNN_DATA/mnist, else ~/.cache/fastnn/mnist); with --task text "
                        "the folder of Tiny Shakespeare's input.txt (default $FASTNN_DATA/tinyshakespeare, else "
                        "~/.cache/fastnn/tinyshakespeare; downloaded there once when missing)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default per data set: digits 8, "
                   "mnist 2, mnist-small 4)")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="mini-batch size (default 50 for digits, "
                   "100 for MNIST)")
    p.add_argument("--optimizer", choices=sorted(LEARNING_RATES), default="adam", help="fastnn.optim optimizer")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: Adam 0.003 for digits and mnist-small, 0.001 for mnist; other "
                        "optimizers: SGD 0.1, Momentum/AdaGrad 0.01, RMSprop 0.001 ...)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="dtype of data and weights")
    p.add_argument("--seed", type=int, default=0, help="weights, split and batches")
    p.add_argument("--compare-steps", type=_positive_int, default=8,
                   help="training steps timed on fastnn and on the NumPy reference (after one warm-up step)")
    p.add_argument("--out", default=".", help="folder for the PNG and the trained parameters")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG (no matplotlib needed)")
    from . import demo_text, demo_transformer

    demo_text.add_arguments(p)
    demo_transformer.add_arguments(p)
    add_threads_argument(p)
    add_quiet_argument(p)
    p.set_defaults(run=run)


def build_net(input_dim: tuple[int, int, int], preset: dict[str, Any], dtype: np.dtype, seed: int) -> Any:
    """SimpleConvNet for ``input_dim`` (C, H, W), hidden layer 100, 10 classes, He-scaled weights from ``seed``."""
    from ..nets import SimpleConvNet

    return SimpleConvNet(input_dim=input_dim, conv_param=dict(preset["conv_param"]), hidden_size=100,
                         output_size=10, weight_init_std="relu", dtype=dtype, seed=seed)


def warm_up(net: Any, x: np.ndarray, t: np.ndarray, x_test: np.ndarray, t_test: np.ndarray, batch_size: int,
            optimizer: str, lr: float) -> bool:
    """One training step and one evaluation chunk of a copy of ``net``: every kernel the training runs is compiled
    (or loaded from the cache) here, outside the timed training, and ``net`` itself is untouched.

    On a first run the work is shared with a second process (:func:`fastnn._compiling.first_gradient`): it compiles
    the backward pass while this one compiles the forward pass, the evaluation and the optimizer's update (on a copy
    of the parameters and zero gradients); the step then loads the worker's kernels from the on-disk cache. The
    halves cost about the same (measured on the project machine, quiet: the worker's backward ~5 s, the forward
    ~3.6 s plus the optimizer ~1.5 s here; with the optimizer in the worker, the worker took 7.3 s while this
    process waited). Returns whether a worker compiled its part.
    """
    from ..optim import get

    twin = copy.deepcopy(net)
    xb, tb = x[:batch_size], t[:batch_size]
    step = get(optimizer, lr=lr)  # built first: the first gradient compiles a fresh optimizer's step on copies

    def forward() -> None:
        twin.loss(xb, tb, train_flg=True)
        twin.accuracy(x_test[:100], t_test[:100])  # the Trainer's evaluation chunks (accuracy's batch_size=100)

    shared = _compiling.first_gradient(twin, forward, xb, tb)
    step.update(twin.params, twin.gradient(xb, tb))
    _compiling.settle()  # the worker's parallel twins: the training and the speed comparison are timed on them
    return shared


def compare_speed(net: Any, x: np.ndarray, t: np.ndarray, batch_size: int, steps: int, lr: float,
                  seed: int) -> dict[str, float]:
    """Time ``steps`` identical Adam training steps of ``net`` on fastnn's kernels and of a copy on the NumPy twins.

    The copy is the same network and the same :class:`fastnn.optim.Adam` run inside
    ``fastnn.backend.using("reference")``: only the kernels differ, so the ratio is the speed-up the kernels bring
    to a whole training step (the affine layers are BLAS either way), and the losses agree to rounding.
    ``net`` must hold the initial weights; it is trained further here. One extra warm-up step runs first on both
    sides (not timed). Returns median seconds per step of each, their ratio and the largest relative loss
    difference over the steps.
    """
    from .. import backend
    from ..optim import Adam

    nets = {"kernels": net, "reference": copy.deepcopy(net)}
    optimizers = {name: Adam(lr=lr) for name in nets}
    rng = np.random.default_rng(seed + 1)
    times: dict[str, list[float]] = {name: [] for name in nets}
    diffs = []
    with collector_paused():  # as python -m fastnn.bench times
        for step in range(steps + 1):
            batch = rng.integers(0, len(x), batch_size)
            xb, tb = x[batch], t[batch]
            losses = {}
            for name, side in nets.items():
                with backend.using(name):
                    start = time.perf_counter()
                    optimizers[name].update(side.params, side.gradient(xb, tb))
                    elapsed = time.perf_counter() - start
                losses[name] = float(_last_loss(side))  # the step's own forward, before its update
                if step:  # step 0 warms caches and allocators on both sides
                    times[name].append(elapsed)
            diffs.append(abs(losses["kernels"] - losses["reference"]) / max(abs(losses["reference"]), 1e-12))
    fast, ref = statistics.median(times["kernels"]), statistics.median(times["reference"])
    return {"fastnn_s": fast, "numpy_s": ref, "speedup": ref / fast, "max_rel_loss_diff": max(diffs)}


def _last_loss(net: Any) -> Any:
    """The loss of the last ``gradient`` call: the book's nets keep it in their last layer, CharLSTM in itself."""
    return net.last_loss if hasattr(net, "last_loss") else net.last_layer.loss


def run(args: argparse.Namespace) -> int:
    if args.task == "text":
        from . import demo_text

        return demo_text.run(args)
    if args.task == "transformer":
        from . import demo_transformer

        return demo_transformer.run(args)
    wall_start = time.perf_counter()
    apply_threads(args.threads)
    preset = PRESETS[args.dataset]
    epochs = args.epochs or preset["epochs"]
    batch_size = args.batch_size or preset["batch_size"]
    if args.lr is not None:
        lr = args.lr
    else:
        lr = preset["adam_lr"] if args.optimizer == "adam" else LEARNING_RATES[args.optimizer]
    dtype = np.dtype(args.dtype)
    if not args.no_plot:
        from ..datasets._optional import require

        require("matplotlib", "fastnn demo's plot (or pass --no-plot)")  # fail before training, not after
    os.makedirs(args.out, exist_ok=True)
    drawer = None
    if not args.no_plot:
        from .plotting import Drawer

        drawer = Drawer.start()  # imports matplotlib on the other core meanwhile
    try:
        return _run_image(args, drawer, wall_start, epochs, batch_size, lr, dtype, preset)
    finally:
        if drawer is not None:
            drawer.close()


def _run_image(args: argparse.Namespace, drawer: Any, wall_start: float, epochs: int, batch_size: int, lr: float,
               dtype: np.dtype, preset: dict[str, Any]) -> int:
    from ..checkpoint import save_arrays
    from ..trainer import Trainer

    (x_train, t_train), (x_test, t_test) = _data.load(args.dataset, flatten=False, dtype=dtype, seed=args.seed,
                                                      data_dir=args.data_dir)
    print(f"data: {args.dataset}, {len(x_train)} training and {len(x_test)} test images of shape "
          f"{x_train.shape[1:]}, {dtype}")
    net = build_net(x_train.shape[1:], preset, dtype, args.seed)
    untrained = copy.deepcopy(net)  # the speed comparison starts from the same initial weights
    print(f"model: SimpleConvNet conv {preset['conv_param']}, hidden 100, He init; {args.optimizer} lr {lr}, "
          f"batch {batch_size}, {epochs} epochs")

    warm_start = time.perf_counter()
    with _compiling.watch(show=not args.quiet, stream=sys.stdout) as compiled:
        shared = warm_up(net, x_train, t_train, x_test, t_test, batch_size, args.optimizer, lr)
    if compiled.count:
        print(f"kernels: {compiled.count} compiled in {compiled.seconds:.1f} s"
              + (f", the backward pass's in a second process meanwhile ({time.perf_counter() - warm_start:.1f} s "
                 "in all)" if shared else "") + " (first run on this machine; cached on disk for the next runs)")
    else:
        print("kernels: loaded from the on-disk cache")

    trainer = Trainer(net, x_train, t_train, x_test, t_test, epochs=epochs, mini_batch_size=batch_size,
                      optimizer=args.optimizer, optimizer_param={"lr": lr}, verbose=False,
                      seed=args.seed, progress=not args.quiet and _want_bar())
    with _compiling.watch() as late:  # a size the warm-up did not meet (a last partial batch) compiles here
        result = trainer.train()
    print("epoch  train acc  test acc")
    for i, (a, b) in enumerate(zip(trainer.train_acc_list, trainer.test_acc_list, strict=True)):
        print(f"{i:5d}  {a:9.4f}  {b:8.4f}")
    train_s = result.wall_time - late.seconds
    print(f"training: {result.iterations} steps in {train_s:.2f} s "
          f"({1e3 * train_s / max(result.iterations, 1):.1f} ms per step, evaluation included"
          + (f"; {late.count} more kernels compiled meanwhile in {late.seconds:.1f} s, not counted)"
             if late.count else ")"))

    speed = compare_speed(untrained, x_train, t_train, batch_size, args.compare_steps, lr, args.seed)
    print(f"speed (one Adam training step, batch {batch_size}, median of {args.compare_steps}): "
          f"fastnn {1e3 * speed['fastnn_s']:.2f} ms, NumPy reference {1e3 * speed['numpy_s']:.2f} ms")
    print(f"speed-up: {speed['speedup']:.1f}x (largest relative loss difference on the same steps: "
          f"{speed['max_rel_loss_diff']:.1e})")
    if speed["speedup"] < 1 and args.threads is None:
        print("hint: the kernels' and BLAS's thread pools may be fighting over busy cores; try --threads 1")

    params_path = os.path.join(args.out, f"demo_{args.dataset}_params.npz")
    save_arrays(params_path, net.params)
    print(f"final train accuracy: {result.train_acc:.4f}")
    print(f"final test accuracy: {result.test_acc:.4f}")
    print(f"parameters: {params_path}")
    if drawer is not None:
        png = drawer.draw("training_curves", list(trainer.train_loss_list),
                          trainer.train_acc_list + [result.train_acc], trainer.test_acc_list + [result.test_acc],
                          os.path.join(args.out, f"demo_{args.dataset}.png"),
                          f"SimpleConvNet on {args.dataset} ({dtype}, {args.optimizer}, fastnn)",
                          trainer.iter_per_epoch)
        print(f"plot: {png}")
    print(f"wall time: {time.perf_counter() - wall_start:.2f} s")
    return 0


def _want_bar() -> bool:
    """A progress bar when stdout is a terminal and tqdm is installed (the Trainer draws it)."""
    if not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()):
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        print("(install tqdm for a progress bar: pip install \"fastnn[examples]\")")
        return False
    return True
