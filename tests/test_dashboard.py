"""The published asv dashboard renders offline: every script it needs is served by the site itself.

The end-to-end test runs one small asv benchmark (``--quick``) into a temporary results directory, publishes it
with ``tools/publish_dashboard.py`` (``asv publish`` + the JavaScript libraries fetched from the npm registry),
serves the site on 127.0.0.1 and loads the index and a graph page in headless Chromium. It skips when asv, npm or
Chromium is missing (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARK = "activations_losses.SoftmaxCrossEntropy.time_forward"  # tiny arrays
#: asv matches -b against "name(param, ...)": four of the twelve combinations, torch (slow to import) left out
SELECTION = rf"^{re.escape(BENCHMARK)}\('(fastnn|numpy)', 'float32', "


def _load_tool():
    spec = importlib.util.spec_from_file_location("publish_dashboard", ROOT / "tools" / "publish_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("publish_dashboard", mod)
    spec.loader.exec_module(mod)
    return mod


tool = _load_tool()


def _asv_index_html() -> str:
    asv = pytest.importorskip("asv")
    return (pathlib.Path(asv.__file__).parent / "www" / "index.html").read_text(encoding="utf-8")


def test_every_cdn_url_of_asv_has_an_npm_source():
    urls = re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https://[^"]+)"', _asv_index_html())
    assert len(urls) >= 9
    assets = [tool.asset_for(u) for u in urls]
    specs = {a.spec for a in assets}
    assert {"jquery@3.3.1", "flot@0.8.3", "bootstrap@3.1.1", "blueimp-md5@2.19.0", "flot-orderbars@1.0.0",
            "stupid-table-plugin@1.1.3"} == specs
    by_url = dict(zip(urls, assets, strict=True))
    assert by_url["https://code.jquery.com/jquery-3.3.1.min.js"].path == "dist/jquery.min.js"
    md5 = "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js"
    assert by_url[md5].path == "js/md5.min.js"


def test_unknown_cdn_url_is_refused():
    with pytest.raises(ValueError, match="no npm source known"):
        tool.asset_for("https://unpkg.com/react@18/umd/react.production.min.js")


def test_sri_matches_the_browser_format():
    # echo -n abc | openssl dgst -sha256 -binary | base64
    assert tool.sri(b"abc", "sha256") == "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="


def test_rewrite_keeps_verified_integrity_and_drops_the_rest():
    tag = '<script src="https://x/a.js" integrity="sha256-AAA=" crossorigin="anonymous"></script>'
    kept = tool._rewrite_tag(tag, {"https://x/a.js": "vendor/a.js"}, {"https://x/a.js": True})
    dropped = tool._rewrite_tag(tag, {"https://x/a.js": "vendor/a.js"}, {"https://x/a.js": False})
    assert kept == '<script src="vendor/a.js" integrity="sha256-AAA=" crossorigin="anonymous"></script>'
    assert dropped == '<script src="vendor/a.js" crossorigin="anonymous"></script>'


def test_category_bars_patch_applies_to_asvs_page_once(tmp_path):
    """The x-axis = parameter view gets numeric x positions and explicit ticks; a second run changes nothing; a
    page the patch does not recognise is refused rather than published half-fixed."""
    asv = pytest.importorskip("asv")
    page = (pathlib.Path(asv.__file__).parent / "www" / "graphdisplay.js").read_text(encoding="utf-8")
    (tmp_path / "graphdisplay.js").write_text(page, encoding="utf-8")
    tool.patch_category_bars(tmp_path)
    patched = (tmp_path / "graphdisplay.js").read_text(encoding="utf-8")
    assert "options.xaxis.mode = 'categories'" not in patched and "options.xaxis.ticks = fastnn_ticks" in patched
    tool.patch_category_bars(tmp_path)
    assert (tmp_path / "graphdisplay.js").read_text(encoding="utf-8") == patched
    (tmp_path / "graphdisplay.js").write_text("// another asv\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="category-axis code is not the one"):
        tool.patch_category_bars(tmp_path)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    log: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):
        self.log.append((self.path.split("?")[0], int(code) if str(code).isdigit() else 0))

    def log_message(self, format, *args):  # noqa: A002 -- the base class's name
        pass  # the log above is what the test reads; keep pytest's output clean


@pytest.fixture
def served():
    """Serve a directory on 127.0.0.1 (a free port); yields (start(directory) -> base URL, request log)."""
    servers = []
    log: list[tuple[str, int]] = []

    def start(directory: pathlib.Path) -> str:
        handler = functools.partial(type("H", (_Handler,), {"log": log}), directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start, log
    for s in servers:
        s.shutdown()
        s.server_close()


def _browse(chromium: str, profile: pathlib.Path, url: str, *extra: str) -> str:
    """Load ``url`` in headless Chromium (scripts run for 15 s of virtual time); returns the DOM it ends with.

    ``extra`` flags replace ``--dump-dom`` (e.g. ``--screenshot=out.png``; then nothing is returned).
    """
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
           "--virtual-time-budget=15000", "--window-size=1400,900", *(extra or ["--dump-dom"]), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_published_dashboard_renders_offline(tmp_path, served):
    pytest.importorskip("asv")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    if shutil.which("npm") is None:
        pytest.skip("npm not installed: the publish step fetches the dashboard's libraries from the npm registry")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    if commit.returncode != 0:
        pytest.skip("not a git checkout: asv needs a commit to file results under")

    conf = tmp_path / "asv.conf.json"
    conf.write_text(json.dumps({
        "version": 1, "project": "fastnn", "project_url": "#", "repo": str(ROOT), "branches": ["main"],
        "dvcs": "git", "environment_type": "existing", "pythons": ["same"],
        "benchmark_dir": str(ROOT / "asv_bench"), "env_dir": str(tmp_path / "env"),
        "results_dir": str(tmp_path / "results"), "html_dir": str(tmp_path / "html"),
    }))
    # asv keeps its machine description in ~/.asv-machine.json: a private HOME leaves the user's alone
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes", "--machine", "dashboard-test", "--config", str(conf)],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    run = subprocess.run([*asv, "run", "--python=same", "--quick", "--machine", "dashboard-test",
                          "--set-commit-hash", commit.stdout.strip(), "-b", SELECTION,
                          "--config", str(conf)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result_files = [p for p in (tmp_path / "results" / "dashboard-test").glob("*.json") if p.name != "machine.json"]
    assert len(result_files) == 1, run.stdout[-3000:]
    timings = json.loads(result_files[0].read_text())["results"][BENCHMARK][0]
    # params order impl x dtype x size: fastnn float32 mnist/cifar, numpy float32 mnist/cifar were run
    ran = [timings[i] for i in (0, 1, 4, 5)]
    assert all(isinstance(t, float) and 0 < t < 1 for t in ran), timings
    assert all(t is None or math.isnan(t) for i, t in enumerate(timings) if i not in (0, 1, 4, 5)), timings

    pub = subprocess.run([sys.executable, str(ROOT / "tools" / "publish_dashboard.py"), "--config", str(conf)],
                         cwd=tmp_path, env={**env, "HOME": os.environ.get("HOME", str(tmp_path))},
                         capture_output=True, text=True, timeout=300, check=False)
    assert pub.returncode == 0, pub.stdout[-3000:] + pub.stderr[-3000:]
    html_dir = tmp_path / "html"
    assert tool.remote_assets(html_dir) == []
    assert (html_dir / "vendor" / "jquery@3.3.1" / "dist" / "jquery.min.js").is_file()

    base, log = served
    url = base(html_dir)
    index = _browse(chromium, tmp_path / "profile1", url)
    assert "Can not determine continental origin of swallow" not in index  # asv's "a library did not load"
    assert "activations_losses" in index  # the benchmark grid lists the module
    assert "SoftmaxCrossEntropy" in index

    graph = _browse(chromium, tmp_path / "profile2", f"{url}#{BENCHMARK}")
    assert "continental origin of swallow" not in graph
    assert 'class="flot-base"' in graph  # flot drew its canvas
    assert "impl-fastnn" in graph and "impl-numpy" in graph  # the legend lists the plotted series

    # asv asks for a summary of every benchmark it knows, run or not: only those of the run exist
    failed = [(p, c) for p, c in log if c >= 400 and not p.startswith("/graphs/summary/")]
    assert failed == []
    served_paths = {p for p, _ in log}
    assert "/vendor/flot@0.8.3/jquery.flot.js" in served_paths
    assert any(p.startswith("/graphs/") and p.endswith(".json") for p in served_paths)  # the plotted data

    # the side-by-side view (x-axis = impl) draws its bars, not only the labels (see patch_category_bars)
    image = pytest.importorskip("matplotlib.image")
    bars = tmp_path / "impl.png"
    tool.screenshot(html_dir, f"{BENCHMARK}?x-axis=impl", bars, chromium, size="1200,700")
    rgb = image.imread(bars)[100:, 210:, :3]  # right of the settings panel, below the header and legend
    coloured = (rgb.max(axis=2) - rgb.min(axis=2)) > 0.15  # bar fills and borders; text and grid are grey
    assert coloured.mean() > 0.02, f"{coloured.mean():.4f} of the plot is coloured: no bars drawn"

    # the publish tool's own screenshot step (how docs/dashboard.png is made) gives a PNG of the window size
    png = tmp_path / "graph.png"
    tool.screenshot(html_dir, BENCHMARK, png, chromium, size="800,600")
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (800, 600)


def test_history_two_commits_in_their_own_virtualenvs(tmp_path):
    """The README's history command (``asv run -E virtualenv:X.Y --quick A..B``, with asv.conf.json's build
    command) builds each commit in its own environment from the package registry; the published graph of a
    benchmark then holds one point per commit."""
    pytest.importorskip("asv")
    pytest.importorskip("virtualenv")
    from asv.util import load_json

    repo = tmp_path / "repo"
    clone = subprocess.run(["git", "clone", "-q", "--no-local", str(ROOT), str(repo)], capture_output=True,
                           text=True, check=False)
    if clone.returncode != 0:
        pytest.skip(f"not a git checkout to clone: {clone.stderr.strip()}")
    ident = ["-c", "user.name=fastnn test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", *ident, "commit", "-q", "--allow-empty", "-m", "second commit"], cwd=repo, check=True)

    conf = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    conf.update(repo=str(repo), benchmark_dir=str(ROOT / "asv_bench"), env_dir=str(tmp_path / "env"),
                results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "asv"]
    subprocess.run([*cmd, "machine", "--yes", "--machine", "history-test"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=60)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    run = subprocess.run([*cmd, "run", "-E", f"virtualenv:{python}", "--quick", "--machine", "history-test",
                          "-b", rf"^{re.escape(BENCHMARK)}\('fastnn', 'float32', 'mnist'", "HEAD~2..HEAD"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Failed to build" not in run.stdout, run.stdout[-3000:]
    subprocess.run([*cmd, "publish"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    graphs = list((tmp_path / "html" / "graphs").glob(f"branch-main/machine-history-test/*/{BENCHMARK}.json"))
    assert len(graphs) == 1, sorted(str(p) for p in (tmp_path / "html" / "graphs").rglob("*.json"))[:20]
    points = json.loads(graphs[0].read_text())
    assert len(points) == 2  # one per commit
    assert all(isinstance(p[1][0], float) and 0 < p[1][0] < 1 for p in points), points
