"""What the "How it works" page computes: one digit stage by stage, the post's lesson checked in numbers, parameter
counts, and the small examples its step-through walks over. Pure PyTorch and numpy; no Streamlit.

The lesson: a transposed convolution ("deconvolution") is a full convolution (zero padding of k - 1 on each side)
with the kernel rotated 180 degrees and its in/out channels swapped. PyTorch's conv2d is a cross-correlation (no
flip), so the encoder's "valid" convolution multiplies each window by the kernel as stored, and the decoder's full
one by the rotated kernel. Everything here reads the model only (no_grad, its mode untouched), so the shared
default model and any session's model can be passed in.

Model types differ only in what their stage generators yield (the variational encoder adds "mean" and
"log_variance" before its "code"): stages are taken as the model yields them, the last encoder stage is the code.
Which layers to look into the network declares (cae.models.contract): its transposed convolutions, the layer behind
each stage and the layer each parameter belongs to.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

UPSCALE = 2  # nearest-neighbour factor of the decoder's upscale stages
STEP_INPUT = 4  # the decoder example: a 4x4 patch of the transposed conv's input (a 2x2 patch before upscaling)
VALID_INPUT = 8  # the encoder example: an 8x8 patch of the digit, so a 5x5 kernel fits in 4x4 positions


@dataclass(frozen=True)
class Stages:
    """One digit through a model: each stage's values for that digit (batch dimension dropped)."""

    input: np.ndarray  # (1, 28, 28)
    encoder: list[tuple[str, np.ndarray]]  # as the model yields them; the last one is the code
    decoder: list[tuple[str, np.ndarray]]  # the last one is the reconstruction (1, 28, 28)
    stage_layers: dict[str, str] = dataclasses.field(default_factory=dict)  # the network's STAGE_LAYERS

    @property
    def all(self) -> list[tuple[str, np.ndarray]]:
        return [("input", self.input), *self.encoder, *self.decoder]

    @property
    def code(self) -> np.ndarray:
        return self.encoder[-1][1]

    def layer(self, stage: str) -> str:
        """The layer (as the network's layer_of names it) that computes a stage: its own name unless declared."""
        return self.stage_layers.get(stage, stage)


def check_eval(model: nn.Module) -> None:
    if model.training:
        raise ValueError("the model must be in eval mode: shared models are only read, never switched")


@torch.no_grad()
def _run(model: nn.Module, images: torch.Tensor):
    check_eval(model)
    encoder = list(model.encoder_stages(images))
    decoder = list(model.decoder_stages(encoder[-1][1]))  # the last encoder stage is the code
    return encoder, decoder


def stage_tensors(model: nn.Module, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(B, 1, 28, 28) -> [("input", images), *encoder stages, *decoder stages], as the model yields them."""
    encoder, decoder = _run(model, images)
    return [("input", images), *encoder, *decoder]


def as_images(image: np.ndarray) -> torch.Tensor:
    """One (28, 28) digit in [0, 1] -> a batch of one, (1, 1, 28, 28)."""
    return torch.as_tensor(np.asarray(image, np.float32)).reshape(1, 1, 28, 28)


def stage_activations(model: nn.Module, image: np.ndarray) -> Stages:
    """One (28, 28) digit in [0, 1] through every stage of the model."""
    images = as_images(image)
    encoder, decoder = _run(model, images)
    return Stages(images[0].numpy(), [(name, values[0].numpy()) for name, values in encoder],
                  [(name, values[0].numpy()) for name, values in decoder], dict(model.STAGE_LAYERS))


def full_convolution(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv_transpose2d(inputs, weight, bias) computed as a convolution: pad k - 1 zeros on each side, rotate each
    kernel 180 degrees and swap in/out channels ((in, out, k, k) as conv_transpose2d stores them -> (out, in, k, k))."""
    k = weight.shape[-1]
    rotated = weight.flip(2, 3).transpose(0, 1)
    return F.conv2d(F.pad(inputs, (k - 1, k - 1, k - 1, k - 1)), rotated, bias)


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The very same tensor object over the same memory: shared, not a copy with equal values."""
    return a is b and a.data_ptr() == b.data_ptr()


@dataclass(frozen=True)
class TransposedCheck:
    """One transposed convolution computed twice on real activations, before its activation function."""

    layer: str  # "deconv2"
    encoder_layer: str  # the encoder conv it mirrors: "conv2"
    by_transpose: np.ndarray  # (B, C_out, H, W) from F.conv_transpose2d, in float64
    by_full_conv: np.ndarray  # (B, C_out, H, W) from full_convolution, in float64
    max_difference: float  # over every digit, channel and pixel, in float64
    float32_difference: float  # the same in the model's float32: rounding only (the sums run in another order)
    tied: bool  # its weight is the encoder conv's own tensor
    weight_name: str  # the model's attribute for it: "deconv2_w"
    pointers: tuple[int, int]  # data_ptr() of its weight and of the encoder conv's: equal when tied
    kernels: np.ndarray  # (C_in, C_out, k, k) the weight it used, as stored
    from_encoder: float  # max |decoder kernel - encoder kernel|: 0 when tied


def _max_difference(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    by_transpose = F.conv_transpose2d(inputs, weight, bias)
    by_full_conv = full_convolution(inputs, weight, bias)
    return by_transpose, by_full_conv, float((by_transpose - by_full_conv).abs().max())


@torch.no_grad()
def transposed_checks(model: nn.Module, stages: list[tuple[str, torch.Tensor]]) -> list[TransposedCheck]:
    """For each transposed conv, on the activations that reach it in `stages` (from stage_tensors).

    The identity is checked in float64: in float32 the two ways add 800 products in different orders, and
    pre-sigmoid outputs of magnitude ~25 then differ by up to ~5e-5 (2,000 test digits, the default model),
    which is rounding, not a difference of method. The float32 figure is kept alongside.
    """
    values = dict(stages)
    checks = []
    for deconv in model.transposed_convolutions():
        weight, bias, encoder_weight = deconv.weight, deconv.bias, deconv.encoder_weight
        inputs = torch.as_tensor(values[deconv.input_stage])
        by_transpose, by_full_conv, difference = _max_difference(inputs.double(), weight.double(), bias.double())
        *_, float32_difference = _max_difference(inputs.float(), weight, bias)
        checks.append(TransposedCheck(
            deconv.layer, deconv.encoder_layer, by_transpose.numpy(), by_full_conv.numpy(), difference,
            float32_difference, same_tensor(weight, encoder_weight), deconv.weight_name,
            (weight.data_ptr(), encoder_weight.data_ptr()),
            weight.detach().numpy().copy(),  # a copy: the shared, cached model's own memory stays out of reach
            float((weight - encoder_weight).abs().max())))
    return checks


@dataclass(frozen=True)
class LayerParameters:
    layer: str  # as the network's layer_of names it: "conv1", "encode_dense", "deconv2", ...
    tied: int
    untied: int


@functools.lru_cache(maxsize=16)
def _counts(network_class: type, config) -> dict[str, int]:
    # Built on the meta device: no memory, and no draw from torch's random generator (a run training in
    # another thread of this process uses it for dropout).
    with torch.device("meta"):
        network = network_class(config)
    counts: dict[str, int] = {}
    for name, parameter in network.named_parameters():
        layer = network.layer_of(name)
        counts[layer] = counts.get(layer, 0) + parameter.numel()
    return counts


def parameter_counts(model: nn.Module) -> list[LayerParameters]:
    """Parameters per layer of this model's type and config, with tied and with untied weights."""
    tied = _counts(type(model), dataclasses.replace(model.config, tied_weights=True))
    untied = _counts(type(model), dataclasses.replace(model.config, tied_weights=False))
    return [LayerParameters(layer, tied.get(layer, 0), untied[layer]) for layer in untied]


def shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(n) for n in shape)


@dataclass(frozen=True)
class Box:
    """One stage in the architecture diagram, with its layer's parameter counts."""

    stage: str
    shape: str  # "32×24×24"
    tied: int
    untied: int


def architecture(stages: Stages, parameters: list[LayerParameters]) -> tuple[list[Box], list[Box], list[Box]]:
    """Boxes for the input and encoder stages, for the decoder stages, and for layers no stage is named after.

    A layer belongs to the first stage it computes (a variational encoder's "mean" comes from encode_dense; its
    "code", a sample around the mean, adds no parameters).
    """
    unclaimed = {entry.layer: entry for entry in parameters}

    def box(name: str, values: np.ndarray) -> Box:
        entry = unclaimed.pop(stages.layer(name), None)  # each layer counted once, at its first stage
        return Box(name, shape_text(values.shape), entry.tied if entry else 0, entry.untied if entry else 0)

    encoder = [box(name, values) for name, values in [("input", stages.input), *stages.encoder]]
    decoder = [box(name, values) for name, values in stages.decoder]
    other = [Box(entry.layer, "", entry.tied, entry.untied) for entry in unclaimed.values()]
    return encoder, decoder, other


# --- the step-through: small examples cut from the real model and digit ---------------------------------------

@dataclass(frozen=True)
class StepExample:
    """Patches and kernels of the real model for one digit, small enough to show every number."""

    channel: int  # the conv1 channel / deconv1 input channel both examples use
    tied: bool  # the two kernels are then one and the same
    upscale_source: np.ndarray  # (2, 2) deconv2's output (after its activation), channel `channel`
    upscale_at: tuple[int, int]  # its top-left in deconv2's 12x12 output
    decoder_inputs: np.ndarray  # (4, 4) the same values upscaled: what deconv1 reads there
    decoder_kernel: np.ndarray  # (5, 5) deconv1_w[channel, 0] as stored
    encoder_inputs: np.ndarray  # (8, 8) a patch of the digit
    encoder_at: tuple[int, int]  # its top-left in the 28x28 input
    encoder_kernel: np.ndarray  # (5, 5) conv1.weight[channel, 0] as stored


def upscale_nearest(values: np.ndarray, factor: int = UPSCALE) -> np.ndarray:
    """Nearest-neighbour upscaling: every value copied into a factor x factor block. No weights, no sums."""
    return values.repeat(factor, axis=0).repeat(factor, axis=1)


def _busiest(values: np.ndarray, size: int, stride: int) -> tuple[int, int]:
    """Top-left of the size x size window (on a stride grid) whose values vary most: the liveliest example."""
    best, where = -1.0, (0, 0)
    for row in range(0, values.shape[0] - size + 1, stride):
        for col in range(0, values.shape[1] - size + 1, stride):
            window = values[row:row + size, col:col + size]
            score = float(window.std() + 0.1 * np.abs(window).mean())
            if score > best:
                best, where = score, (row, col)
    return where


@torch.no_grad()
def step_example(model: nn.Module, stages: Stages) -> StepExample:
    """The input channel of the last transposed conv (the one that makes the image) with the weightiest kernel, and
    the liveliest patches for it."""
    last = model.transposed_convolutions()[-1]
    decoder_weight = last.weight.detach().numpy()  # (32, 1, 5, 5)
    channel = int(np.abs(decoder_weight[:, 0]).sum(axis=(1, 2)).argmax())
    names = [name for name, _ in stages.decoder]
    # It reads an upscaled stage; the stage before that one holds the values before upscaling.
    before_upscale = stages.decoder[names.index(last.input_stage) - 1][1][channel]  # (12, 12)
    half = STEP_INPUT // UPSCALE
    row, col = _busiest(before_upscale, half, 1)
    source = before_upscale[row:row + half, col:col + half].copy()
    digit = stages.input[0]
    top, left = _busiest(digit, VALID_INPUT, 2)
    return StepExample(channel, bool(model.config.tied_weights), source, (row, col), upscale_nearest(source),
                       decoder_weight[channel, 0].copy(), digit[top:top + VALID_INPUT, left:left + VALID_INPUT].copy(),
                       (top, left), last.encoder_weight[channel, 0].detach().numpy().copy())


def output_shape(inputs: np.ndarray, kernel: np.ndarray, *, full: bool) -> tuple[int, int]:
    """Full: every position where kernel and input overlap (h + k - 1); valid: where the kernel fits (h - k + 1)."""
    k = kernel.shape[0]
    grow = k - 1 if full else 1 - k
    return inputs.shape[0] + grow, inputs.shape[1] + grow


def cell_at(inputs: np.ndarray, kernel: np.ndarray, position: int, *, full: bool) -> tuple[int, int]:
    """Output cells in reading order: position 0 is the top-left one."""
    return divmod(position, output_shape(inputs, kernel, full=full)[1])


@dataclass(frozen=True)
class ScatterStep:
    """The transposed convolution as stamps: each input value adds value x kernel onto the output at its place."""

    cell: tuple[int, int]  # the output cell looked at
    source: tuple[int, int]  # the last input cell (reading order) whose stamp reaches `cell`: it completes it
    partial: np.ndarray  # the output after the stamps of every input cell up to `source`, in reading order
    stamp: np.ndarray  # (k, k) inputs[source] * kernel, added with its top-left at `source`
    terms: list[tuple[int, int, float, float]]  # (row, col, input value, kernel value) of each stamp on `cell`
    value: float  # the cell's number: the sum of those products


def scatter_step(inputs: np.ndarray, kernel: np.ndarray, position: int) -> ScatterStep:
    inputs, kernel = inputs.astype(np.float64), kernel.astype(np.float64)  # as gather_step: same sums, same digits
    height, width = inputs.shape
    k = kernel.shape[0]
    row, col = cell_at(inputs, kernel, position, full=True)
    source = (min(row, height - 1), min(col, width - 1))
    partial = np.zeros(output_shape(inputs, kernel, full=True), np.float64)
    for index in range(source[0] * width + source[1] + 1):
        a, b = divmod(index, width)
        partial[a:a + k, b:b + k] += inputs[a, b] * kernel
    # Input (a, b) stamps kernel[row - a, col - b] onto (row, col) where that kernel index exists.
    terms = [(a, b, float(inputs[a, b]), float(kernel[row - a, col - b]))
             for a in range(max(0, row - k + 1), min(height, row + 1))
             for b in range(max(0, col - k + 1), min(width, col + 1))]
    value = float(sum(x * w for _, _, x, w in terms))
    return ScatterStep((row, col), source, partial, inputs[source] * kernel, terms, value)


@dataclass(frozen=True)
class GatherStep:
    """A convolution as windows: each output value is one window of the (padded) input times a kernel, summed."""

    cell: tuple[int, int]
    padded: np.ndarray  # the input with k - 1 zeros around (full) or as it is (valid)
    pad: int
    window: np.ndarray  # (k, k) of `padded`, top-left at `cell`
    kernel: np.ndarray  # (k, k) rotated 180 degrees (full) or as stored (valid)
    products: np.ndarray  # window * kernel
    output: np.ndarray  # every output cell computed this way
    value: float  # products.sum(): the cell's number


def gather_step(inputs: np.ndarray, kernel: np.ndarray, position: int, *, full: bool) -> GatherStep:
    """Full: the transposed convolution's output as a convolution with the rotated kernel; valid: the encoder's."""
    k = kernel.shape[0]
    pad = k - 1 if full else 0
    padded = np.pad(inputs.astype(np.float64), pad)
    kernel = kernel.astype(np.float64)
    used = np.rot90(kernel, 2) if full else kernel
    rows, cols = output_shape(inputs, kernel, full=full)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k))[:rows, :cols]
    output = np.einsum("ijkl,kl->ij", windows, used)
    row, col = cell_at(inputs, kernel, position, full=full)
    window = padded[row:row + k, col:col + k]
    products = window * used
    return GatherStep((row, col), padded, pad, window, np.asarray(used), products, output, float(products.sum()))


# --- everything the page shows for one digit -------------------------------------------------------------------

@dataclass(frozen=True)
class Inside:
    stages: Stages
    checks: list[TransposedCheck]  # one per transposed conv, batch of one
    parameters: list[LayerParameters]
    example: StepExample


def look_inside(model: nn.Module, image: np.ndarray) -> Inside:
    """One forward pass of the digit, the transposed convs checked on its activations, counts and the example."""
    stages = stage_activations(model, image)
    tensors = [(name, torch.from_numpy(values)[None]) for name, values in stages.all]  # no copies
    return Inside(stages, transposed_checks(model, tensors), parameter_counts(model), step_example(model, stages))
