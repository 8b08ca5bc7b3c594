"""The figures of ``python -m fastnn demo`` and ``python -m fastnn experiment``, drawn with matplotlib.

matplotlib (the ``examples`` extra) is imported only when a figure is drawn. Figures are built with the
object-oriented API (``matplotlib.figure.Figure``) and saved as PNG: no pyplot global state, no window, works
without a display.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..datasets._optional import require


def _figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    require("matplotlib", "drawing the figures (use --no-plot to skip them)")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def _save(fig: Any, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    fig.savefig(path, format="png")
    return path


def smooth_curve(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """The book's ``common/util.py`` ``smooth_curve``: a Kaiser-window (length 11, beta 2) moving average.

    Returns an array of the input's length (edges mirrored). Inputs shorter than 11 points are returned as is.
    """
    x = np.asarray(x, dtype=np.float64)
    window_len = 11
    if x.size < window_len:
        return x.copy()
    s = np.r_[x[window_len - 1:0:-1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5:len(y) - 5]


def training_curves(loss: Sequence[float], train_acc: Sequence[float], test_acc: Sequence[float],
                    path: str | os.PathLike, title: str, iters_per_epoch: float) -> str:
    """Loss per iteration (raw and smoothed) and train/test accuracy per epoch, side by side."""
    # fixed margins for this fixed layout: the constrained layout engine was a third of the demo's drawing time
    fig = _figure(11, 4.2, layout=None)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.12, top=0.86, wspace=0.18)
    ax_loss, ax_acc = fig.subplots(1, 2)
    loss = np.asarray(loss, dtype=np.float64)
    epochs_axis = np.arange(loss.size) / max(iters_per_epoch, 1e-12)
    ax_loss.plot(epochs_axis, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="per batch")
    ax_loss.plot(epochs_axis, smooth_curve(loss), color="tab:blue", linewidth=1.8, label="smoothed")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (cross-entropy)")
    ax_loss.set_ylim(bottom=0)
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend()
    ax_loss.set_title("loss")
    epochs = np.arange(len(train_acc))
    ax_acc.plot(epochs, train_acc, marker="o", label="train")
    ax_acc.plot(epochs, test_acc, marker="s", linestyle="--", label="test")
    ax_acc.set_xlabel("epoch (0 = after the first step)")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.0)
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(loc="lower right")
    last = test_acc[-1] if len(test_acc) else float("nan")
    ax_acc.set_title(f"accuracy (final test {last:.4f})")
    fig.suptitle(title)
    return _save(fig, path)


def loss_curves(curves: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str,
                ylim: tuple[float, float] | None = None) -> str:
    """Smoothed training-loss curves of several runs in one plot (the book's Figures 6-9 and 6-15)."""
    fig = _figure(7.5, 5)
    ax = fig.subplots()
    markers = {0: "o", 1: "x", 2: "s", 3: "D", 4: "^", 5: "v", 6: "*"}
    for i, (name, values) in enumerate(curves.items()):
        y = smooth_curve(values)
        # alternate solid and dashed lines: runs that end up on top of each other (Adam, AdamW) stay visible
        ax.plot(np.arange(y.size), y, marker=markers[i % 7], markevery=max(y.size // 10, 1), label=name,
                linestyle="-" if i % 2 == 0 else "--")
    ax.set_xlabel("iterations")
    ax.set_ylabel("loss (smoothed)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def activation_histograms(rows: Sequence[tuple[str, Sequence[np.ndarray]]], path: str | os.PathLike,
                          title: str, value_range: Mapping[str, tuple[float, float]],
                          y_max: Mapping[str, float] | None = None) -> str:
    """One row per configuration, one column per layer: histogram of that layer's activations (Figures 6-10..14).

    ``rows`` holds ``(label, [activations of layer 1, layer 2, ...])``; ``value_range[label]`` is the x range of
    the row's histograms (``(0, 1)`` for sigmoid as in the book, ``(-1, 1)`` for tanh, ...). ``y_max[label]``
    caps the count axis of a row, as the book caps its ReLU figure, so that the spread of the non-zero values is
    visible beside the tall bar at 0 (clipped; the cap is written on the row).
    """
    y_max = y_max or {}
    n_layers = max(len(acts) for _, acts in rows)
    fig = _figure(2.3 * n_layers, 1.9 * len(rows))
    axes = np.atleast_2d(fig.subplots(len(rows), n_layers, squeeze=False))
    for r, (label, acts) in enumerate(rows):
        lo, hi = value_range[label]
        for c, a in enumerate(acts):
            ax = axes[r, c]
            ax.hist(np.ravel(a), bins=30, range=(lo, hi), color="tab:blue")
            if label in y_max:
                ax.set_ylim(0, y_max[label])
            if r == 0:
                ax.set_title(f"layer {c + 1}")
            if c == 0:
                ax.set_ylabel(label + ("\n(bar at 0 clipped)" if label in y_max else ""), fontsize=9)
            else:
                ax.set_yticks([])
            ax.tick_params(labelsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def batchnorm_grid(scales: Sequence[float], with_bn: Sequence[Sequence[float]],
                   without_bn: Sequence[Sequence[float]], path: str | os.PathLike, title: str) -> str:
    """Training accuracy per epoch with and without batch normalization, one panel per initial scale (Fig. 6-19)."""
    n = len(scales)
    cols = 4 if n >= 4 else n
    rows = (n + cols - 1) // cols
    fig = _figure(max(3.2 * cols, 8.0), 2.6 * rows + 0.6)  # room for the two-line title however few panels
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for i, scale in enumerate(scales):
        ax = axes[i // cols, i % cols]
        epochs = np.arange(len(with_bn[i]))
        ax.plot(epochs, with_bn[i], label="Batch Normalization", linewidth=2)
        ax.plot(epochs, without_bn[i], linestyle="--", label="Normal (without BatchNorm)", linewidth=2)
        ax.set_title(f"W: {scale:.2g}", fontsize=10)
        ax.set_ylim(0, 1.0)
        ax.grid(True, alpha=0.3)
        if i % cols:
            ax.set_yticklabels([])
        else:
            ax.set_ylabel("accuracy")
        if i // cols == rows - 1:
            ax.set_xlabel("epochs")
        if i == 0:
            ax.legend(loc="best", fontsize=7)
    for j in range(n, rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    fig.suptitle(title)
    return _save(fig, path)


def train_test_panels(panels: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike,
                      title: str) -> str:
    """Train vs test accuracy per epoch, one panel per regularisation setting (Figures 6-20 to 6-23)."""
    fig = _figure(4.3 * len(panels), 4)
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    for ax, (name, (train, test)) in zip(axes, panels.items(), strict=True):
        epochs = np.arange(len(train))
        ax.plot(epochs, train, marker="o", markevery=max(len(train) // 10, 1), label="train")
        ax.plot(epochs, test, marker="s", markevery=max(len(test) // 10, 1), label="test")
        ax.set_xlabel("epochs")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
        ax.set_title(f"{name}\n(final train {train[-1]:.3f}, test {test[-1]:.3f})", fontsize=10)
    fig.suptitle(title)
    return _save(fig, path)


def language_model_curves(train_loss: Sequence[float], valid_at: Sequence[int], valid_loss: Sequence[float],
                          baseline: float, path: str | os.PathLike, title: str) -> str:
    """A language model's loss (nats per token) and perplexity against training steps: training loss per step
    (raw and smoothed), validation loss where it was measured, and a baseline (the unigram model's) as a line."""
    fig = _figure(11, 4.2)
    train = np.asarray(train_loss, dtype=np.float64)
    steps = np.arange(1, train.size + 1)
    for ax, f, label in zip(fig.subplots(1, 2), (lambda v: v, np.exp), ("loss (nats per character)", "perplexity"),
                            strict=True):
        ax.plot(steps, f(train), color="tab:blue", alpha=0.25, linewidth=0.8, label="training, per batch")
        ax.plot(steps, f(smooth_curve(train)), color="tab:blue", linewidth=1.8, label="training, smoothed")
        ax.plot(valid_at, f(np.asarray(valid_loss, dtype=np.float64)), "o-", color="tab:orange",
                label="validation")
        ax.axhline(f(baseline), color="gray", linestyle="--", label="unigram baseline")
        ax.set_xlabel("training steps")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# Drawing in a helper process


class Drawer:
    """Draws a figure of this module in a helper process that imports matplotlib while the caller starts up.

    Importing matplotlib and warming its fonts cost ~0.4 s, a quarter of a warm ``fastnn demo``; the demo's own start
    (NumPy, Numba, its kernels from the cache) runs on one core, so :meth:`start` begins that import in a second
    interpreter on the other one, which then waits -- idle, not disturbing the timed training -- for the one figure
    :meth:`draw` sends it. Any failure of the helper (no matplotlib, a killed process) makes :meth:`draw` draw in
    this process instead, with this process's errors.
    """

    def __init__(self, process: Any) -> None:
        self._process = process

    @classmethod
    def start(cls) -> Drawer:
        """Start the helper (nothing is started when it cannot be: :meth:`draw` then draws here)."""
        import subprocess
        import sys

        try:
            process = subprocess.Popen([sys.executable, "-c", "from fastnn.cli.plotting import _serve; _serve()"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            process = None
        return cls(process)

    def draw(self, name: str, *args: Any) -> str:
        """``name(*args)`` (a figure function of this module, returning the PNG's path), drawn by the helper."""
        import pickle

        process, self._process = self._process, None
        if process is not None:
            try:
                out, _ = process.communicate(pickle.dumps((name, args)), timeout=120)
                if process.returncode == 0 and out:
                    return out.decode().strip()
            except Exception:  # noqa: BLE001 (whatever went wrong there, draw here)
                process.kill()
                process.wait()
        return globals()[name](*args)

    def close(self) -> None:
        """Stop the helper if :meth:`draw` was not called (it exits by itself when this process ends too)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()


def _serve() -> None:
    """The helper of :class:`Drawer`: import matplotlib, draw the one figure read from stdin, print its path."""
    import pickle
    import sys

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    warm = Figure(figsize=(2, 2), dpi=20)
    warm.subplots().set_title("warm")
    FigureCanvasAgg(warm).draw()  # what savefig runs first: fonts, text layout, the Agg renderer
    request = sys.stdin.buffer.read()
    if not request:  # the parent ended without drawing
        return
    name, args = pickle.loads(request)
    print(globals()[name](*args), flush=True)
