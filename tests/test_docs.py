"""The documentation site (``docs/``) builds offline with warnings as errors, documents every public name, and renders.

One Sphinx build per test session (``python -m sphinx -W --keep-going``, in a subprocess, into a temporary
directory); the tests then read its inventory and HTML, and load two pages in headless Chromium served on
127.0.0.1, as ``tests/test_dashboard.py`` does for the asv dashboard. Skips without the ``docs`` extra
(sphinx, numpydoc, myst-parser) and, for the browser test, without Chromium.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import pathlib
import re
import subprocess
import sys
import time

import pytest

from tests.test_dashboard import _browse, _chromium, served  # noqa: F401 -- `served` is a fixture used below

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: Each documented module: every name in its __all__ must be on the site.
MODULES = ["fastnn", "fastnn.trainer", "fastnn.kernels", "fastnn.reference", "fastnn.layers", "fastnn.optim",
           "fastnn.nets", "fastnn.compat.cs231n", "fastnn.compat.numpy_ml", "fastnn.datasets", "fastnn.checkpoint",
           "fastnn.backend", "fastnn.distributed"]

_MISSING = [m for m in ("sphinx", "numpydoc", "myst_parser") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed (the docs extra: "
                                                       "pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    """Build the site once; returns the HTML directory. Any Sphinx warning fails the build (-W)."""
    out = tmp_path_factory.mktemp("docs") / "html"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(ROOT / "docs"), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240,
                          check=False)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stderr[-6000:]}"
    print(f"docs built in {time.perf_counter() - start:.1f} s")
    return out


def _inventory(site: pathlib.Path) -> set[str]:
    from sphinx.util.inventory import InventoryFile

    with open(site / "objects.inv", "rb") as f:
        inv = InventoryFile.load(f, "", lambda *parts: "/".join(parts[1:]))
    data = getattr(inv, "data", inv)  # Sphinx >= 8.2 returns an _Inventory, before a dict
    return {name for entries in data.values() for name in entries}


def _text(page: pathlib.Path) -> str:
    """A page's visible text, tags removed (code blocks are split into spans by the highlighter)."""
    body = page.read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def test_every_public_name_is_documented(site):
    documented = _inventory(site)
    missing = {}
    for modname in MODULES:
        module = importlib.import_module(modname)
        assert modname in documented, f"no page documents module {modname}"
        names = [n for n in module.__all__ if f"{modname}.{n}" not in documented]
        if names:
            missing[modname] = names
    assert not missing, f"public names the site does not document: {missing}"


def test_readme_sections_are_included_not_copied(site):
    """The README's two commands and import-swap guides reach the pages through myst includes."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    two = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", two, flags=re.S)
    assert len(commands) == 2
    start = _text(site / "start.html")
    for command in commands:
        assert command in start
    switching = _text(site / "switching.html")
    for line in ("from fastnn.layers import", "from fastnn.compat.cs231n import *",
                 "from fastnn.compat.numpy_ml import Adam", "Upstream bugs fastnn fixes"):
        assert line in switching
    speed = _text(site / "speed.html")
    assert "fastnn / PyTorch" in speed and "asv run" in speed
    assert (site / "_images" / "dashboard.png").is_file()
    for note in ("design.html", "distributed.html"):  # docs/*.md are pages themselves
        assert (site / note).is_file()


def test_cli_page_shows_each_commands_help(site):
    cli = _text(site / "cli.html")
    assert cli.count("usage:") >= 4  # fastnn, demo, experiment, bench
    for option in ("--epochs", "--scheduler", "--targets"):  # one of each subcommand's options
        assert option in cli


def test_formulas_are_mathml_and_nothing_is_fetched_from_elsewhere(site):
    kernels = (site / "api" / "kernels.html").read_text(encoding="utf-8")
    assert "<math" in kernels and "mathjax" not in kernels.lower()
    outside = []
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        # plain hyperlinks (<a href>) may point anywhere; nothing the page loads may
        for tag in re.findall(r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*>", text, re.I):
            if re.search(r"""(?:src|href|data|srcset)\s*=\s*["']?\s*(?:https?:)?//""", tag, re.I):
                outside.append((page.relative_to(site).as_posix(), tag))
    for css in site.rglob("*.css"):
        outside += [(css.name, u) for u in re.findall(r"(?:url\(|@import)\s*['\"]?\s*(?:https?:)?//[^)'\";]*",
                                                        css.read_text(encoding="utf-8"))]
    assert not outside, outside


def test_pages_render_in_chromium_with_no_failed_request(site, served, tmp_path):  # noqa: F811 -- the fixture
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    start, log = served
    url = start(site)
    index = _browse(chromium, tmp_path / "profile1", url + "index.html")
    assert "<h1>fastnn" in index and "Switching by import" in index and "fastnn.kernels" in index
    kernels = _browse(chromium, tmp_path / "profile2", url + "api/kernels.html")
    assert "<h1>fastnn.kernels" in kernels and 'id="fastnn.kernels.conv2d_forward"' in kernels and "<math" in kernels
    paths = {path for path, _ in log}
    assert {"/index.html", "/api/kernels.html"} <= paths and any(p.endswith(".css") for p in paths), log
    failed = [(path, code) for path, code in log if code >= 400]
    assert not failed, failed
