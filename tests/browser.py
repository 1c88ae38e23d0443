"""Real-browser helpers: a Streamlit server on loopback and Debian's Chromium driven by Playwright.

Used by the browser tests and by benchmarks/bench_browser.py. Never runs `playwright install`: the browser is
/usr/bin/chromium (override with CAE_CHROMIUM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CAE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"

SEVEN = [[(0.2, 0.2), (0.8, 0.2), (0.45, 0.85)]]  # strokes in canvas units, drawn with the mouse
ZERO = [[(0.5, 0.15), (0.3, 0.3), (0.28, 0.6), (0.5, 0.85), (0.7, 0.6), (0.72, 0.3), (0.5, 0.15)]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    log: Path  # what the server printed, tracebacks included


def readme_command(port: int, app_dir: Path = ROOT) -> list[str]:
    """The README's command, from the venv inside the clone, with only a port and headless mode added: every setting
    that matters is in .streamlit/config.toml, where the README's command picks it up too."""
    streamlit = app_dir / ".venv" / "bin" / "streamlit"
    return [str(streamlit), "run", "app.py", "--server.headless", "true", "--server.port", str(port)]


PORT_TAKEN = "is not available"  # what Streamlit prints when another process took the port between our choice and it


@contextlib.contextmanager
def streamlit_server(data_dir: Path, *, env: dict[str, str] | None = None, app_dir: Path = ROOT) -> Iterator[Server]:
    """The app in `app_dir` (this clone, or another to compare with) started as the README starts it, on a free
    port; yields its URL and process id, stops it after. A port taken meanwhile by another process (tests and
    benchmarks run side by side) is given up for another, up to 3 times."""
    env = {**os.environ, "CAE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
    log = tempfile.NamedTemporaryFile("w+", prefix="streamlit-", suffix=".log", delete=False)
    tries = 3
    port = free_port()
    process = subprocess.Popen(readme_command(port, app_dir), cwd=app_dir, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            if process.poll() is not None:  # first: a server answering on the port may be another's
                tries -= 1
                if PORT_TAKEN not in Path(log.name).read_text() or tries == 0:
                    raise RuntimeError(f"streamlit did not start: {Path(log.name).read_text()[-2000:]}")
                port = free_port()
                process = subprocess.Popen(readme_command(port, app_dir), cwd=app_dir, env=env, stdout=log,
                                           stderr=subprocess.STDOUT)
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"streamlit did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.2)
        yield Server(f"http://127.0.0.1:{port}", process.pid, Path(log.name))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    with chromium_browsers(1) as (context,):
        yield context


@contextlib.contextmanager
def chromium_browsers(count: int) -> Iterator[list]:
    """`count` separate Chromium browsers (a profile each: separate people), from one Playwright driver (a second
    driver in the same thread is refused)."""
    from playwright.sync_api import sync_playwright

    with contextlib.ExitStack() as stack:
        driver = stack.enter_context(sync_playwright())
        contexts = []
        for _ in range(count):
            profile = stack.enter_context(tempfile.TemporaryDirectory(prefix="chromium-"))
            context = driver.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000})
            stack.callback(context.close)
            contexts.append(context)
        yield contexts


def button(page, name: str):
    """A button of the page itself (Streamlit's status widget has a "Stop" button of its own)."""
    return page.get_by_test_id("stMainBlockContainer").get_by_role("button", name=name, exact=True)


def choose(page, label: str, option: str, timeout: float = 30.0) -> None:
    """Pick `option` in the selectbox labelled `label`. A rerun that lands while its list is open redraws the
    widget and closes the list (the page's first runs, or the sidebar growing): open it again until the option can
    be clicked, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=3_000)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")


def canvas_box(page) -> dict:
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(state="visible", timeout=60_000)
    return canvas.bounding_box()


def clear_canvas(page) -> None:
    """Press the page's Clear button and wait until the fresh canvas has replaced the old one."""
    old = page.locator("canvas.upper-canvas").first.element_handle()
    button(page, "Clear").click()
    page.wait_for_function("el => !el.isConnected", arg=old, timeout=30_000)
    canvas_box(page)


def draw(page, strokes, *, release: bool = True) -> None:
    """Draw strokes (lists of points in 0..1 canvas units) with the mouse; `release=False` holds the last one."""
    box = canvas_box(page)
    for n, stroke in enumerate(strokes):
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=8)
        if release or n < len(strokes) - 1:
            page.mouse.up()


def plots(page) -> list[dict]:
    """Every plotly chart on the page: its title and the number of points in each trace (decoded in _fullData)."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
        title: (el.layout && el.layout.title && (el.layout.title.text || el.layout.title)) || '',
        points: (el._fullData || []).map(t => (t.x ? t.x.length : (t.z ? t.z.length : 0)))}))""")


def wait_for_plot(page, title_part: str, *, min_points: int = 0, timeout: float = 60_000) -> None:
    """Wait until a plotly chart whose title contains title_part is drawn with more than min_points points."""
    page.wait_for_function("""([part, least]) => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
        el.layout && String((el.layout.title && el.layout.title.text) || '').includes(part)
        && el._fullData && el._fullData.length && (el._fullData[0].x || el._fullData[0].z || []).length > least)""",
                           arg=[title_part, min_points], timeout=timeout)


def wait_for_picture(page, alt_part: str, *, timeout: float = 60_000) -> None:
    """Wait until a picture (st.image) whose alt text contains alt_part is loaded and drawn."""
    page.wait_for_function("""part => [...document.images].some(img => (img.alt || '').includes(part)
        && img.complete && img.naturalWidth > 0)""", arg=alt_part, timeout=timeout)


def wait_until_idle(page, timeout: float = 120_000) -> None:
    """Until the app's script run has finished: Streamlit shows its status widget ("Running...") only meanwhile,
    and re-renders the elements it marked stale when the run ends (a chart re-rendered then loses plotly's hover)."""
    page.wait_for_function("""() => !document.querySelector('[data-testid="stStatusWidget"]')
        || !document.querySelector('[data-testid="stStatusWidget"]').textContent.includes('Running')""",
                           timeout=timeout)


def picture_alts(page) -> list[str]:
    """The alt text of every picture on the page (each names what it shows: the panels' titles, a stage ...)."""
    return page.evaluate("() => [...document.images].map(img => img.alt || '')")


def plotly_loaded(page) -> bool:
    """Whether the page has fetched plotly.js (Streamlit's PlotlyChart chunk, fetched with the first chart)."""
    return page.evaluate("() => performance.getEntriesByType('resource').some(e => e.name.includes('PlotlyChart'))")


def wait_for_reconstruction(page, timeout: float = 30_000) -> None:
    """Until the result picture (its panel titled "Reconstruction") is drawn and the MSE is shown."""
    page.wait_for_function("""() => [...document.images].some(img => (img.alt || '').includes('Reconstruction')
        && img.complete && img.naturalWidth > 0) && document.querySelector('[data-testid="stMetricValue"]')""",
                           timeout=timeout)


# Installed before the page loads: notes each mouse-up, and on every animation frame whether the result picture
# (the one with the "Reconstruction" panel) shows new pixels: a new source, loaded; `shown - up` is then mouse-up
# to new pixels on screen.
WATCH_RECONSTRUCTION = """(() => {
  const w = window.__cae = {up: 0, shown: 0, last: ''};
  document.addEventListener('mouseup', () => { w.up = performance.now(); w.shown = 0; }, true);
  const tick = () => {
    const image = [...document.images].find(img => (img.alt || '').includes('Reconstruction'));
    const source = image && image.complete && image.naturalWidth > 0 ? image.currentSrc || image.src : '';
    if (source && source !== w.last) { w.last = source; if (w.up && !w.shown) w.shown = performance.now(); }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})()"""


# Installed before the page loads: counts per chart element how often plotly computes its data from scratch, which
# it does on every full plot (an update it can apply in place keeps the old `calcdata`): notes each new value
# plotly assigns to the element's `calcdata`.
COUNT_PLOTS = """(() => {
  const charts = window.__caePlots = [];
  Object.defineProperty(HTMLElement.prototype, 'calcdata', {configurable: true,
    get() { return this.__caeCalcdata; },
    set(value) {
      this.__caeCalcdata = value;
      if (value === undefined) return;
      if (!this.__caeChart) { this.__caeChart = {plots: 0, title: ''}; charts.push(this.__caeChart); }
      this.__caeChart.plots += 1;
      this.__caeChart.title = String((this.layout && this.layout.title && this.layout.title.text) || '');
    }});
})()"""


def plot_counts(page) -> list[dict]:
    """Each chart element plotly has plotted so far (COUNT_PLOTS installed): its title and its full plots."""
    return page.evaluate("() => window.__caePlots")


def stroke_to_pixels_ms(page, stroke, timeout: float = 30_000) -> float:
    """Draw one stroke, release it, and return ms from mouse-up to the reconstruction's new pixels on screen."""
    draw(page, [stroke], release=False)
    page.mouse.up()
    page.wait_for_function("() => window.__cae.shown > 0", timeout=timeout)
    return page.evaluate("() => window.__cae.shown - window.__cae.up")


def wait_images_loaded(page) -> None:
    page.wait_for_function("() => [...document.images].every(img => img.complete && img.naturalWidth > 0)")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
