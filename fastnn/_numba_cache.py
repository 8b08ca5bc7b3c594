"""Numba's on-disk cache made safe for fastnn's kernels, through Numba's internals (``cache=True``).

:func:`njit` is ``numba.njit`` with the cache policy of :data:`fastnn.config.CACHE`; :mod:`fastnn._jit` compiles
every kernel and helper through it. What it adds to Numba's cache, and why:

* No writable cache directory (read-only install, unwritable ``HOME``/``NUMBA_CACHE_DIR``): kernels are compiled
  in memory instead; import never fails.
* Numba checks a cached kernel only against the source file that defines it. A kernel inlines helpers and
  constants from other modules (``_exp_nonpos`` from ``_math`` in ``losses``, ``window_span`` from
  ``_window`` in ``pooling``), so fastnn adds a digest of the defining module and every fastnn module it imports,
  transitively, to the freshness stamp: editing a helper recompiles its users. The index key also records
  ``NUMBA_BOUNDSCHECK``, so bounds-checked and unchecked builds never stand in for each other.
* Several processes compiling into an empty cache at once: entries are written under a per-function file lock,
  data before index, so no process can read an index entry whose data file belongs to another signature.
* A cache that cannot be read (truncated or corrupt files) or written (disk full) costs a recompilation, never an
  exception.

These change with Numba's cache internals (``Cache``/``IndexDataCacheFile`` of numba.core.caching), not with how
fastnn launches kernels; ``tests/robustness/test_cache.py`` runs each case above in fresh interpreters.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import itertools
import pathlib
import re
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numba

from . import _compile_gc, config

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; Numba's atomic file replacement remains
    fcntl = None


def njit(fn: Callable, **options: Any) -> Callable:
    """``numba.njit`` with a hardened cache when possible; no usable cache directory must not break import."""
    _compile_gc.install()
    if config.CACHE:
        try:
            dispatcher = numba.njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            pass
        else:
            if _harden_cache(dispatcher, fn):
                return dispatcher
    return numba.njit(cache=False, **options)(fn)


def _harden_cache(dispatcher: Any, fn: Callable) -> bool:
    """Give ``dispatcher``'s cache the stamp, key, lock and error handling described in the module docstring.

    These are Numba internals (``Cache``/``IndexDataCacheFile`` of numba.core.caching, checked on 0.68): when any
    is missing, return False and the kernel is compiled uncached rather than risking a stale cache.
    """
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    needed = [(cache, "load_overload"), (cache, "save_overload"), (cache, "_index_key"),
              (cache_file, "_source_stamp"), (cache_file, "_index_path"), (cache_file, "_load_index"),
              (cache_file, "_save_index"), (cache_file, "_save_data"), (cache_file, "_data_name")]
    if cache is None or not all(hasattr(obj, attr) for obj, attr in needed):
        return False
    digest = _module_digest(fn.__module__)
    if digest is None:
        return False
    cache_file._source_stamp = (cache_file._source_stamp, digest)
    cache._index_key = functools.partial(_index_key, cache._index_key)
    cache_file.save = functools.partial(_locked_save, cache_file)
    cache.load_overload = functools.partial(_forgiving_load, cache.load_overload)
    cache.save_overload = functools.partial(_forgiving_save, cache.save_overload)
    return True


def _index_key(numba_key: Callable, sig: Any, codegen: Any) -> tuple:
    return numba_key(sig, codegen) + (("boundscheck", bool(numba.config.BOUNDSCHECK)),)


def cached(dispatcher: Any, sig: tuple) -> bool:
    """Whether ``dispatcher`` has ``sig`` compiled in this process or in the on-disk cache (an index lookup, without
    loading the entry); False when that cannot be told."""
    if sig in dispatcher.overloads:
        return True
    try:
        cache = dispatcher._cache
        return cache._index_key(sig, dispatcher.targetctx.codegen()) in cache._cache_file._load_index()
    except Exception:  # no cache, or Numba's internals changed: as if not cached
        return False


def _forgiving_load(load: Callable, sig: Any, target_context: Any) -> Any:
    try:
        return load(sig, target_context)
    except Exception:  # unreadable entry (truncated, corrupt, other Python): compile instead
        return None


def _forgiving_save(save: Callable, sig: Any, data: Any) -> None:
    with contextlib.suppress(Exception):  # the kernel is compiled; failing to persist it is not an error
        save(sig, data)


def _locked_save(cache_file: Any, key: Any, data: Any) -> None:
    """Numba's ``IndexDataCacheFile.save`` under a file lock, writing the data file before the index entry."""
    with _file_lock(cache_file._index_path + ".lock"):
        try:
            overloads = cache_file._load_index()
        except Exception:  # an unreadable index is replaced, as a stale one is
            overloads = {}
        name = overloads.get(key)
        if name is None:
            used = set(overloads.values())
            name = next(n for n in map(cache_file._data_name, itertools.count(1)) if n not in used)
        cache_file._save_data(name, data)
        overloads[key] = name
        cache_file._save_index(overloads)


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_PACKAGE = __name__.rpartition(".")[0]


@functools.cache
def _module_digest(module: str) -> str | None:
    """SHA-256 over the source of ``module`` and of every module of this package it imports, transitively.

    None when a source cannot be read (then caching is not trusted). Modules outside this package (a kernel
    defined in a test) get the digest of their own file only, on top of Numba's check of that file.
    """
    seen: set[str] = set()
    todo = [module]
    h = hashlib.sha256()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found = _module_source(name)
        if found is False:
            return None
        if found is None:
            continue
        digest, imports = found
        h.update(name.encode() + b"\0" + digest)
        todo.extend(imports)
    return h.hexdigest()


_IMPORT = re.compile(r"^(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)|import[ \t]+([^\n]*))", re.M)


@functools.cache
def _module_source(name: str) -> tuple[bytes, tuple[str, ...]] | bool | None:
    """Digest of module ``name``'s source and the modules of this package it imports at top level.

    None if ``name`` is not a module with a .py source (an imported function, a built-in); False if its source
    cannot be read. Read with a regular expression rather than :mod:`ast`: parsing every module at import time
    cost ~1 s.
    """
    path = _source_path(name)
    if path is None:
        return None
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    digest = hashlib.sha256(source.encode()).digest()
    if not (name == _PACKAGE or name.startswith(_PACKAGE + ".")):
        return digest, ()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for dots, module, names, plain in _IMPORT.findall(source):
        if plain:
            found += [n.split()[0] for n in _names(plain)]
            continue
        try:
            base = importlib.util.resolve_name(dots + module, package) if dots else module
        except (ImportError, ValueError):
            continue
        for n in _names(names):
            # "from package import submodule" depends on the submodule only; any other name on the module
            # that defines it, which is ``base`` (or a module ``base`` imports, found in turn)
            sub = f"{base}.{n.split()[0]}"
            found.append(sub if n != "*" and _source_path(sub) is not None else base)
    return digest, tuple(m for m in found if m == _PACKAGE or m.startswith(_PACKAGE + "."))


def _names(text: str) -> list[str]:
    """The comma-separated names of an import statement (parentheses, comments and line breaks removed)."""
    lines = (line.split("#")[0] for line in text.strip("()").splitlines())
    return [n.strip() for n in ",".join(lines).split(",") if n.strip()]


def _source_path(name: str) -> pathlib.Path | None:
    """The .py file of module ``name``, or None if ``name`` is not a module with a source file."""
    mod = sys.modules.get(name)
    origin = getattr(mod, "__file__", None) if isinstance(mod, types.ModuleType) else None
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            return None
        origin = spec.origin if spec is not None else None
    if origin is None or not origin.endswith(".py"):
        return None
    return pathlib.Path(origin)


def cache_dir() -> str | None:
    """Where compiled kernels are cached for every process (Numba's ``NUMBA_CACHE_DIR``, else ``__pycache__``
    beside fastnn's sources when writable, else a per-user directory); None when fastnn's on-disk cache is off or
    no cache directory is writable (kernels are then compiled in memory, per process)."""
    if not config.CACHE:
        return None
    from .kernels.activations import _relu_fwd  # one kernel's cache: every module's lives beside it

    return getattr(getattr(_relu_fwd.serial, "_cache", None), "_cache_path", None)
