"""CAE Explorer: the entry point and home page. Draw, pick or upload a digit and watch the autoencoder rebuild it.

Run with `streamlit run app.py`. This script is the app's router: every visit runs it first (as `__main__`), so the
heavy imports below happen here before any page script (two visitors' page scripts importing the same heavy package
at the same moment deadlocked on a cold start; see cae/ui/appenv.py). The home page is `home()` below; the other
pages live in pages/.

The file also defines the server (`app`, an st.App, at its end): `streamlit run` finds it and imports this file once
as the server starts, before it takes a connection, so the imports and the shared caches (`warm_caches`) are ready
when the first visitor arrives instead of making that visitor wait seconds for them.
"""

from __future__ import annotations

import cae.ui.appenv  # noqa: F401  (first: settles torch's threads, then loads torch and the app's modules once)

# isort: split

import asyncio
import contextlib
from collections.abc import AsyncIterator
from enum import StrEnum

import numpy as np
import streamlit as st

from cae.engine import preprocess
from cae.models.contract import Prior
from cae.models.noise import AMOUNT_KNOB, KIND_KNOB, Noise
from cae.ui import common as ui
from cae.ui import images
from cae.ui.pen_up import send_on_pen_up
from cae.views import explore
from cae.views.figures import home as home_figures

CANVAS_SIZE = 280  # 10x MNIST's 28; the default pen then draws strokes of MNIST's relative width
SAMPLES_SHOWN = 32
NO_NOISE = "none"
SAMPLE_GRID = 32  # new digits a type with a prior draws at a time
SCORING_CHUNK = 1_000  # digits scored between two updates of the progress bar ("worst first")


class HomeKey(StrEnum):
    """The home page's session-state keys."""

    CANVAS_ROUND = "canvas_round"  # bumped by Clear: a new canvas key mounts an empty canvas
    PEN = "pen_width"
    SOURCE = "input_source"
    PICK_HOW = "pick_how"
    PICK_START = "pick_start"
    PICK_DIGIT = "pick_digit"
    PICK_SEED = "pick_seed"
    PICK_WORST = "pick_worst"
    PICKED = "picked_sample"
    POOL_MSE = "pool_mse"  # (label, digit) -> per-image MSE over the test digits, for "worst first"
    DIGIT_UPLOAD = "digit_upload"
    NOISE_KIND = "noise_kind"
    NOISE_AMOUNT = "noise_amount"
    NOISE_SEED = "noise_seed"
    SAMPLE_SEED = "sample_seed"
    TRAVERSE_DIMENSION = "traverse_dimension"


def clear_canvas() -> None:
    st.session_state[HomeKey.CANVAS_ROUND] = st.session_state.get(HomeKey.CANVAS_ROUND, 0) + 1


def canvas_key() -> str:
    return f"canvas-{st.session_state.get(HomeKey.CANVAS_ROUND, 0)}"


def noise_control() -> Noise | None:
    """Kind and amount of noise added to whatever digit is shown; None for a clean input."""
    kind_column, amount_column, seed_column = st.columns([2, 3, 1])
    kind = kind_column.selectbox("Add noise", [NO_NOISE, *KIND_KNOB.choices], key=HomeKey.NOISE_KIND,
                                 format_func=KIND_KNOB.name_of,
                                 help="Give the model a corrupted copy and see whether it brings back the clean "
                                      "digit. A denoising autoencoder learned to; the others never saw noise.")
    if kind == NO_NOISE:
        return None
    amount = amount_column.slider(AMOUNT_KNOB.label, AMOUNT_KNOB.low, AMOUNT_KNOB.high, Noise().amount,
                                  step=AMOUNT_KNOB.step, key=HomeKey.NOISE_AMOUNT, help=AMOUNT_KNOB.help)
    seed = st.session_state.setdefault(HomeKey.NOISE_SEED, 0)
    seed_column.button("New noise", key="new_noise",
                       on_click=lambda: st.session_state.update({HomeKey.NOISE_SEED: seed + 1}))
    return Noise(kind, amount)


@st.fragment
def draw_and_reconstruct(chosen: ui.ChosenModel, noise: Noise | None, prior: Prior | None) -> None:
    """The canvas, and beside it what the model sees, its reconstruction and the error: redrawn after each stroke.

    A fragment: a stroke reruns only this part of the page, not the sidebar and the rest. So every view of the
    drawn digit lives in here, the traversal of a type with a prior included (below the fragment it kept showing
    the digit drawn before).
    """
    # Imported here, in a visitor's run: the canvas registers itself as a component when imported, which it can
    # only do inside a script run (this file is also imported once when the server starts: see its end).
    from streamlit_drawable_canvas import st_canvas

    model = chosen.model
    left, right = st.columns([2, 3])
    with left:
        pen = st.slider("Pen width", 5, 40, 20, key=HomeKey.PEN,
                        help="MNIST's strokes are about a tenth of the digit's height.")
        drawing = st_canvas(stroke_width=pen, stroke_color="#FFFFFF", background_color="#000000",
                            width=CANVAS_SIZE, height=CANVAS_SIZE, drawing_mode="freedraw",
                            return_image_data=True, key=canvas_key())
        st.button("Clear", on_click=clear_canvas, key="clear_canvas")
        send_on_pen_up()  # the stroke goes when the pen lifts, not after the canvas's own 200 ms
    pixels = drawing.image_data
    image = None if pixels is None else preprocess.to_model_input(pixels)
    if image is not None:
        ui.set_current_digit(image, "drawn on the home page")
    with right:
        result = images.show_reconstruction(model, image, noise=noise,
                                            noise_seed=st.session_state.get(HomeKey.NOISE_SEED, 0))
        if result is None:
            st.info("Draw a digit on the black square: the reconstruction appears when you lift the pen.")
            return
        st.caption("The model input is your drawing scaled into 20x20 and centred by its centre of mass in 28x28, "
                   "as MNIST made its digits.")
        show_scores(model, result.image)
    images.show_code(result)
    if prior is not None:
        traversal(chosen, prior)


def show_scores(model, image: np.ndarray) -> None:
    """The scores the model's type declares beyond the MSE (a VAE's negative ELBO, a denoiser's PSNR), for this
    digit; nothing for a type that declares none."""
    scores = explore.digit_scores(model, image)
    if not scores:
        return
    for column, (score, value) in zip(st.columns(len(scores)), scores):
        column.metric(score.label, score.describe(value), help=f"{score.help} {score.better.capitalize()} is better.")


def picked_digit(chosen: ui.ChosenModel, grid_area) -> np.ndarray | None:
    """The pick controls here, the grid of picked digits and reconstructions in `grid_area` (below the result: 32
    digits above it pushed the result below the fold); returns the digit opened in the result view."""
    data = ui.shared_data()
    digits, labels = data.val_images, data.val_labels
    how_col, what_col, sort_col = st.columns(3)
    how = how_col.radio("Choose", ["By index", "By digit", "At random"], horizontal=True, key=HomeKey.PICK_HOW)
    digit = start = seed = None
    worst_first = st.session_state.get(HomeKey.PICK_WORST, False)
    if how == "By index":
        last = len(digits) - 1
        start = what_col.number_input(f"First index (0 to {last})", 0, last, 0, key=HomeKey.PICK_START,
                                      disabled=worst_first,
                                      help="Off while worst reconstructions come first: they come from every digit.")
    elif how == "By digit":
        digit = what_col.selectbox("Digit", list(range(10)), key=HomeKey.PICK_DIGIT)
    else:
        seed = st.session_state.setdefault(HomeKey.PICK_SEED, 0)
        what_col.button("Draw again", on_click=lambda: st.session_state.update({HomeKey.PICK_SEED: seed + 1}))
    worst = sort_col.toggle("Worst reconstructions first", key=HomeKey.PICK_WORST,
                            help="Score every digit in the pool and show those the model reconstructs worst.")
    if worst and how != "At random":
        indices = worst_indices(chosen, labels, digit)
    else:
        indices = explore.choose_samples(labels, digit=digit, start=start or 0, count=SAMPLES_SHOWN, seed=seed)
    scored = explore.score_samples(chosen.model, digits, indices)
    if worst:
        scored = scored.worst_first()
    tags = [f"#{i} {m:.3f}" for i, m in zip(scored.indices, scored.mse)]
    with grid_area:
        images.show(home_figures.comparison_grid(scored.originals, scored.outputs, tags,
                                                 title=f"MNIST {data.val_name} digits (top) and reconstructions "
                                                       f"(below); label: index and MSE"))
    options = list(range(len(scored.indices)))
    choice = st.selectbox("Open in the result view", options, key=HomeKey.PICKED,
                          format_func=lambda k: f"#{scored.indices[k]}: a {int(labels[scored.indices[k]])}, "
                                                f"MSE {scored.mse[k]:.4f}")
    index = choice or 0
    ui.set_current_digit(scored.originals[index], f"MNIST {data.val_name} digit #{scored.indices[index]}")
    return scored.originals[index]


def worst_indices(chosen: ui.ChosenModel, labels, digit: int | None) -> np.ndarray:
    """The pool's worst-reconstructed digits, scored once per model and pool in this session."""
    cache = st.session_state.setdefault(HomeKey.POOL_MSE, {})
    key = (chosen.label, id(chosen.model), digit, ui.shared_data().source)  # the data can change: an import
    if key not in cache:
        pool = explore.choose_samples(labels, digit=digit, count=len(labels))
        digits = ui.shared_data().val_images
        progress = st.progress(0.0, text=f"Scoring {len(pool):,} digits ...")
        scores = []
        for start in range(0, len(pool), SCORING_CHUNK):
            scores.append(explore.score_samples(chosen.model, digits, pool[start:start + SCORING_CHUNK]).mse)
            done = min(start + SCORING_CHUNK, len(pool))
            progress.progress(done / len(pool), text=f"Scoring {len(pool):,} digits ... {done:,} done")
        progress.empty()
        cache[key] = (pool, np.concatenate(scores))
    pool, mse = cache[key]
    return pool[np.argsort(-mse)[:SAMPLES_SHOWN]]


def uploaded_digit() -> np.ndarray | None:
    upload = st.file_uploader("A picture of one digit (PNG or JPEG)", type=["png", "jpg", "jpeg"],
                              key=HomeKey.DIGIT_UPLOAD, help="Dark ink on light paper is inverted automatically.")
    if upload is None:
        return None
    try:
        image = preprocess.to_model_input(preprocess.load_upload(upload.getvalue()))
    except preprocess.ImageError as error:
        st.error(f"{upload.name}: {error}")
        return None
    if image is None:
        st.warning(f"{upload.name}: no digit found in this picture (it looks empty).")
    else:
        ui.set_current_digit(image, f"uploaded: {upload.name}")
    return image


def prior_samples(chosen: ui.ChosenModel, prior: Prior) -> None:
    """A view of a type with a prior: digits decoded from codes drawn from it."""
    st.subheader("New digits from the prior")
    seed = st.session_state.setdefault(HomeKey.SAMPLE_SEED, 0)
    st.button("Draw new codes", key="resample",
              on_click=lambda: st.session_state.update({HomeKey.SAMPLE_SEED: seed + 1}))
    samples = explore.sample_digits(chosen.model, SAMPLE_GRID, seed)
    images.show(home_figures.digit_grid(samples, title=f"{SAMPLE_GRID} digits decoded from codes drawn from "
                                                       f"{prior.description}, seed {seed}"))


def traversal(chosen: ui.ChosenModel, prior: Prior) -> None:
    """A view of a type with a prior: one code number of the current digit swept over the prior's range."""
    st.subheader("One code number swept")
    current = ui.current_digit()
    if current is None:
        st.caption("Draw, pick or upload a digit to sweep its code numbers one at a time.")
        return
    code_size = chosen.model.config.code_size
    dimension = 0 if code_size == 1 else st.slider("Code number to sweep", 0, code_size - 1, 0,
                                                   key=HomeKey.TRAVERSE_DIMENSION)
    values, swept = explore.traversal(chosen.model, current.image, dimension)
    low, high = prior.traversal_range()
    images.show(home_figures.digit_grid(swept, [f"{v:+.1f}" for v in values], per_row=len(swept),
                                        title=f"The current digit ({current.origin}), code number {dimension} "
                                              f"swept from {low:g} to {high:g}"))


def home() -> None:
    """The home page: draw, pick or upload a digit; the result view; the chosen model's reconstruction."""
    chosen = ui.model_sidebar()
    data = ui.shared_data()
    st.title("CAE Explorer")
    st.caption(f"A convolutional autoencoder squeezes each 28x28 digit into {chosen.model.config.code_size} "
               f"numbers and rebuilds it. Model: **{chosen.label}** · data: {data.describe()}.")
    source = st.radio("Input", ["Draw", "Pick from MNIST", "Upload"], horizontal=True, key=HomeKey.SOURCE)
    noise = noise_control()
    prior = chosen.checkpoint.kind.prior
    if source == "Draw":
        draw_and_reconstruct(chosen, noise, prior)
    else:
        controls, result_area, grid_area = st.container(), st.container(), st.container()
        with controls:
            digit = picked_digit(chosen, grid_area) if source == "Pick from MNIST" else uploaded_digit()
        if digit is not None:
            with result_area:
                st.subheader("Reconstruction")
                left, right = st.columns([3, 2])
                with left:
                    result = images.show_reconstruction(chosen.model, digit, noise=noise,
                                                        noise_seed=st.session_state.get(HomeKey.NOISE_SEED, 0))
                    show_scores(chosen.model, digit)
                with right:
                    images.show_code(result, width=450)
        if prior is not None:
            traversal(chosen, prior)
    if prior is not None:
        prior_samples(chosen, prior)


@contextlib.asynccontextmanager
async def warm_caches(_app) -> AsyncIterator[None]:
    """The server's start: fill the shared caches (in a thread: loading them takes a second of CPU)."""
    await asyncio.to_thread(ui.warm_up)
    yield


if __name__ == "__main__":  # a visitor's run of this script: Streamlit runs it as __main__
    st.set_page_config(page_title="CAE Explorer", page_icon="✏️", layout="wide")
    navigation = st.navigation([
        st.Page(home, title="Draw and reconstruct", icon=":material/draw:", default=True),
        st.Page("pages/1_Train.py", title="Train a model", icon=":material/model_training:", url_path="Train"),
        st.Page("pages/2_How_it_works.py", title="How it works", icon=":material/account_tree:",
                url_path="How_it_works"),
        st.Page("pages/3_Code_space.py", title="The code space", icon=":material/scatter_plot:",
                url_path="Code_space"),
        st.Page("pages/4_Compare.py", title="Compare runs", icon=":material/compare_arrows:", url_path="Compare"),
    ])
    with ui.routed():
        navigation.run()
else:
    # `streamlit run app.py` finds this app and imports this file once to serve it, before it takes a connection:
    # the heavy imports above then happen at the server's start, and the shared caches are filled then too
    # (warm_caches), not in the first visitor's wait.
    app = st.App(__file__, lifespan=warm_caches)
