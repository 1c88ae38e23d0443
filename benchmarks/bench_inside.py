"""The "How it works" page's server time: its first draw (numeric check included) and one step of its step-through.

Prints, for the pretrained default and one MNIST test digit (goals from issue 10):
  1. cae.views.inside.look_inside (stages, both transposed convs computed twice, counts, the step example), then every
     figure the page builds, serialised as Streamlit sends them: median and slowest of the rounds (goal <= 1 s);
  2. the same page run whole under Streamlit's AppTest (sidebar, widgets, every element; AppTest's own overhead
     included, so an upper bound): median of the rounds;
  3. one step: what the step-through fragment recomputes when its slider moves (the scatter and gather numbers,
     its four figures, serialised): median and slowest over every position (goal <= 150 ms).
Run: `python -m benchmarks.bench_inside [--rounds 7]` (uses ./data or CAE_DATA_DIR; full MNIST or the sample).
"""

from __future__ import annotations

import cae.ui.appenv  # noqa: F401  (the app's thread settings, as the server has them)

# isort: split

import argparse
import os
import statistics
import time
from pathlib import Path

from cae.engine import checkpoint
from cae.engine.data import load_mnist
from cae.ui.images import markdown
from cae.views import inside
from cae.views.figures import inside as figures_inside

ROOT = Path(__file__).resolve().parent.parent


def page_figures(result: inside.Inside, channel: int = 0) -> list:
    """The figures of the page's first two sections, as pages/2_How_it_works.py builds them."""
    encoder, decoder, other = inside.architecture(result.stages, result.parameters)
    built = [figures_inside.architecture_figure(encoder, decoder, tied=True, other=other)]
    last = result.stages.decoder[-1][0]
    built += [figures_inside.stage_figure(name, values, image=name in ("input", last))
              for name, values in result.stages.all]
    for check in result.checks:
        shown = min(channel, check.by_transpose.shape[1] - 1)
        built.append(figures_inside.comparison_figure(check.by_transpose[0, shown], check.by_full_conv[0, shown],
                                                      layer=check.layer, channel=shown))
        built.append(figures_inside.kernels_figure(check.kernels[:, shown], title=check.layer))
    return built


def step_figures(example: inside.StepExample, position: int, valid_position: int) -> list:
    """What the step-through fragment builds on each rerun."""
    inputs, kernel = example.decoder_inputs, example.decoder_kernel
    scatter = inside.scatter_step(inputs, kernel, position)
    gather = inside.gather_step(inputs, kernel, position, full=True)
    valid = inside.gather_step(example.encoder_inputs, example.encoder_kernel, valid_position, full=False)
    return [figures_inside.upscale_figure(example.upscale_source, inputs),
            figures_inside.scatter_figure(inputs, kernel, scatter),
            figures_inside.gather_figure(gather, full=True), figures_inside.gather_figure(valid, full=False)]


def serialised(figures: list) -> int:
    return sum(len(markdown(picture)) for picture in figures)  # what the page sends: Markdown images


def first_draw(model, image, rounds: int) -> None:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()

        result = inside.look_inside(model, image)
        size = serialised(page_figures(result) + step_figures(result.example, 0, 0))
        times.append(time.perf_counter() - start)
    print(f"1. first draw, look_inside + every figure serialised ({size / 1e3:,.0f} kB of specs), {rounds} rounds: "
          f"median {statistics.median(times) * 1e3:,.0f} ms, first {times[0] * 1e3:,.0f} ms, slowest "
          f"{max(times) * 1e3:,.0f} ms (goal <= 1,000 ms)")


def apptest_draw(rounds: int) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    start = time.perf_counter()
    at.switch_page("pages/2_How_it_works.py").run()
    times = [time.perf_counter() - start]
    for _ in range(rounds - 1):
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    failed = f" (exception: {at.exception[0].message})" if at.exception else ""
    print(f"2. the whole page under AppTest, {rounds} runs: median {statistics.median(times) * 1e3:,.0f} ms, "
          f"first {times[0] * 1e3:,.0f} ms{failed}")


def step(example: inside.StepExample) -> None:
    rows, cols = inside.output_shape(example.decoder_inputs, example.decoder_kernel, full=True)
    times = []
    for position in range(rows * cols):
        start = time.perf_counter()
        serialised(step_figures(example, position, position % 16))
        times.append(time.perf_counter() - start)
    print(f"3. one step of the step-through, each of {len(times)} positions: median "
          f"{statistics.median(times) * 1e3:,.1f} ms, slowest {max(times) * 1e3:,.1f} ms (goal <= 150 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    data = load_mnist()
    model = checkpoint.load(checkpoint.DEFAULT_CHECKPOINT).build_model()
    image = data.val_images[0].numpy() / 255
    print(f"data: {data.describe()}; model: the pretrained default; digit: {data.val_name} #0; "
          f"{os.cpu_count()} cores")
    first_draw(model, image, args.rounds)
    apptest_draw(args.rounds)
    step(inside.look_inside(model, image).example)


if __name__ == "__main__":
    main()
