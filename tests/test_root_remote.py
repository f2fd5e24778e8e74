"""Reading through real servers on 127.0.0.1: HTTP range requests and XRootD (``root://``).

Both serve ``../shared/data``; a read through the server must equal the local read of the same
file row for row. The HTTP server is a few lines over the standard library (its stock handler
ignores ``Range`` headers); the XRootD server is the real ``xrootd`` daemon of Debian's
``xrootd-server`` package, and its test skips with the reason where the daemon or the Python
client is absent.
"""

from __future__ import annotations

import io
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sparkhep.root import read_root

pytestmark = pytest.mark.shared_data

REMOTE_FILE = "pythia/ttbar_1.root"
REMOTE_EVENTS = 5308
STARTUP_SECONDS = 15.0
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """A file server that answers single-range ``Range`` requests with 206, as uproot needs."""

    def send_head(self) -> io.BytesIO | None:  # type: ignore[override]
        """Serve ``bytes=start-end`` from the file; anything else as the stock handler does."""
        wanted = _RANGE.match(self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if wanted is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        start = int(wanted.group(1))
        end = min(int(wanted.group(2)) if wanted.group(2) else size - 1, size - 1)
        if start > end:
            self.send_error(416, f"range {start}-{end} outside a file of {size} bytes")
            return None
        with open(path, "rb") as handle:
            handle.seek(start)
            body = handle.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture(scope="module")
def http_server(shared_data) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` serving ``../shared/data``; stopped at teardown."""
    handler = partial(RangeRequestHandler, directory=str(shared_data))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def xrootd_server(shared_data) -> Iterator[str]:
    """``root://127.0.0.1:<port>//`` from a real ``xrootd`` daemon; stopped at teardown.

    The daemon accepts connections from this host only (``xrd.allow``); as root it must drop
    to an unprivileged user (``-R nobody``), which then owns its scratch directory.
    """
    binary = shutil.which("xrootd")
    if binary is None:
        pytest.skip("no xrootd binary (Debian: apt-get install -y xrootd-server)")
    pytest.importorskip("XRootD.client", reason="no XRootD Python client: pip install xrootd")
    pytest.importorskip("fsspec_xrootd", reason="no fsspec-xrootd: pip install 'sparkhep[xrootd]'")
    port = _free_port()
    scratch = Path(tempfile.mkdtemp(prefix="sparkhep-xrootd-"))
    command = [binary, "-c", str(scratch / "xrootd.cfg"), "-l", str(scratch / "xrootd.log")]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(scratch, nobody.pw_uid, nobody.pw_gid)
        command += ["-R", "nobody"]
    (scratch / "xrootd.cfg").write_text(
        f"xrd.port {port}\n"
        "xrd.allow host localhost\n"
        "all.export /\n"
        f"oss.localroot {shared_data}\n"
        f"all.adminpath {scratch}/admin\n"
        f"all.pidpath {scratch}\n"
    )
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _wait_for_port(port, process, scratch / "xrootd.log")
        yield f"root://127.0.0.1:{port}//"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    """Return once the daemon accepts connections; fail with its log after STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    text = log.read_text() if log.exists() else ""
    pytest.fail(
        f"xrootd did not listen on 127.0.0.1:{port} within {STARTUP_SECONDS} s "
        f"(exit code {process.poll()}); its log ends: {text[-2000:]!r}"
    )


def _assert_same_as_local(spark, url: str, local: Path) -> None:
    remote = read_root(spark, url).toArrow()
    expected = read_root(spark, str(local)).toArrow()
    assert remote.num_rows == expected.num_rows == REMOTE_EVENTS
    assert remote.schema == expected.schema
    assert remote.equals(expected)


def test_http_read_equals_the_local_read(spark, shared_data, http_server):
    _assert_same_as_local(spark, f"{http_server}/{REMOTE_FILE}", shared_data / REMOTE_FILE)


def test_http_missing_file_names_the_url(spark, http_server):
    url = f"{http_server}/pythia/no_such_file.root"
    with pytest.raises(Exception, match=re.escape(url)):
        read_root(spark, url)


def test_xrootd_read_equals_the_local_read(spark, shared_data, xrootd_server):
    _assert_same_as_local(spark, f"{xrootd_server}{REMOTE_FILE}", shared_data / REMOTE_FILE)


def test_xrootd_glob_lists_files_on_the_server(spark, shared_data, xrootd_server):
    df = read_root(spark, f"{xrootd_server}pythia/ttbar_[12].root", branches=["event"])
    local = read_root(spark, str(shared_data / "pythia" / "ttbar_[12].root"), branches=["event"])
    assert df.toArrow().equals(local.toArrow())
