"""Publish the asv dashboard as a self-contained site: no request leaves the server it is served from.

``asv publish`` (asv 0.6) writes an ``index.html`` that loads jQuery, flot and its plugins, Bootstrap,
stupidtable and blueimp-md5 from public CDNs, so the page is blank where those cannot be reached. This script runs
``asv publish``, then, for every ``<script src>`` and ``<link href>`` pointing at a CDN, fetches the same library
at the same version from the npm registry (``npm pack``: a tarball, no ``node_modules``), copies the file (and,
for stylesheets, the fonts and images they reference) into ``<html_dir>/vendor/``, and points the tag at the copy.
Nothing third-party is committed: the libraries are fetched at publish time. One fix is applied to asv's own
page script: its "x-axis = parameter" view (fastnn / numpy / torch side by side) drew labels but no bars
(:func:`patch_category_bars`).

A tag's ``integrity`` (subresource integrity) hash is kept when the npm file is byte-identical to the CDN file it
names, and dropped when it is not: cdnjs serves its own minified builds of flot, which npm ships unminified.

Usage (from the project root)::

    python tools/publish_dashboard.py                 # asv publish + vendoring, into html_dir of asv.conf.json
    python tools/publish_dashboard.py --no-publish    # only vendor an already published html_dir
    python tools/publish_dashboard.py --screenshot docs/dashboard.png \
        --page "optimizers.Adam.time_step?y-axis-scale=log&p-size='mnist'&p-size='cifar'"
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: cdnjs library name -> (npm package, {cdnjs version: npm version} where npm lacks the cdnjs version)
CDNJS_TO_NPM: dict[str, tuple[str, dict[str, str]]] = {
    "flot": ("flot", {}),
    "blueimp-md5": ("blueimp-md5", {}),
    # Stupid-Table-Plugin 1.0.1 was only ever released on cdnjs; npm has the package under another name, with
    # 1.1.3 its one release. asv calls $.fn.stupidtable() and $.fn.stupidsort(), which 1.1.3 has unchanged.
    "stupidtable": ("stupid-table-plugin", {"1.0.1": "1.1.3"}),
}

_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'\s([a-zA-Z-]+)\s*=\s*"([^"]*)"')
_CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+?)['\"]?\s*\)")


@dataclass(frozen=True)
class Asset:
    """A file of an npm package standing in for one CDN URL."""

    url: str
    package: str
    version: str
    path: str  # inside the package, as the CDN names it (a missing ``.min`` is tolerated)

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


def asset_for(url: str) -> Asset:
    """The npm package, version and file of a CDN URL that asv's pages use; ValueError for any other URL."""
    m = re.fullmatch(r"https?://cdn\.jsdelivr\.net/npm/((?:@[^/]+/)?[^@/]+)@([^/]+)/(.+)", url)
    if m:
        return Asset(url, m[1], m[2], m[3])
    m = re.fullmatch(r"https?://code\.jquery\.com/jquery-([0-9][^/]*?)(\.min)?\.js", url)
    if m:
        return Asset(url, "jquery", m[1], f"dist/jquery{m[2] or ''}.js")
    m = re.fullmatch(r"https?://cdnjs\.cloudflare\.com/ajax/libs/([^/]+)/([^/]+)/(.+)", url)
    if m and m[1] in CDNJS_TO_NPM:
        package, renamed = CDNJS_TO_NPM[m[1]]
        return Asset(url, package, renamed.get(m[2], m[2]), m[3])
    raise ValueError(f"no npm source known for {url} (add it to tools/publish_dashboard.py)")


def npm_unpack(spec: str, workdir: Path, npm: str = "npm") -> Path:
    """``npm pack`` the package ``spec`` and unpack it; returns the package's root directory."""
    dest = workdir / re.sub(r"[^A-Za-z0-9_.-]", "_", spec)
    if dest.exists():
        return dest / "package"
    dest.mkdir(parents=True)
    proc = subprocess.run([npm, "pack", spec, "--json", "--pack-destination", str(dest)], cwd=dest,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"npm pack {spec} failed:\n{proc.stderr.strip()}")
    filename = json.loads(proc.stdout)[0]["filename"]
    with tarfile.open(dest / Path(filename).name) as tar:
        tar.extractall(dest, filter="data")
    return dest / "package"


def _find(root: Path, path: str) -> Path:
    candidates = [path]
    if ".min." in path:
        candidates.append(path.replace(".min.", ".", 1))  # npm's flot ships unminified files only
    for c in candidates:
        if (root / c).is_file():
            return root / c
    raise FileNotFoundError(f"none of {candidates} in {root}")


def sri(data: bytes, algorithm: str) -> str:
    """Subresource-integrity value of ``data`` (``sha256-...``)."""
    return f"{algorithm}-{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def _copy_with_css_refs(src: Path, package_root: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    if src.suffix != ".css":
        return
    # Bootstrap's stylesheet loads its glyph font from ../fonts/: bring every relative url() along
    for ref in _CSS_URL.findall(src.read_text(encoding="utf-8", errors="replace")):
        if re.match(r"[a-z]+:|/|#", ref):
            continue
        rel = ref.split("?")[0].split("#")[0]
        ref_src = (src.parent / rel).resolve()
        if ref_src.is_file() and package_root.resolve() in ref_src.parents:
            ref_dest = dest.parent / rel
            ref_dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ref_src, ref_dest)


def vendor_html_dir(html_dir: Path, npm: str = "npm", log=print) -> list[tuple[Asset, str]]:
    """Replace CDN ``<script>``/``<link>`` URLs in every ``*.html`` of ``html_dir`` by npm copies under ``vendor/``.

    Returns each asset with what happened to its integrity hash (``"verified"`` or ``"dropped"``).
    """
    pages = sorted(html_dir.glob("*.html"))
    urls: dict[str, Asset] = {}
    for page in pages:
        for tag in _TAG.finditer(page.read_text(encoding="utf-8")):
            attrs = dict(_ATTR.findall(tag[0]))
            url = html.unescape(attrs.get("src") or attrs.get("href") or "")
            if re.match(r"https?://", url) and (tag[1].lower() == "script" or "stylesheet" in attrs.get("rel", "")):
                urls[url] = asset_for(url)
    done: list[tuple[Asset, str]] = []
    local: dict[str, str] = {}
    integrity_ok: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="fastnn-npm-") as tmp:
        for url, asset in urls.items():
            root = npm_unpack(asset.spec, Path(tmp), npm)
            src = _find(root, asset.path)
            rel = PurePosixPath("vendor", f"{asset.package.replace('/', '__')}@{asset.version}",
                                src.relative_to(root).as_posix())
            _copy_with_css_refs(src, root, html_dir / rel)
            local[url] = str(rel)
            integrity_ok[url] = _integrity_matches(html_dir, pages, url, src.read_bytes())
            status = "verified" if integrity_ok[url] else "dropped"
            done.append((asset, status))
            log(f"vendored {asset.spec} {src.relative_to(root).as_posix()} -> {rel} (integrity {status})")
    for page in pages:
        text = page.read_text(encoding="utf-8")
        new = _TAG.sub(lambda m: _rewrite_tag(m[0], local, integrity_ok), text)
        if new != text:
            page.write_text(new, encoding="utf-8")
    left = remote_assets(html_dir)
    if left:
        raise RuntimeError(f"remote assets left in the published pages: {left}")
    return done


def _integrity_matches(html_dir: Path, pages: list[Path], url: str, data: bytes) -> bool:
    for page in pages:
        for tag in _TAG.finditer(page.read_text(encoding="utf-8")):
            attrs = dict(_ATTR.findall(tag[0]))
            if url in (attrs.get("src"), attrs.get("href")) and "integrity" in attrs:
                algorithm = attrs["integrity"].split("-", 1)[0]
                return sri(data, algorithm) == attrs["integrity"]
    return False


def _rewrite_tag(tag: str, local: dict[str, str], integrity_ok: dict[str, bool]) -> str:
    attrs = dict(_ATTR.findall(tag))
    url = html.unescape(attrs.get("src") or attrs.get("href") or "")
    if url not in local:
        return tag
    attr = "src" if "src" in attrs else "href"
    tag = tag.replace(f'{attr}="{attrs[attr]}"', f'{attr}="{html.escape(local[url])}"', 1)
    if not integrity_ok[url]:
        tag = re.sub(r'\s+integrity\s*=\s*"[^"]*"', "", tag)
    return tag


def remote_assets(html_dir: Path) -> list[str]:
    """Every script or stylesheet URL in ``html_dir``'s pages that is not served from the site itself."""
    found = []
    for page in sorted(html_dir.glob("*.html")):
        for tag in _TAG.finditer(page.read_text(encoding="utf-8")):
            attrs = dict(_ATTR.findall(tag[0]))
            url = attrs.get("src") or (attrs.get("href") if "stylesheet" in attrs.get("rel", "") else None)
            if url and re.match(r"(https?:)?//", url):
                found.append(f"{page.name}: {url}")
    return found


def screenshot(html_dir: Path, page: str, png: Path, chromium: str = "chromium", size: str = "1400,900") -> None:
    """Serve ``html_dir`` on 127.0.0.1 and save headless Chromium's picture of ``index.html#<page>`` to ``png``."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 -- the base class's name
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="fastnn-chromium-") as profile:
            url = f"http://127.0.0.1:{server.server_address[1]}/#{page}"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--disable-component-update", "--no-first-run", "--disable-extensions",
                            f"--user-data-dir={profile}", "--virtual-time-budget=15000", f"--window-size={size}",
                            "--hide-scrollbars", f"--screenshot={png.resolve()}", url],
                           check=True, capture_output=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()


#: asv 0.6's graph page, when a parameter is the x-axis: a flot ``categories`` axis with bars ordered by the
#: orderBars plugin. orderBars measures the x range from the *raw* data, whose x values are the category labels
#: (strings): the range is NaN, so is every bar's offset, and flot draws the axis labels but no bars. The patch
#: hands flot numeric positions (0, 1, ... in order of first appearance) and the labels as explicit ticks, which
#: is what the categories plugin would have computed; orderBars then has numbers to measure.
_CATEGORY_AXIS = """                options.xaxis.mode = 'categories';
                options.xaxis.tickLength = 0;"""
_CATEGORY_LABELS = """                $.each(graphs, function(i, graph) {
                    $.each(graph.data, function(j, point) {
                        point[0] = $("<span>").text('' + point[0]).html();
                    });
                });"""
_NUMERIC_AXIS = """                options.xaxis.tickLength = 0;"""
_NUMERIC_LABELS = """                var fastnn_positions = {}, fastnn_ticks = [];  // numeric x for orderBars
                $.each(graphs, function(i, graph) {
                    $.each(graph.data, function(j, point) {
                        var label = $("<span>").text('' + point[0]).html();
                        if (!(label in fastnn_positions)) {
                            fastnn_positions[label] = fastnn_ticks.length;
                            fastnn_ticks.push([fastnn_ticks.length, label]);
                        }
                        point[0] = fastnn_positions[label];
                    });
                });
                options.xaxis.ticks = fastnn_ticks;
                options.xaxis.min = -0.5;
                options.xaxis.max = fastnn_ticks.length - 0.5;"""


def patch_category_bars(html_dir: Path) -> None:
    """Make asv's parameter-on-the-x-axis view draw its bars (see :data:`_CATEGORY_AXIS`); idempotent.

    Raises RuntimeError when ``graphdisplay.js`` is not the asv 0.6 code the patch was written against.
    """
    path = html_dir / "graphdisplay.js"
    text = path.read_text(encoding="utf-8")
    if "fastnn_positions" in text:
        return
    if text.count(_CATEGORY_AXIS) != 1 or text.count(_CATEGORY_LABELS) != 1:
        raise RuntimeError(f"{path}: asv's category-axis code is not the one tools/publish_dashboard.py patches "
                           "(was asv upgraded? check whether the x-axis = parameter view draws bars now)")
    text = text.replace(_CATEGORY_AXIS, _NUMERIC_AXIS).replace(_CATEGORY_LABELS, _NUMERIC_LABELS)
    path.write_text(text, encoding="utf-8")


def html_dir_of(config: Path) -> Path:
    """The ``html_dir`` of an asv config, resolved as asv resolves it (from the config file's directory)."""
    from asv.config import Config  # asv is needed to publish anyway

    return (config.parent / Config.load(str(config)).html_dir).resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("asv.conf.json"), help="asv config (asv.conf.json)")
    parser.add_argument("--html-dir", type=Path, help="output directory (default: html_dir of the config)")
    parser.add_argument("--no-publish", action="store_true", help="skip `asv publish`, vendor html-dir as it is")
    parser.add_argument("--npm", default=os.environ.get("NPM", "npm"), help="npm executable")
    parser.add_argument("--screenshot", type=Path, help="also save a PNG of a page (headless Chromium)")
    parser.add_argument("--page", default="", help="what follows '#' in the page's address (a benchmark name and "
                        "its view settings); default: the benchmark grid")
    parser.add_argument("--chromium", default="chromium", help="Chromium executable for --screenshot")
    args = parser.parse_args(argv)
    config = args.config.resolve()
    html_dir = args.html_dir.resolve() if args.html_dir else html_dir_of(config)
    if shutil.which(args.npm) is None:
        parser.error(f"{args.npm} not found: npm is needed to fetch the dashboard's JavaScript libraries")
    if not args.no_publish:
        subprocess.run([sys.executable, "-m", "asv", "publish", "--config", str(config), "--html-dir",
                        str(html_dir)], cwd=config.parent, check=True)
    if not (html_dir / "index.html").is_file():
        parser.error(f"{html_dir} has no index.html: run `asv publish` first")
    vendor_html_dir(html_dir, args.npm)
    patch_category_bars(html_dir)
    print(f"self-contained dashboard in {html_dir} (serve it: python -m http.server -d {html_dir})")
    if args.screenshot:
        if shutil.which(args.chromium) is None:
            parser.error(f"{args.chromium} not found (Debian: apt-get install chromium)")
        screenshot(html_dir, args.page, args.screenshot, args.chromium)
        print(f"screenshot of #{args.page} in {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
