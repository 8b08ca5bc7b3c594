"""``python -m fastnn demo --task text``: a character-level LSTM language model on Tiny Shakespeare.

Steps: (0) read the corpus (``--data-dir``, downloaded and MD5-checked once when missing; offline from a local
copy), split 90% / 10%; (1) compile the kernels the training uses -- first run only, shown and kept out of the
timings, as the image demo does; (2) train :class:`fastnn.nets.CharLSTM` (embedding -> LSTM -> affine -> softmax
cross-entropy at every step) with Adam on random windows of ``--seq-len`` characters, a tqdm bar on a
terminal, the validation loss measured ``--evals`` times; (3) report validation loss in bits per character against
the unigram baseline; (4) time the same training steps on fastnn's kernels and on their NumPy twins
(``fastnn.backend.using("reference")``, the image demo's :func:`~fastnn.cli.demo.compare_speed`); (5) print a few
lines of generated text; (6) save the parameters (``.npz``) and a loss/perplexity plot in ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _compiling
from . import CLIError, _positive_int, apply_threads

#: The text task's defaults (the options left at None take these).
DEFAULTS = {"steps": 300, "batch_size": 32, "lr": 0.003}
PRIME = "ROMEO:\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The text task's own options (the shared ones -- --data-dir, --batch-size, --lr, --optimizer, --dtype,
    --seed, --compare-steps, --out, --no-plot, --threads -- are the image demo's)."""
    g = p.add_argument_group("--task text")
    g.add_argument("--steps", type=_positive_int, default=None,
                   help=f"training steps (default {DEFAULTS['steps']}; batch size default {DEFAULTS['batch_size']}, "
                        f"Adam lr default {DEFAULTS['lr']})")
    g.add_argument("--hidden-size", type=_positive_int, default=128, help="LSTM state size H")
    g.add_argument("--wordvec-size", type=_positive_int, default=32, help="character embedding size E")
    g.add_argument("--seq-len", type=_positive_int, default=64, help="characters per training window (BPTT length)")
    g.add_argument("--evals", type=_positive_int, default=6, help="validation measurements during training")
    g.add_argument("--generate", type=int, default=300, help="characters of text to generate at the end")


def windows(corpus: np.ndarray, starts: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``corpus[s:s+T]`` and targets ``corpus[s+1:s+T+1]`` for each start ``s``: two (len(starts), T)."""
    rows = corpus[starts[:, None] + np.arange(T + 1)]
    return rows[:, :-1], rows[:, 1:]


def unigram_bits(train: np.ndarray, valid: np.ndarray, V: int) -> float:
    """Cross-entropy (bits per character) of ``valid`` under the character frequencies of ``train``: the loss of
    a model that ignores context, the baseline a language model must beat."""
    p = np.bincount(train, minlength=V) / train.size
    q = np.bincount(valid, minlength=V)
    seen = q > 0
    if np.any(p[seen] == 0):
        return math.inf
    return float(-(q[seen] * np.log2(p[seen])).sum() / q.sum())


def evaluate(net: Any, valid: np.ndarray, starts: np.ndarray, T: int, batch: int) -> float:
    """Mean loss (nats per character) of ``net`` on the validation windows at ``starts``."""
    losses = [net.loss(*windows(valid, starts[i:i + batch], T)) for i in range(0, len(starts), batch)]
    sizes = [len(starts[i:i + batch]) for i in range(0, len(starts), batch)]
    return float(np.average(losses, weights=sizes))


def run(args: argparse.Namespace) -> int:
    def build(V: int, T: int, dtype: np.dtype, lr: float, batch: int, steps: int) -> tuple[Any, str]:
        from ..nets.char_lm import CharLSTM

        H = args.hidden_size
        net = CharLSTM(V, H, args.wordvec_size, dtype=dtype, seed=args.seed)
        return net, (f"CharLSTM embedding {V}x{args.wordvec_size} -> LSTM {H} -> affine {V} -> softmax "
                     f"cross-entropy, {dtype}; {args.optimizer} lr {lr}, batch {batch} x {T} characters, "
                     f"{steps} steps")

    return run_language_model(args, DEFAULTS, build, stem="demo_text", name=f"CharLSTM (H {args.hidden_size})",
                              ms_digits=2)


def run_language_model(args: argparse.Namespace, defaults: dict[str, Any],
                       build: Callable[[int, int, np.dtype, float, int, int], tuple[Any, str]], *, stem: str,
                       name: str, ms_digits: int) -> int:
    """The language-model demos' driver (``--task text`` and ``--task transformer``): steps (0)-(6) of this
    module's docstring for the net that ``build`` makes.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``fastnn demo`` options.
    defaults : dict
        The task's ``steps``, ``batch_size`` and ``lr``, for the options left at None.
    build : callable
        ``build(V, T, dtype, lr, batch, steps)`` returns the untrained net (``params``, ``gradient``,
        ``last_loss``, ``loss``, ``generate``) and its description for the ``model:`` line.
    stem : str
        File names in ``--out``: ``<stem>_params.npz`` and ``<stem>.png``.
    name : str
        The model in the plot's title.
    ms_digits : int
        Decimals of the milliseconds on the ``speed`` line.

    Returns
    -------
    int
        The exit code, 0.
    """
    from ..checkpoint import save_arrays
    from ..datasets import DownloadError, load_tinyshakespeare
    from ..optim import get
    from .demo import _want_bar, compare_speed

    wall_start = time.perf_counter()
    apply_threads(args.threads)
    steps = args.steps or defaults["steps"]
    batch = args.batch_size or defaults["batch_size"]
    lr = args.lr if args.lr is not None else defaults["lr"]
    T, dtype = args.seq_len, np.dtype(args.dtype)
    if not args.no_plot:
        from ..datasets._optional import require

        require("matplotlib", "fastnn demo's plot (or pass --no-plot)")  # fail before training, not after
    os.makedirs(args.out, exist_ok=True)
    try:
        corpus, char_to_id, id_to_char = load_tinyshakespeare(data_dir=args.data_dir)
    except (DownloadError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    cut = int(0.9 * corpus.size)
    train, valid = corpus[:cut], corpus[cut:]
    V = len(char_to_id)
    if valid.size <= T + 1:
        raise CLIError(f"--seq-len must be below the validation text's {valid.size - 1} characters, got {T}")
    print(f"data: Tiny Shakespeare, {train.size} training and {valid.size} validation characters, vocabulary {V}")
    net, description = build(V, T, dtype, lr, batch, steps)
    untrained = copy.deepcopy(net)
    print(f"model: {description}")

    rng = np.random.default_rng(args.seed)
    eval_starts = np.random.default_rng(args.seed + 2).integers(0, valid.size - T - 1, max(batch, 64))
    optimizer = get(args.optimizer, lr=lr)
    with _compiling.watch(show=True, stream=sys.stdout) as compiled:  # every kernel of a step, and of sampling
        twin = copy.deepcopy(net)
        get(args.optimizer, lr=lr).update(twin.params, twin.gradient(*windows(train, rng.integers(0, 99, batch), T)))
        twin.generate([0], 1, np.random.default_rng(0))
    if compiled.count:
        print(f"kernels: {compiled.count} compiled in {compiled.seconds:.1f} s (first run on this machine; "
              "cached on disk for the next runs)")
    else:
        print("kernels: loaded from the on-disk cache")

    train_loss: list[float] = []
    valid_at: list[int] = []
    valid_loss: list[float] = []
    eval_every = max(steps // args.evals, 1)
    bar = None
    if _want_bar():
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="training", unit=" steps", file=sys.stdout, leave=False, dynamic_ncols=True)
    train_s = 0.0
    with _compiling.watch() as late:
        for step in range(1, steps + 1):
            xb, tb = windows(train, rng.integers(0, train.size - T - 1, batch), T)
            start = time.perf_counter()
            optimizer.update(net.params, net.gradient(xb, tb))
            train_s += time.perf_counter() - start
            train_loss.append(float(net.last_loss))
            if step % eval_every == 0 or step == steps:
                valid_at.append(step)
                valid_loss.append(evaluate(net, valid, eval_starts, T, batch))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss[-1]:.3f}", valid=f"{valid_loss[-1]:.3f}" if valid_loss else "-")
    if bar is not None:
        bar.close()
    baseline = unigram_bits(train, valid, V)
    print("  step  train loss  valid loss  valid bits/char  valid perplexity")
    for s, v in zip(valid_at, valid_loss, strict=True):
        print(f"{s:6d}  {np.mean(train_loss[max(s - eval_every, 0):s]):10.4f}  {v:10.4f}  "
              f"{v / math.log(2):15.3f}  {math.exp(v):16.2f}")
    train_s -= late.seconds
    print(f"training: {steps} steps in {train_s:.2f} s ({1e3 * train_s / steps:.1f} ms per step, evaluation not "
          "included" + (f"; {late.count} more kernels compiled meanwhile in {late.seconds:.1f} s, not counted)"
                        if late.count else ")"))
    final = valid_loss[-1] / math.log(2)
    print(f"validation: {final:.3f} bits per character (unigram baseline {baseline:.3f}; "
          f"{100 * (1 - final / baseline):.0f}% below it)")

    pool = windows(train, rng.integers(0, train.size - T - 1, 8 * batch), T)
    _compiling.settle()  # a compile worker an earlier net in this process left running (CharLSTM starts none)
    speed = compare_speed(untrained, *pool, batch, args.compare_steps, lr, args.seed)
    print(f"speed (one Adam training step, batch {batch} x {T}, median of {args.compare_steps}): "
          f"fastnn {1e3 * speed['fastnn_s']:.{ms_digits}f} ms, "
          f"NumPy reference {1e3 * speed['numpy_s']:.{ms_digits}f} ms")
    print(f"speed-up: {speed['speedup']:.1f}x (largest relative loss difference on the same steps: "
          f"{speed['max_rel_loss_diff']:.1e})")

    if args.generate > 0:
        prime = [char_to_id[c] for c in PRIME if c in char_to_id]
        ids = net.generate(prime, args.generate, np.random.default_rng(args.seed), temperature=0.8)
        print("generated (temperature 0.8):")
        print(PRIME + "".join(id_to_char[i] for i in ids))
    params_path = os.path.join(args.out, f"{stem}_params.npz")
    save_arrays(params_path, net.params)
    print(f"parameters: {params_path}")
    if not args.no_plot:
        from .plotting import language_model_curves

        png = os.path.join(args.out, f"{stem}.png")
        language_model_curves(train_loss, valid_at, valid_loss, baseline * math.log(2), png,
                              f"{name} on Tiny Shakespeare ({dtype}, {args.optimizer}, fastnn)")
        print(f"plot: {png}")
    print(f"wall time: {time.perf_counter() - wall_start:.2f} s")
    return 0
