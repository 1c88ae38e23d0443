"""Many visitors at once on the README's server: 5 people drawing on the home page (a stroke every 2 s each) while a
sixth trains on the Train page's defaults.

Prints the median and 95th percentile of mouse-up to the reconstruction's new pixels on screen (measured in each
page), the errors seen (exceptions on a page, strokes with no new reconstruction within 2 s), and the training
speed of the run going on beside them (goal: no error, 95th percentile <= 1 s).
Needs full MNIST in the data folder (CAE_DATA_DIR or ./data). Run: `python -m benchmarks.bench_crowd`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import time
from pathlib import Path

from cae.engine.data import data_dir, load_mnist
from tests.browser import WATCH_RECONSTRUCTION, button, canvas_box, chromium_browsers, draw, streamlit_server

ROOT = Path(__file__).resolve().parent.parent

STROKES = [[(0.5, 0.15), (0.5, 0.85)], [(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)], [(0.3, 0.5), (0.7, 0.5)]]
PERIOD = 2.0  # seconds between two strokes of one visitor


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15, help="strokes per visitor")
    args = parser.parse_args()
    print(f"data: {load_mnist().describe()}")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(streamlit_server(data_dir().resolve()))
        trainer_browser, *drawer_browsers = stack.enter_context(chromium_browsers(1 + args.visitors))
        trainer_page = trainer_browser.new_page()
        trainer_page.goto(f"{server.url}/Train")
        button(trainer_page, "Start").wait_for(timeout=120_000)
        drawers = []
        for browser in drawer_browsers:  # a browser each: one person each, none a background tab
            page = browser.new_page()
            page.add_init_script(WATCH_RECONSTRUCTION)
            page.goto(server.url)
            page.get_by_text("Draw a digit on the black square").wait_for(timeout=120_000)
            canvas_box(page)
            drawers.append(page)
        button(trainer_page, "Start").click()
        trainer_page.get_by_text(re.compile(r"Running · epoch")).wait_for(timeout=120_000)
        latencies, missed = [], 0
        offset = PERIOD / len(drawers)
        began = time.monotonic()
        for round_number in range(args.rounds):
            for index, page in enumerate(drawers):
                due = began + round_number * PERIOD + index * offset
                time.sleep(max(0.0, due - time.monotonic()))
                if round_number:  # the previous stroke of this visitor: its reconstruction had 2 s to show
                    shown = page.evaluate("() => window.__cae.shown ? window.__cae.shown - window.__cae.up : null")
                    if shown is None:
                        missed += 1
                    else:
                        latencies.append(shown / 1e3)
                draw(page, [STROKES[round_number % len(STROKES)]])
        time.sleep(PERIOD)
        for page in drawers:
            shown = page.evaluate("() => window.__cae.shown ? window.__cae.shown - window.__cae.up : null")
            missed += shown is None
            latencies += [] if shown is None else [shown / 1e3]
        exceptions = sum(page.locator('[data-testid="stException"]').count() for page in [trainer_page, *drawers])
        progress = trainer_page.get_by_text(re.compile(r"samples/s")).first.inner_text()
        speed = re.search(r"([\d,]+) samples/s", progress).group(1)
        print(f"{len(drawers)} visitors drawing, a stroke every {PERIOD:g} s each, {len(latencies)} strokes timed, "
              f"while one run trains: mouse-up to new pixels median {statistics.median(latencies) * 1e3:.0f} ms, "
              f"95th percentile {percentile(latencies, 0.95) * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms "
              f"(goal: 95th percentile <= 1000 ms)")
        print(f"errors: {exceptions} exception(s) on the pages, {missed} stroke(s) with no reconstruction "
              f"within {PERIOD:g} s; training beside them: {speed} samples/s (the page's progress line)")
        print(f"server log tracebacks: {server.log.read_text().count('Traceback')}")


if __name__ == "__main__":
    main()
