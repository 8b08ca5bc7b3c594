"""A real HTTP server on 127.0.0.1, started by the tests, serving the shared data files in several ways.

``http://127.0.0.1:<port>/<mode>/<file>`` serves ``<file>`` from a folder (the shared MNIST one by default):
``ok`` as is; ``corrupt`` with one byte flipped (MD5 mismatch); ``halfway`` announcing the full Content-Length
and closing the connection after half; ``nolength`` without Content-Length, closing after half. A file not
there is a 404. Every request is counted per path.
"""

from __future__ import annotations

import collections
import http.server
import threading

import pytest

from tests.conftest import SHARED_MNIST

SHARED_TINYSHAKESPEARE = SHARED_MNIST.parent / "tinyshakespeare"
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def need_shared_mnist(*names: str) -> None:
    missing = [n for n in names if not (SHARED_MNIST / n).is_file()]
    if missing:
        pytest.skip(f"real MNIST files {missing} not found in {SHARED_MNIST} (shared data of this workplace)")


class _Handler(http.server.BaseHTTPRequestHandler):
    root = SHARED_MNIST
    counts: collections.Counter

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.counts[self.path] += 1
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("ok", "corrupt", "halfway", "nolength") or "/" in parts[1]:
            self.send_error(404)
            return
        mode, name = parts
        path = self.root / name
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = bytearray(path.read_bytes())
        if mode == "corrupt":
            data[len(data) // 2] ^= 0x01
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode != "nolength":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode in ("halfway", "nolength"):
            self.wfile.write(bytes(data[: len(data) // 2]))
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(bytes(data))


class MirrorServer:
    def __init__(self, root=SHARED_MNIST) -> None:
        handler = type("Handler", (_Handler,), {"counts": collections.Counter(), "root": root})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.counts = handler.counts
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{mode}/"

    @property
    def total_requests(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def mirror():
    server = MirrorServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def serve():
    """``serve(folder)``: a :class:`MirrorServer` of ``folder``, closed after the test."""
    servers = []

    def start(root):
        servers.append(MirrorServer(root))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture(autouse=True)
def _no_default_mirrors(monkeypatch, tmp_path):
    """Tests never reach the public mirrors or the user's cache: both are pointed somewhere harmless."""
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "fastnn_data_env"))
    for name in ("mnist", "tinyshakespeare", "ptb"):
        monkeypatch.delenv(f"FASTNN_{name.upper()}_URLS", raising=False)
        monkeypatch.setattr(f"fastnn.datasets.{name}.DEFAULT_MIRRORS", ("http://127.0.0.1:9/unused/",))
