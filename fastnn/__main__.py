"""``python -m fastnn`` / ``fastnn``: the demo, the book's chapter-6 experiments, and the kernel benchmarks.

Subcommands::

    fastnn demo [--dataset digits|mnist|mnist-small] [--epochs N] ...   train SimpleConvNet, measure the speed-up
    fastnn demo --task text [--data-dir DIR] [--steps N] ...           char LSTM language model on Tiny Shakespeare
    fastnn experiment NAME [...]                                       optimizers | init | activations |
                                                                       batchnorm | overfit | hyperparam
                                                                       (--scheduler ADDRESS: on a Dask cluster)
    fastnn bench [...]                                                 kernel benchmarks (fastnn.bench)
    fastnn warmup [--dtype float32,float64] [--jobs N] [--quiet]        compile every kernel into the cache

Exit codes: 0 done; 1 failed (download, corrupt data ...: the message says what to do); 2 bad usage or a
missing optional dependency (the message names the pip extra to install).
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "run"]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None (those defaults are described in the help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from .cli import demo, experiments, warmup

    parser = argparse.ArgumentParser(prog="fastnn", description="fastnn: fast CPU neural-network kernels.")
    sub = parser.add_subparsers(dest="command", metavar="{demo,experiment,bench,warmup}")
    sub.required = True
    demo.add_arguments(sub.add_parser("demo", help="train SimpleConvNet on real digits (--task text: a char LSTM on "
                                      "Tiny Shakespeare) and show the speed-up",
                                      description=demo.__doc__.split("\n\n")[0],
                                      formatter_class=_HelpFormatter))
    experiments.add_arguments(sub.add_parser("experiment", help="reproduce a figure of the book's chapter 6",
                                             description=experiments.__doc__.split("\n\n")[0],
                                             formatter_class=_HelpFormatter))
    warmup.add_arguments(sub.add_parser("warmup", help="compile every kernel for this machine ahead of time",
                                        description=warmup.__doc__.split("\n\n")[0],
                                        formatter_class=_HelpFormatter))
    sub.add_parser("bench", help="benchmark fastnn kernels against NumPy (fastnn bench --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also used by the ``fastnn`` console script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        # bench parses its own options (and prints its own --help).
        from . import bench

        return int(bench.main(argv[1:]) or 0)

    from .cli import CLIError
    from .datasets import MissingDependencyError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except MissingDependencyError as exc:
        print(f"fastnn {args.command}: {exc}", file=sys.stderr)
        return 2
    except CLIError as exc:
        # Data problems (download failed, corrupt file ...): the message says what to do; a traceback would bury it.
        print(f"fastnn {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """``python -m fastnn`` and the ``fastnn`` console script: :func:`main`, then the process ends as soon as its
    work is done.

    After the command has returned, its output is flushed and the exit handlers run (a Dask client closes its
    cluster, ...); then the process ends with ``os._exit``, skipping the interpreter's teardown of every module and
    object, which took ~0.23 s with Numba's compiled code loaded (measured on the warm demo: 1.50 -> 1.27 s). An
    exception still ends the process the usual way, with its traceback; a reader that went away (``| head``)
    ends it quietly with status 1, as Python's documentation recommends for a closed pipe.
    """
    try:
        code = main()
        _flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to write to
        code = 1
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's; elsewhere: the usual exit
    if run_exit_handlers is None:
        sys.exit(code)
    run_exit_handlers()
    _flush()
    os._exit(code)


def _flush() -> None:
    sys.stdout.flush()
    sys.stderr.flush()


if __name__ == "__main__":
    run()
