"""A page opened in a new tab, straight on its URL (a bookmark, a link a teacher shares): time to its main content.

Prints, for each page, the first visitor's time (a server just started) and the median of the later visitors'
(each a fresh browser profile: nothing cached), from navigation start to the main content on screen, against the
goal of 2.5 s. The code space has two lines: its map on screen (a picture of it, until the chart is drawn) and its
map's chart drawn (hover and clicks). Each line says whether the tab loaded plotly.js by then. With `--before DIR`
(another clone or worktree, e.g. `git worktree add /tmp/before <commit>` with a `.venv` beside it) the same is
measured there too, interleaved page by page, so both see the machine alike. Needs full MNIST in the data folder
(CAE_DATA_DIR or ./data). Run: `python -m benchmarks.bench_new_tab`.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from cae.engine.data import data_dir, load_mnist
from tests.browser import chromium_browsers, plotly_loaded, streamlit_server

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 2.5

# What "the main content" is on each page, as a condition the page's own script can test.
# The canvas is a components-v2 element: it lives in a shadow root, which document.querySelector does not enter.
CANVAS = """() => { const find = root => root.querySelector('canvas.upper-canvas') || [...root.querySelectorAll('*')]
    .filter(el => el.shadowRoot).map(el => find(el.shadowRoot)).find(Boolean);
    const canvas = find(document); return !!canvas && canvas.offsetWidth > 0; }"""
START = """() => [...document.querySelectorAll('[data-testid=stMainBlockContainer] button')]
    .some(b => b.innerText.trim() === 'Start' && b.offsetWidth > 0)"""
# How it works: the digit's first stage, drawn as a picture (st.image) or, in code from before the pictures, as a chart.
FIRST_STAGE = """() => [...document.images].some(img => (img.alt || '').startsWith('input ·')
        && img.complete && img.naturalWidth > 0)
    || [...document.querySelectorAll('.js-plotly-plot')].some(el => el._fullData && el._fullData.length
        && el.querySelector('.main-svg') && String((el.layout.title || {}).text || '').startsWith('input ·'))"""
A_MAP = """() => [...document.querySelectorAll('.js-plotly-plot')].some(el => el._fullData &&
    el._fullData.reduce((n, t) => n + (t.x ? t.x.length : 0), 0) >= 1000)"""
# The map on screen: its picture (pages/3_Code_space.py shows one until the chart is drawn), or the chart itself.
MAP_SHOWN = """() => [...document.images].some(img => (img.alt || '').includes('until its chart') && img.complete
    && img.naturalWidth > 0 && img.offsetWidth > 0) || (""" + A_MAP + """)()"""
PAGES = {"Draw and reconstruct": ("", [("canvas", CANVAS)]), "Train": ("Train", [("Start", START)]),
         "How it works": ("How_it_works", [("first stage", FIRST_STAGE)]),
         "The code space": ("Code_space", [("map shown", MAP_SHOWN), ("map's chart", A_MAP)])}


def open_in_new_tab(url: str, readies: list[str]) -> list[tuple[float, bool]]:
    """Seconds from navigation start until each condition of `readies` holds, in turn, in a fresh browser profile
    (nothing cached), and whether the tab had fetched plotly.js by then."""
    with chromium_browsers(1) as (browser,):
        page = browser.new_page()
        page.goto(url, wait_until="commit")
        reached = []
        for ready in readies:
            page.wait_for_function(ready, timeout=120_000, polling="raf")
            reached.append((page.evaluate("() => performance.now()") / 1000, plotly_loaded(page)))
        return reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another clone to measure in the same run, interleaved")
    parser.add_argument("--later", type=int, default=5, help="later visitors per page (after the first)")
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES), metavar="PAGE",
                        help="some of: " + ", ".join(f"'{name}'" for name in PAGES))
    args = parser.parse_args()
    if args.later < 1:
        parser.error("--later needs at least 1 visitor")
    data = data_dir().resolve()
    print(f"data: {load_mnist(data).describe()}; goal: main content within {GOAL_SECONDS} s in a new tab")
    apps = {"now": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    for name in args.pages:
        path, readies = PAGES[name]
        for label, app_dir in apps.items():
            with streamlit_server(data, app_dir=app_dir) as server:
                url = server.url
                first = open_in_new_tab(f"{url}/{path}", [ready for _, ready in readies])
                later = [open_in_new_tab(f"{url}/{path}", [ready for _, ready in readies]) for _ in range(args.later)]
            for number, (what, _) in enumerate(readies):
                seconds = [visit[number][0] for visit in later]
                median = statistics.median(seconds)
                verdict = "met" if max(first[number][0], median) <= GOAL_SECONDS else "NOT met"
                plotly = sum(visit[number][1] for visit in [first, *later])
                print(f"{name:22s} {what:11s} {label:6s}: first visitor {first[number][0]:5.2f} s, later median "
                      f"{median:5.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f}); {verdict}; plotly.js "
                      f"loaded by then in {plotly} of {len(later) + 1}", flush=True)


if __name__ == "__main__":
    main()
