"""The book's own code (DLFS-2, ``oreilly-japan/deep-learning-from-scratch-2``) as the oracle of the compat tests,
where a copy of its repository is at hand: ``FASTNN_DLFS2_REPO`` (a git directory or a checkout), or the mirror of
this workplace. Tests that need it skip elsewhere; the numbers they pin without it are in the tests themselves.
"""

from __future__ import annotations

import importlib
import io
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

_MIRROR = pathlib.Path("/work/.mirror/oreilly-japan+deep-learning-from-scratch-2/repo")


def _source() -> pathlib.Path | None:
    given = os.environ.get("FASTNN_DLFS2_REPO")
    path = pathlib.Path(given) if given else _MIRROR
    return path if path.exists() else None


@pytest.fixture(scope="session")
def book(tmp_path_factory):
    """``book("common.layers")`` imports a module of the book's code (its ``common`` package and chapter
    directories on ``sys.path`` for the session's book imports only)."""
    src = _source()
    if src is None:
        pytest.skip("the DLFS-2 repository is not available (set FASTNN_DLFS2_REPO)")
    if (src / "common").is_dir():
        root = src
    else:  # a bare git directory: export the tree
        root = tmp_path_factory.mktemp("dlfs2")
        data = subprocess.run(["git", f"--git-dir={src}", "archive", "HEAD", "common", "ch04", "ch05", "ch06",
                               "ch07", "ch08", "dataset"], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(root, filter="data")
    saved = {k: v for k, v in sys.modules.items() if k == "common" or k.startswith("common.")}

    def load(name: str):
        chapter = name.split(".")[0] if name.startswith("ch0") else None
        extra = [str(root)] + ([str(root / chapter)] if chapter else [])
        old_path = sys.path[:]
        sys.path[:0] = extra
        try:
            module = importlib.import_module(name.split(".", 1)[1] if chapter else name)
        finally:
            sys.path[:] = old_path
        return module

    yield load
    for k in [k for k in sys.modules if k == "common" or k.startswith("common.")]:
        del sys.modules[k]
    sys.modules.update(saved)
