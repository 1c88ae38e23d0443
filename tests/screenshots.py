"""The README's pictures: each page of the app, started the README's way, in Debian's Chromium.

    .venv/bin/python -m tests.screenshots [--out docs/screenshots]

Imports full MNIST (CAE_MNIST_RAW or ../shared/data/MNIST/raw) into a temporary data folder, so the pictures show
what a person with full MNIST sees. Each picture is the top of its page at 1400 x 1000, shrunk to half width and
stored with a palette: small enough to commit.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from cae.engine.data import import_mnist
from tests.browser import (
    SEVEN,
    button,
    chromium,
    draw,
    streamlit_server,
    wait_for_picture,
    wait_for_plot,
    wait_for_reconstruction,
    wait_images_loaded,
)
from tests.conftest import MNIST_RAW, ROOT

WIDTH = 700  # pixels of a stored picture: half the browser's viewport
COLOURS = 128  # a palette this size keeps the digits' greys and the charts' colours readable


def store(page, path: Path) -> int:
    """Save the page's viewport as a small palette PNG, once every element has been drawn (pictures come before the
    sidebar's widgets, which Streamlit loads on demand); returns its size in bytes."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stSkeleton]')", timeout=60_000)
    wait_images_loaded(page)
    raw = path.with_suffix(".raw.png")
    page.screenshot(path=str(raw))
    with Image.open(raw) as shot:
        height = round(shot.height * WIDTH / shot.width)
        small = shot.convert("RGB").resize((WIDTH, height), Image.Resampling.LANCZOS)
    small.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    raw.unlink()
    return path.stat().st_size


def home(page, url: str) -> None:
    page.goto(url)
    draw(page, SEVEN)
    wait_for_reconstruction(page)
    wait_for_picture(page, "The code")
    wait_images_loaded(page)


def train(page, url: str) -> None:
    page.goto(f"{url}/Train")
    button(page, "Start").click()
    page.get_by_text("Epoch 2").first.wait_for(timeout=120_000)  # the live view with a curve worth seeing
    wait_for_plot(page, "Loss", min_points=50)
    wait_for_plot(page, "Learned filters")
    wait_images_loaded(page)


def how_it_works(page, url: str) -> None:
    page.goto(f"{url}/How_it_works")
    wait_for_picture(page, "·")  # a stage of the network, drawn
    wait_images_loaded(page)


def code_space(page, url: str) -> None:
    page.goto(f"{url}/Code_space")
    wait_for_plot(page, "of the codes", min_points=500)  # the first digit's points
    wait_images_loaded(page)


PAGES = {"home": home, "train": train, "how-it-works": how_it_works, "code-space": code_space}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("pages", nargs="*", metavar="PAGE", help="some of: " + ", ".join(PAGES) + " (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.pages) - set(PAGES)
    if unknown:
        parser.error("unknown page(s): " + ", ".join(sorted(unknown)))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cae-shots-") as data:
        import_mnist(MNIST_RAW, Path(data))
        with streamlit_server(Path(data)) as server, chromium() as browser:
            for name in args.pages or PAGES:
                page = browser.new_page()
                PAGES[name](page, server.url)
                size = store(page, args.out / f"{name}.png")
                print(f"{name}: {size / 1e3:.0f} kB")
                page.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
