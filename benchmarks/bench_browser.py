"""Browser benchmarks: the real app started as the README starts it, driven in Debian's Chromium with the mouse.

Prints:
  1. mouse-up to the reconstruction shown in the browser, median of N strokes (goal <= 250 ms);
  2. peak memory (VmHWM) of the app process with the default model loaded and a digit reconstructed;
  3. Start on the Train page's defaults: wall time to the finished model, its held-out MSE against PCA's as the
     page shows them (goal: below PCA within 30 s), and its samples/s against the same run on the command line's
     code in this process, interleaved (goal: at least 0.90).
Needs full MNIST in the data folder (CAE_DATA_DIR or ./data). Run: `python -m benchmarks.bench_browser`;
`--offline-sample` serves an empty data folder instead, so that the app uses the offline sample of 5,000 digits.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from cae.engine.data import data_dir, load_mnist
from cae.engine.train_config import PAGE_DEFAULTS  # the Train page's first run
from cae.engine.trainer import Trainer
from tests.browser import WATCH_RECONSTRUCTION, button, chromium, clear_canvas, streamlit_server, stroke_to_pixels_ms

ROOT = Path(__file__).resolve().parent.parent

# Digits of several strokes each, in canvas units: every stroke updates the reconstruction.
FOUR_STROKES = [
    [[(0.55, 0.15), (0.25, 0.6), (0.75, 0.6)], [(0.6, 0.35), (0.6, 0.85)]],  # a 4
    [[(0.3, 0.2), (0.7, 0.2)], [(0.7, 0.2), (0.45, 0.85)], [(0.4, 0.5), (0.65, 0.5)]],  # a crossed 7
    [[(0.5, 0.15), (0.5, 0.85)], [(0.35, 0.85), (0.65, 0.85)], [(0.5, 0.15), (0.38, 0.28)]],  # a 1 with base
]
OVERALL = re.compile(r"Trained on ([\d,]+) digits in ([\d.]+) s of wall time.*?([\d,]+) samples/s overall")


def peak_memory_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    value = {k: float(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in status.splitlines())
             if k in ("VmHWM", "VmRSS")}
    return value["VmHWM"], value["VmRSS"]


def stroke_latency(page, strokes: int) -> list[float]:
    """Digits drawn stroke by stroke, as people draw; each stroke is timed in the browser (see WATCH_RECONSTRUCTION)."""
    times, digit = [], 0
    while len(times) < strokes + 2:  # the first two warm up
        clear_canvas(page)
        for stroke in FOUR_STROKES[digit % len(FOUR_STROKES)]:
            time.sleep(0.3)  # the pen travels to the next stroke
            times.append(stroke_to_pixels_ms(page, stroke) / 1e3)
        digit += 1
    return times[2:strokes + 2]


def run_without_page(data) -> float:
    trainer = Trainer(PAGE_DEFAULTS.model, PAGE_DEFAULTS.train, data)
    start = time.perf_counter()
    while not trainer.finished:
        trainer.step()
    return trainer.history.samples / (time.perf_counter() - start)


def run_on_page(page) -> tuple[float, float, float, float]:
    """Start on the page's defaults; (samples/s overall, seconds from the click to the scores shown, the run's
    held-out MSE, PCA's) as the page shows them."""
    if button(page, "Reset").is_enabled():  # forget the previous round's run
        button(page, "Reset").click()
        page.get_by_text("press Start").wait_for(timeout=30_000)
    clicked = time.perf_counter()
    button(page, "Start").click()
    caption = page.get_by_text("samples/s overall")
    caption.wait_for(timeout=300_000)
    seconds = time.perf_counter() - clicked
    scores = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    return (float(OVERALL.search(caption.inner_text()).group(3).replace(",", "")), seconds, float(scores[0]),
            float(scores[1]))



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strokes", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3, help="training runs on and off the page, each")
    parser.add_argument("--offline-sample", action="store_true", help="an empty data folder: the offline sample")
    args = parser.parse_args()
    if args.offline_sample:
        os.environ["CAE_DATA_DIR"] = tempfile.mkdtemp(prefix="cae-no-mnist-")  # read by load_mnist and the server
    data = load_mnist()
    print(f"data: {data.describe()}")
    with streamlit_server(data_dir().resolve()) as server, chromium() as browser:
        page = browser.new_page()
        page.add_init_script(WATCH_RECONSTRUCTION)
        page.goto(server.url)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
        times = stroke_latency(page, args.strokes)
        print(f"1. mouse-up to the reconstruction's new pixels on screen, median of {len(times)} strokes "
              f"(digits of 2-3 strokes, canvas cleared between digits): "
              f"{statistics.median(times) * 1e3:.0f} ms (min {min(times) * 1e3:.0f}, max {max(times) * 1e3:.0f}) "
              f"(goal <= 250 ms)")
        print("   each stroke, ms:", " ".join(f"{t * 1e3:.0f}" for t in times))
        sends = page.evaluate("() => window.caePenUp ? window.caePenUp.sends : 0")
        print(f"   strokes sent at pen-up (cae/ui/pen_up.py) rather than after the canvas's 200 ms: {sends} of "
              f"the {len(times) + 2} drawn (the first two warm up)")
        peak, now = peak_memory_mb(server.pid)
        print(f"2. app process with the default model loaded and digits reconstructed: peak RSS {peak:.0f} MiB "
              f"(now {now:.0f} MiB)")
        if args.rounds == 0:
            return
        page.close()  # a tab of its own for training, without the stroke timer's per-frame watch
        page = browser.new_page()
        page.goto(f"{server.url}/Train")
        button(page, "Start").wait_for(timeout=60_000)
        first = run_without_page(data), run_on_page(page)  # warm-up: a fresh tab loads plotly.js while training
        print(f"   first round (warm-up, not counted): without / with the page {first[0]:,.0f} / {first[1][0]:,.0f} "
              f"samples/s; Start to scores shown {first[1][1]:.1f} s, held-out MSE {first[1][2]:.4f} "
              f"against PCA's {first[1][3]:.4f}")
        bare, paged = [], []
        for _ in range(args.rounds):  # interleaved: machine drift hits both alike
            bare.append(run_without_page(data))
            on_page = run_on_page(page)
            paged.append(on_page[0])
            print(f"   Start to scores shown {on_page[1]:.1f} s (goal <= 30 s), held-out MSE {on_page[2]:.4f} "
                  f"against PCA's {on_page[3]:.4f}")
        b, p = statistics.median(bare), statistics.median(paged)
        defaults = PAGE_DEFAULTS.train
        print(f"3. training on the page's defaults ({defaults.train_subset:,} digits, {defaults.epochs} epochs, "
              f"batch {defaults.batch_size}), wall clock with validation, median of {args.rounds}: "
              f"without a page {b:,.0f} samples/s, from the page with the live view open {p:,.0f} samples/s, "
              f"ratio {p / b:.3f} (goal >= 0.90)")
        print("   each round, without / with the page:", ", ".join(f"{x:,.0f} / {y:,.0f}" for x, y in zip(bare, paged)))
        print(f"   app process peak RSS after training: {peak_memory_mb(server.pid)[0]:.0f} MiB")


if __name__ == "__main__":
    main()
