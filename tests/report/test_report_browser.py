"""The report drawn by a real browser (headless Chromium), and the dashboard command answering HTTP.

CI installs the browser with ``apt-get install -y chromium`` (Debian); without /usr/bin/chromium the browser
tests skip. The DOM is read with ``--dump-dom`` after the page's scripts have run; a small script injected
before plotly records uncaught errors and console.error calls on the page itself, so no DevTools client is
needed.
"""

import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nasscale.report.page import write_report
from tests.report.test_report import synthetic_study

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install -y "
                                                                   "chromium) to render the report in")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=15000"]
ERROR_RECORDER = """<script>
window.pageErrors = [];
function recordPageError(text) {
  window.pageErrors.push(String(text));
  document.documentElement.setAttribute("data-page-errors", JSON.stringify(window.pageErrors));
}
window.addEventListener("error", (event) => recordPageError(event.message || "failed to load "
  + (event.target && (event.target.src || event.target.href))), true);
window.addEventListener("unhandledrejection", (event) => recordPageError("unhandled rejection: " + event.reason));
const originalConsoleError = console.error;
console.error = (...args) => { recordPageError(args.join(" ")); originalConsoleError(...args); };
window.addEventListener("load", () => document.documentElement.setAttribute("data-loaded", "yes"));
</script>"""


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """A two-study report with every kind of plot (fronts with the not-trained strip, latency, hypervolume,
    choices, importances, ladder)."""
    folder = tmp_path_factory.mktemp("browser")
    storage = f"sqlite:///{folder / 'studies.db'}"
    synthetic_study(storage, "first")
    synthetic_study(storage, "second", seed=1, ladder=False)
    return write_report(["first", "second"], storage, folder / "report.html")


@needs_chromium
def test_browser_draws_every_plot_without_errors(report_page, tmp_path):
    source = report_page.read_text()
    figures = source.count("Plotly.newPlot(")
    instrumented = tmp_path / "instrumented.html"
    instrumented.write_text(source.replace("<head>", "<head>" + ERROR_RECORDER, 1))
    result = chromium("--dump-dom", instrumented.as_uri())
    dom = result.stdout
    assert 'data-loaded="yes"' in dom, f"the page did not finish loading: {result.stderr[-2000:]}"
    errors = re.search(r"data-page-errors=\"([^\"]*)\"", dom)
    assert errors is None, f"errors on the page: {errors.group(1) if errors else ''}"
    assert figures >= 10
    assert dom.count('class="plot-container plotly"') == figures  # every figure was drawn
    assert dom.count('class="main-svg"') >= 2 * figures
    assert len(re.findall(r'class="point"', dom)) > 50  # markers of the scatter and box plots
    assert 'class="trace boxes"' in dom and 'class="trace bars"' in dom  # choices, importances


@needs_chromium
def test_browser_screenshot(report_page, tmp_path):
    screenshot = tmp_path / "report.png"
    result = chromium(f"--screenshot={screenshot}", "--window-size=1400,2400", report_page.as_uri())
    assert screenshot.is_file(), result.stderr[-2000:]
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1400, 2400)
        colours = image.convert("RGB").resize((140, 240)).getcolors(maxcolors=100_000)
    assert colours is not None and len(colours) > 50  # plots drawn, not a blank page


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dashboard_answers_http_and_stops_on_ctrl_c(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    synthetic_study(storage, "served", trials=3, ladder=False)
    port = free_port()
    command = [sys.executable, "-c", "from nasscale.cli.app import main; main()", "dashboard", "--storage", storage,
               "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        studies = wait_for_json(f"http://127.0.0.1:{port}/api/studies", server)
        assert [study["study_name"] for study in studies["study_summaries"]] == ["served"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    assert f"on http://127.0.0.1:{port}/" in out and "dashboard stopped" in out


def wait_for_json(url: str, server: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the dashboard exited with {server.returncode}: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.25)
    pytest.fail(f"no answer from {url} within {timeout} s")


def test_dashboard_on_a_missing_storage_is_one_line(tmp_path):
    command = [sys.executable, "-c", "from nasscale.cli.app import main; main()", "dashboard", "--storage",
               f"sqlite:///{tmp_path / 'none.db'}", "--port", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("nasscale: error: storage")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "none.db").exists()
