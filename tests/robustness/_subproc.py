"""Running Python in a child process for the robustness tests: a fresh interpreter, a bounded time, a clean kill."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

#: The repository root (the child imports ``tests.robustness._workloads`` from there).
ROOT = pathlib.Path(__file__).resolve().parents[2]

#: Variables of the parent that would change how the child compiles or launches kernels.
_SCRUB = ("FASTNN_PARALLEL_MIN_WORK", "FASTNN_NUMBA_CACHE", "NUMBA_CACHE_DIR", "NUMBA_THREADING_LAYER",
          "NUMBA_NUM_THREADS", "NUMBA_BOUNDSCHECK", "NUMBA_DISABLE_JIT")


def run_python(code: str, *, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
               timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter; a run past ``timeout`` seconds is killed with its children and fails.

    ``env`` entries are added to the parent's environment (minus the variables in ``_SCRUB``); ``PYTHONPATH``
    starts with the repository root unless ``env`` sets it. With ``check``, a non-zero exit fails with the
    child's output.
    """
    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full["PYTHONPATH"] = str(ROOT)
    full.update(env or {})
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd or ROOT, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child and any pool workers it started
        out, err = proc.communicate()
        raise AssertionError(f"child timed out after {timeout} s (hang)\nstdout:\n{out}\nstderr:\n{err}") from None
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        assert proc.returncode == 0, f"child exited with {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return result
