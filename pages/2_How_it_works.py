"""How it works: the current digit through the chosen model stage by stage, and the post's lesson on its real weights.

The lesson of "Convolutional Autoencoder for Dummies": a "deconvolution" is a full convolution with the kernel
rotated 180 degrees. The page computes each transposed convolution both ways on this digit's activations and shows
the difference, then steps through a small patch of the real model in two views (scatter and gather). Everything
it computes comes from cae.views.inside; the pictures from cae.views.figures.inside.
"""

from __future__ import annotations

import cae.ui.appenv  # noqa: F401  (first: settles torch's threads before torch loads)

# isort: split

from enum import StrEnum

import numpy as np
import streamlit as st

from cae.ui import common as ui
from cae.ui import images
from cae.views import inside
from cae.views.figures import inside as figures_inside

FALLBACK_INDEX = 0  # the MNIST digit shown before one is drawn, picked or uploaded on the home page
STAGES_PER_ROW = 4
NOTES = {  # what each stage of the post's network does; a stage of another type shows without a note
    "input": "The digit as the model sees it: 28x28, ink in [0, 1].",
    "conv1": "32 kernels 5x5 slide over the input where they fit (valid): 28 - 5 + 1 = 24; then the activation.",
    "pool1": "Max of each 2x2 block: 24 -> 12.",
    "conv2": "32 kernels 5x5 over all 32 maps: 12 - 5 + 1 = 8.",
    "pool2": "8 -> 4.",
    "flatten": "The 32 maps of 4x4 as one row of 512 numbers.",
    "code": "A dense layer squeezes 512 numbers into the code.",
    "dense": "A dense layer spreads the code back to 512 numbers.",
    "reshape": "The 512 numbers as 32 maps of 4x4.",
    "upscale2": "Nearest-neighbour: each value copied into a 2x2 block (4 -> 8).",
    "deconv2": "Transposed conv with conv2's kernels: 8 + 5 - 1 = 12 (full).",
    "upscale1": "12 -> 24, copies again.",
    "deconv1": "Transposed conv with conv1's kernels: 24 + 5 - 1 = 28, then a sigmoid: the reconstruction.",
}


class InsideKey(StrEnum):
    """The session-state keys of this page."""

    CHANNEL = "hw_channel"  # output channel of the transposed convs shown side by side
    STEP = "hw_step"  # the output cell followed in the scatter and gather views
    VALID_STEP = "hw_valid_step"  # the output cell followed in the encoder's valid convolution


def the_digit() -> tuple[np.ndarray, str]:
    current = ui.current_digit()
    if current is not None:
        return current.image, current.origin
    data = ui.shared_data()
    return (data.val_images[FALLBACK_INDEX].numpy().astype(np.float32) / 255,
            f"MNIST {data.val_name} digit #{FALLBACK_INDEX}, as nothing was drawn, picked or uploaded on the home "
            f"page yet")


def show_stages(result: inside.Inside, tied: bool) -> None:
    encoder, decoder, other = inside.architecture(result.stages, result.parameters)
    images.show(figures_inside.architecture_figure(encoder, decoder, tied=tied, other=other))
    st.caption("Tied weights: the decoder's transposed convolutions use the encoder's kernels, so they add only "
               "their biases. Untied: each has kernels of its own, as many as the conv it mirrors.")
    last_image = result.stages.decoder[-1][0]
    for part, stages in (("Encoder", [("input", result.stages.input), *result.stages.encoder]),
                         ("Decoder", result.stages.decoder)):
        st.markdown(f"**{part}**")
        for start in range(0, len(stages), STAGES_PER_ROW):
            columns = st.columns(STAGES_PER_ROW)
            for column, (name, values) in zip(columns, stages[start:start + STAGES_PER_ROW]):
                picture = figures_inside.stage_figure(name, values, image=name in ("input", last_image))
                images.show(picture, where=column)
                column.caption(NOTES.get(name, ""))


def show_check(check: inside.TransposedCheck, channel: int) -> None:
    channels = check.by_transpose.shape[1]
    channel = min(channel, channels - 1)
    images.show(figures_inside.comparison_figure(check.by_transpose[0, channel], check.by_full_conv[0, channel],
                                                 layer=check.layer, channel=channel))
    over = f"all {channels} channels" if channels > 1 else "its one channel"
    st.metric(f"{check.layer}: max difference over {over}", f"{check.max_difference:.1e}",
              help="Largest |conv_transpose2d - full convolution| over every channel and pixel, in float64. "
                   f"In the model's float32 it is {check.float32_difference:.1e}: rounding, as the two ways add "
                   "the same products in a different order.")
    decoder_pointer, encoder_pointer = check.pointers
    if check.tied:
        st.markdown(f"Tied: `model.{check.weight_name} is model.{check.encoder_layer}.weight` is **True**, and "
                    f"both point at the same memory (`data_ptr` {decoder_pointer:#x}): the encoder's own kernels, "
                    "not a copy.")
    else:
        st.markdown(f"Untied: `model.{check.weight_name}` is the decoder's own tensor (`data_ptr` "
                    f"{decoder_pointer:#x}, {check.encoder_layer}'s is {encoder_pointer:#x}); its kernels differ "
                    f"from {check.encoder_layer}'s by up to {check.from_encoder:.3f}. The lesson holds all the same.")
    kernels = check.kernels[:, channel]
    images.show(figures_inside.kernels_figure(kernels, title=f"The {len(kernels)} kernels {check.layer} applies "
                                                             f"to make channel {channel}"))


@st.fragment
def show_checks(checks: list[inside.TransposedCheck]) -> None:
    """A fragment: choosing another channel redraws only this section."""
    channels = max(check.by_transpose.shape[1] for check in checks)
    counts = "; ".join(f"{check.layer} has {check.by_transpose.shape[1]}" for check in checks)
    channel = st.slider(f"Output channel shown ({counts})", 0, channels - 1, 0, key=InsideKey.CHANNEL)
    for column, check in zip(st.columns(len(checks)), checks):
        with column:
            show_check(check, channel)


@st.fragment
def step_through(example: inside.StepExample) -> None:
    """Its own fragment: moving a slider reruns only this part of the page."""
    inputs, kernel = example.decoder_inputs, example.decoder_kernel
    st.markdown(f"A 4x4 patch of what deconv1 reads (channel {example.channel}) and deconv1's real 5x5 kernel for "
                "that channel. Its full output is 8x8: every place where kernel and patch overlap. (The model adds "
                "up such outputs over all 32 channels and every patch, plus a bias.)")
    images.show(figures_inside.upscale_figure(example.upscale_source, inputs))
    rows, cols = inside.output_shape(inputs, kernel, full=True)
    position = st.slider("Output cell followed (in reading order)", 0, rows * cols - 1, 0, key=InsideKey.STEP,
                         help="Use the arrow keys for one step at a time.")
    scatter = inside.scatter_step(inputs, kernel, position)
    gather = inside.gather_step(inputs, kernel, position, full=True)
    images.show(figures_inside.scatter_figure(inputs, kernel, scatter))
    images.show(figures_inside.gather_figure(gather, full=True, inputs_title="patch"))
    row, col = scatter.cell
    terms = " + ".join(f"{x:.2f}×{w:.2f}" for _, _, x, w in scatter.terms)
    with st.container(key="hw_numbers"):
        st.markdown(f"Output cell **({row}, {col})**: scatter, the stamps that reach it, **{scatter.value:.4f}**; "
                    f"gather, its window times the rotated kernel, **{gather.value:.4f}**.")
        st.caption(f"Scatter: {terms} = {scatter.value:.4f} ({len(scatter.terms)} input values reach this cell).")
    top, left = example.encoder_at
    st.markdown(f"**For contrast, the encoder's valid convolution**: an 8x8 patch of the digit (from row {top}, "
                f"column {left}) and conv1's kernel for channel {example.channel}"
                + (", the very kernel deconv1 used above, here not rotated." if example.tied else ".")
                + " No padding: the kernel only goes where it fits, so 8 - 5 + 1 = 4 cells a row.")
    valid_rows, valid_cols = inside.output_shape(example.encoder_inputs, example.encoder_kernel, full=False)
    valid_position = st.slider("Encoder output cell followed", 0, valid_rows * valid_cols - 1, 0,
                               key=InsideKey.VALID_STEP)
    valid = inside.gather_step(example.encoder_inputs, example.encoder_kernel, valid_position, full=False)
    images.show(figures_inside.gather_figure(valid, full=False, inputs_title="digit patch", digit=True))
    st.caption("conv1 then adds its bias to each cell and applies the activation: the conv1 stage above.")


chosen = ui.model_sidebar()
image, origin = the_digit()
result = inside.look_inside(chosen.model, image)
tied = chosen.model.config.tied_weights
st.title("How it works")
st.caption(f"Model: **{chosen.label}** ({'tied' if tied else 'untied'} weights, code "
           f"{chosen.model.config.code_size}) · digit: {origin}.")
st.subheader("1. The digit, stage by stage")
show_stages(result, tied)
st.subheader("2. A transposed convolution is a convolution")
st.markdown("The post's lesson: a \"deconvolution\" is a **full** convolution (k - 1 = 4 zeros of padding on each "
            "side) with the kernel **rotated 180°** and its input and output channels swapped. Both transposed "
            "convolutions of the decoder, computed both ways on this digit's activations:")
show_checks(result.checks)
st.subheader("3. Two views of the same numbers")
step_through(result.example)
