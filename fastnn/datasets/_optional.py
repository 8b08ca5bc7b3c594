"""Optional dependencies (the ``examples`` extra): imported only when used, with a message saying what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

#: pip package name of each optional module fastnn imports lazily.
PIP_NAMES = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "tqdm": "tqdm"}


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message names the pip extra that brings it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        package = PIP_NAMES.get(module, module)
        super().__init__(f"{purpose} needs {package}, which is not installed: pip install \"fastnn[{extra}]\" "
                         f"(or pip install {package})", name=module)
        self.module = module
        self.extra = extra


def require(module: str, purpose: str, extra: str = "examples") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``extra``.

    ``purpose`` completes the sentence "<purpose> needs <package>", e.g. ``"load_digits"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc
