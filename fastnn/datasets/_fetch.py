"""The one fetching mechanism behind every loader: a cache folder, a mirror list, and pooch for the download.

Each loader names its files with their published MD5s (a :class:`Files` table). Files already in the folder are
used as they are, with no network access and without importing pooch, which is needed only to download (the
``data`` extra; ``test`` and ``examples`` bring it too). A missing file is fetched with :func:`pooch.retrieve`
from each mirror in turn until one serves it intact: pooch streams it into a temporary file beside the
destination, checks the MD5 and only then moves it into place, so a failed, interrupted or corrupted download
never leaves a file that looks valid. When every mirror fails, :class:`DownloadError` names the file, every URL
tried with what went wrong, and what to do.

Where the files live
    ``data_dir`` if given, else ``$FASTNN_DATA/<name>``, else the user cache directory
    (``$XDG_CACHE_HOME/fastnn/<name>`` or ``~/.cache/fastnn/<name>`` on Linux, ``~/Library/Caches/fastnn/<name>``
    on macOS, ``%LOCALAPPDATA%\\fastnn\\Cache\\<name>`` on Windows) -- the folders ``pooch.os_cache("fastnn")``
    names, computed here so that reading needs no pooch.

Mirrors
    The ``urls=`` argument, else the comma-separated base URLs in the loader's environment variable
    (``FASTNN_MNIST_URLS``, ``FASTNN_TINYSHAKESPEARE_URLS``, ``FASTNN_PTB_URLS``), else the loader's defaults.
    A file's URL is the base URL followed by the file name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from .. import __version__, _validate
from ._optional import require

_TIMEOUT_S = 30.0
_CHUNK = 1 << 16


class DownloadError(OSError):
    """No mirror delivered an intact copy of a file; the message lists each URL tried and why it failed."""


@dataclasses.dataclass(frozen=True)
class Files:
    """What a loader downloads: its folder name, its files ``{file name: published MD5}``, and where from.

    ``mirrors`` is the name of the loader module's attribute holding the default base URLs, read at each call
    (so that a test or a user can replace it); ``env`` the environment variable that overrides it.
    """

    name: str
    md5: dict[str, str]
    module: str
    mirrors: str
    env: str

    def default_mirrors(self) -> Sequence[str]:
        return getattr(sys.modules[self.module], self.mirrors)


def default_data_dir(name: str) -> pathlib.Path:
    """Where data set ``name`` is kept when ``data_dir`` is not given: ``$FASTNN_DATA/<name>`` or the user cache."""
    root = os.environ.get("FASTNN_DATA")
    if root:
        return pathlib.Path(root).expanduser() / name
    if sys.platform == "win32":
        base = pathlib.Path(os.environ.get("LOCALAPPDATA") or pathlib.Path.home() / "AppData" / "Local")
        return base / "fastnn" / "Cache" / name
    if sys.platform == "darwin":
        return pathlib.Path.home() / "Library" / "Caches" / "fastnn" / name
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg) if xdg and os.path.isabs(xdg) else pathlib.Path.home() / ".cache"
    return base / "fastnn" / name


def check_dir(data_dir: Any, name: str, where: str) -> pathlib.Path:
    """``data_dir`` as a Path, or the default folder of data set ``name`` when it is None."""
    if data_dir is None:
        return default_data_dir(name)
    if isinstance(data_dir, bytes) or not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"{where}: data_dir must be a str or os.PathLike, got {type(data_dir).__name__}")
    return pathlib.Path(data_dir).expanduser()


def mirror_urls(urls: Any, env: str, defaults: Sequence[str], where: str) -> list[str]:
    """Base URLs to try, in order: ``urls`` (a sequence, or one comma-separated str), else ``$<env>``, else
    ``defaults``. Each ends with ``/`` so a file name can be appended."""
    source = "urls"
    if urls is None:
        value = os.environ.get(env)
        urls, source = (value, env) if value and value.strip() else (defaults, "")
    if isinstance(urls, str):
        urls = urls.split(",")
    if isinstance(urls, (bytes, bytearray)) or not isinstance(urls, Sequence):
        raise TypeError(f"{where}: {source} must be a str or a sequence of str, got {type(urls).__name__}")
    out = []
    for u in urls:
        if not isinstance(u, str):
            raise TypeError(f"{where}: {source} must hold base URLs as str, got {type(u).__name__} {u!r}")
        u = u.strip()
        if u:
            out.append(u if u.endswith("/") else u + "/")
    if not out:
        raise ValueError(f"{where}: {source} must name at least one base URL, got {urls!r}")
    return out


def _progress_bar(progress: bool | None, desc: str) -> Any:
    """A tqdm bar for pooch to fill, or False. ``progress=None``: only when tqdm is installed and stderr is a
    terminal, so a pipe or a log file stays quiet."""
    if progress is False:
        return False
    try:
        from tqdm import tqdm
    except ImportError:
        if progress:
            print(f"downloading {desc} ...", file=sys.stderr, flush=True)
        return False
    if progress is None and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return False
    return _Bar(tqdm(desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False, file=sys.stderr))


class _Bar:
    """A tqdm bar as pooch's ``HTTPDownloader`` drives it (it sets ``total``, calls ``update``, ``reset``, ``close``),
    always true: pooch tests ``if progressbar:``, and a tqdm bar without a total (no Content-Length) is false or
    raises in ``bool()``."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __bool__(self) -> bool:
        return True

    @property
    def total(self) -> Any:
        return self.bar.total

    @total.setter
    def total(self, value: int) -> None:
        self.bar.total = value or None  # pooch sets 0 when the server sends no Content-Length
        self.bar.refresh()

    def update(self, n: int) -> None:
        self.bar.update(n)

    def reset(self) -> None:
        self.bar.reset(total=self.bar.total)

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Silence pooch's INFO lines ("Downloading data from ...") for one call: fastnn's progress bar and errors
    say what happens, and a pipe must stay quiet. The logger's level is restored afterwards."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _describe_failure(exc: BaseException, md5: str) -> str:
    """One line on why a mirror failed, from pooch's, requests' and urllib3's exceptions."""
    if isinstance(exc, ValueError):  # pooch.hashes.hash_matches: "... expected md5:<x> but got <y>. ..."
        got = re.search(r"but got ([0-9a-fA-F]+)", str(exc))
        return f"MD5 mismatch: got {got.group(1)}, expected {md5}" if got else str(exc)
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code} {response.reason}"
    seen = set()
    todo: list[Any] = [exc]
    while todo:  # urllib3's IncompleteRead sits inside requests' ChunkedEncodingError / ProtocolError args
        e = todo.pop()
        if id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        partial, expected = getattr(e, "partial", None), getattr(e, "expected", None)
        if isinstance(partial, int) and isinstance(expected, int):
            return f"connection closed after {partial} of {partial + expected} bytes"
        todo.extend([*e.args, e.__cause__, e.__context__])
    name = type(exc).__name__
    if name in ("ConnectionError", "ConnectTimeout", "SSLError", "ProxyError"):
        return f"cannot connect: {exc}"
    if name in ("ReadTimeout", "Timeout"):
        return f"no answer within {_TIMEOUT_S:.0f} s: {exc}"
    return f"{name}: {exc}"


def download(files: Files, filename: str, directory: pathlib.Path, mirrors: list[str], progress: bool | None,
              where: str) -> pathlib.Path:
    """Fetch ``filename`` (one of ``files``) into ``directory`` from the first mirror that serves it intact."""
    md5 = files.md5[filename]
    pooch = require("pooch", f"{where} (downloading {filename})", extra="data")
    dest = directory / filename
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK):
        # Checked once here, or every mirror would "fail" with the same PermissionError.
        raise PermissionError(f"{where}: {directory} must be writable to download {filename} into it, got a "
                              "read-only folder; pass data_dir= a writable folder or put the files there by hand")
    tried = []
    for base in mirrors:
        url = base + filename
        bar = _progress_bar(progress, filename)
        downloader = pooch.HTTPDownloader(progressbar=bar, chunk_size=_CHUNK, timeout=_TIMEOUT_S,
                                          headers={"User-Agent": f"fastnn/{__version__}"})
        try:
            with _quiet(pooch.get_logger()):
                pooch.retrieve(url, known_hash=f"md5:{md5}", fname=filename, path=directory, downloader=downloader)
            return dest
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors; a wrong MD5 is pooch's ValueError
            tried.append(f"  {url}: {_describe_failure(exc, md5)}")
        finally:
            if bar is not False:
                bar.close()
    raise DownloadError(
        f"{where}: could not download {filename} (MD5 {md5}); tried:\n" + "\n".join(tried) + "\n"
        f"Nothing was saved. Download {filename} by hand and put it in {directory} ({where}(data_dir=...) or "
        f"$FASTNN_DATA/{files.name}), or pass urls=[...] / set {files.env} to a mirror that serves it.")


def ensure(files: Files, names: Sequence[str], data_dir: Any, urls: Any, progress: Any, download_missing: bool,
           where: str, local_names: Any = None) -> dict[str, pathlib.Path]:
    """Paths of ``names`` (file names of ``files``) in the data folder, downloading the missing ones.

    ``local_names(name)`` lists the names under which a file put there by hand is accepted (default: its own).
    No mirror list is parsed and pooch is not imported when every file is present.
    """
    directory = check_dir(data_dir, files.name, where)
    if progress is not None:
        _validate.flag(progress, where, "progress")
    paths: dict[str, pathlib.Path] = {}
    missing = []
    for name in names:
        found = next((directory / n for n in (local_names(name) if local_names else (name,))
                      if (directory / n).is_file()), None)
        if found is None:
            missing.append(name)
        else:
            paths[name] = found
    if missing and not download_missing:
        raise FileNotFoundError(f"{where}: {', '.join(missing)} must be in {directory} when download=False, got no "
                                "such file; put them there by hand or call with download=True")
    if missing:
        mirrors = mirror_urls(urls, files.env, files.default_mirrors(), where)
        for name in missing:
            paths[name] = download(files, name, directory, mirrors, progress, where)
    return {n: paths[n] for n in names}
