"""cae.views.inside and its pictures: the transposed convs as full convolutions (tied and untied, every channel, a
batch), stage shapes, parameter counts against a hand count, the step-through's numbers, pictures that fit their
frames."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.views import inside
from cae.views.figures import inside as figures_inside
from tests.pictures import SVG, read

IMAGES = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def model(tied: bool) -> ConvAutoencoder:
    torch.manual_seed(1)
    network = ConvAutoencoder(ModelConfig(tied_weights=tied)).eval()
    if not tied:  # a fresh untied model starts as a copy of the encoder's kernels: make them its own
        with torch.no_grad():
            network.deconv2_weight.add_(0.05 * torch.randn_like(network.deconv2_weight))
            network.deconv1_weight.add_(0.05 * torch.randn_like(network.deconv1_weight))
    return network


@pytest.mark.parametrize("tied", [True, False])
def test_each_transposed_conv_equals_a_full_convolution_with_rotated_kernels_on_every_channel(tied):
    network = model(tied)
    stages = inside.stage_tensors(network, IMAGES)
    checks = inside.transposed_checks(network, stages)
    assert [c.layer for c in checks] == ["deconv2", "deconv1"]
    for check in checks:
        assert check.by_transpose.shape[0] == len(IMAGES)  # the whole batch
        for channel in range(check.by_transpose.shape[1]):
            difference = np.abs(check.by_transpose[:, channel] - check.by_full_conv[:, channel]).max()
            assert difference < 1e-5, (check.layer, channel)
        assert check.max_difference < 1e-5
        assert check.float32_difference < 1e-4  # the model's own precision: rounding only
    # What was checked is the model's real computation: its stages are the activations of these outputs.
    values = dict(stages)
    assert torch.allclose(network.act(torch.as_tensor(checks[0].by_transpose).float()), values["deconv2"], atol=1e-5)
    assert torch.allclose(torch.sigmoid(torch.as_tensor(checks[1].by_transpose).float()), values["deconv1"],
                          atol=1e-5)


def test_without_the_rotation_the_full_convolution_does_not_match():
    network = model(True)
    inputs = dict(inside.stage_tensors(network, IMAGES))["upscale1"]
    weight = network.deconv1_w
    unrotated = F.conv2d(F.pad(inputs, (4, 4, 4, 4)), weight.transpose(0, 1))
    assert (F.conv_transpose2d(inputs, weight) - unrotated).abs().max() > 1e-2


def test_tied_kernels_are_the_encoders_tensors_and_untied_ones_the_decoders_own():
    tied = inside.look_inside(model(True), IMAGES[0, 0].numpy()).checks
    assert all(c.tied and c.pointers[0] == c.pointers[1] and c.from_encoder == 0 for c in tied)
    assert [c.weight_name for c in tied] == ["deconv2_w", "deconv1_w"]
    untied = inside.look_inside(model(False), IMAGES[0, 0].numpy()).checks
    assert all(not c.tied and c.pointers[0] != c.pointers[1] and c.from_encoder > 0.01 for c in untied)


def test_stage_names_and_shapes_follow_the_posts_arithmetic():
    shapes = [(name, tuple(values.shape)) for name, values in inside.stage_tensors(model(True), IMAGES[:3])]
    assert shapes == [("input", (3, 1, 28, 28)), ("conv1", (3, 32, 24, 24)), ("pool1", (3, 32, 12, 12)),
                      ("conv2", (3, 32, 8, 8)), ("pool2", (3, 32, 4, 4)), ("flatten", (3, 512)), ("code", (3, 32)),
                      ("dense", (3, 512)), ("reshape", (3, 32, 4, 4)), ("upscale2", (3, 32, 8, 8)),
                      ("deconv2", (3, 32, 12, 12)), ("upscale1", (3, 32, 24, 24)), ("deconv1", (3, 1, 28, 28))]
    one = inside.stage_activations(model(True), IMAGES[0, 0].numpy())
    assert [(name, values.shape) for name, values in one.all] == [(n, s[1:]) for n, s in shapes]
    assert one.code.shape == (32,) and one.encoder[-1][0] == "code"


def test_parameter_counts_match_a_hand_count():
    # conv1: 32 kernels of 1x5x5 + 32 biases; conv2: 32 of 32x5x5 + 32; encode_dense: 512 x 32 + 32;
    # decode_dense: 32 x 512 + 512; deconv2: 32 biases, plus 32x32x5x5 kernels when untied; deconv1: 1 bias,
    # plus 32x1x5x5 kernels when untied.
    hand = {"conv1": (32 * 25 + 32,) * 2, "conv2": (32 * 32 * 25 + 32,) * 2, "encode_dense": (512 * 32 + 32,) * 2,
            "decode_dense": (32 * 512 + 512,) * 2, "deconv2": (32, 32 * 32 * 25 + 32), "deconv1": (1, 32 * 25 + 1)}
    for tied in (True, False):
        counts = {p.layer: (p.tied, p.untied) for p in inside.parameter_counts(model(tied))}
        assert counts == hand
    assert sum(t for t, _ in hand.values()) == 59_809 == sum(p.numel() for p in model(True).parameters())
    assert sum(u for _, u in hand.values()) == 86_209 == sum(p.numel() for p in model(False).parameters())


def test_counting_parameters_draws_nothing_from_torchs_random_generator():
    network = model(True)
    inside._counts.cache_clear()
    torch.manual_seed(5)
    inside.parameter_counts(network)
    after = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(1))


def test_architecture_boxes_give_each_stage_its_layers_parameters_once():
    result = inside.look_inside(model(True), IMAGES[0, 0].numpy())
    encoder, decoder, other = inside.architecture(result.stages, result.parameters)
    assert [b.stage for b in encoder] == ["input", "conv1", "pool1", "conv2", "pool2", "flatten", "code"]
    assert {b.stage: (b.tied, b.untied) for b in decoder}["deconv2"] == (32, 25_632)
    assert encoder[1].shape == "32×24×24" and other == []
    assert sum(b.tied for b in encoder + decoder) == 59_809


class WithHeads(ConvAutoencoder):
    """A stand-in for the variational type: a mean and a log-variance stage before the code (here the mean)."""

    STAGE_LAYERS = {**ConvAutoencoder.STAGE_LAYERS, "mean": "encode_dense", "log_variance": "log_variance_dense"}

    def __init__(self, config: ModelConfig | None = None):
        config = config or ModelConfig()
        super().__init__(config)
        self.log_variance_dense = nn.Linear(512, config.code_size)

    def encoder_stages(self, x):
        for name, values in super().encoder_stages(x):
            if name != "code":
                features = values
                yield name, values
        mean = self.encode_dense(features)
        yield "mean", mean
        yield "log_variance", self.log_variance_dense(features)
        yield "code", mean


def test_stages_a_model_type_adds_are_shown_in_order_and_counted_once():
    torch.manual_seed(0)
    network = WithHeads().eval()
    result = inside.look_inside(network, IMAGES[0, 0].numpy())
    assert [name for name, _ in result.stages.encoder][-4:] == ["flatten", "mean", "log_variance", "code"]
    encoder, decoder, other = inside.architecture(result.stages, result.parameters)
    counts = {b.stage: b.tied for b in encoder}
    assert counts["mean"] == counts["log_variance"] == 512 * 32 + 32 and counts["code"] == 0  # a sampling step
    assert sum(b.tied for b in encoder + decoder + other) == sum(p.numel() for p in network.parameters())
    assert all(c.max_difference < 1e-5 for c in result.checks)
    title = figures_inside.architecture_figure(encoder, decoder, tied=True, other=other).alt
    assert title.startswith(f"The network: {59_809 + 16_416:,} parameters with tied weights")


def test_without_its_declaration_a_new_stage_owns_no_layer():
    class Undeclared(WithHeads):
        STAGE_LAYERS = ConvAutoencoder.STAGE_LAYERS

    torch.manual_seed(0)
    result = inside.look_inside(Undeclared().eval(), IMAGES[0, 0].numpy())
    encoder, _, other = inside.architecture(result.stages, result.parameters)
    counts = {b.stage: b.tied for b in encoder}
    assert counts["mean"] == 0 and counts["code"] == 512 * 32 + 32  # encode_dense goes to the stage that names it
    assert [b.stage for b in other] == ["log_variance_dense"]  # a layer no stage claims is shown on its own


class LastOnly(ConvAutoencoder):
    """Declares only the transposed convolution that makes the image."""

    def transposed_convolutions(self):
        return super().transposed_convolutions()[-1:]


def test_the_transposed_convolutions_checked_are_those_the_network_declares():
    torch.manual_seed(1)
    network = LastOnly().eval()
    result = inside.look_inside(network, IMAGES[0, 0].numpy())
    assert [(c.layer, c.encoder_layer, c.weight_name) for c in result.checks] == [("deconv1", "conv1", "deconv1_w")]
    assert result.checks[0].max_difference < 1e-5
    assert np.array_equal(result.example.decoder_kernel, network.deconv1_w[result.example.channel, 0].detach().numpy())


def test_the_page_reads_the_model_and_leaves_it_as_it_was():
    network = model(True)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    inside.look_inside(network, IMAGES[0, 0].numpy())
    assert not network.training
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    with pytest.raises(ValueError, match="eval mode"):
        inside.look_inside(network.train(), IMAGES[0, 0].numpy())


def test_scatter_and_gather_give_every_output_cell_the_same_number_as_conv_transpose2d():
    example = inside.look_inside(model(True), IMAGES[0, 0].numpy()).example
    inputs, kernel = example.decoder_inputs, example.decoder_kernel
    reference = F.conv_transpose2d(torch.as_tensor(inputs, dtype=torch.float64)[None, None],
                                   torch.as_tensor(kernel, dtype=torch.float64)[None, None])[0, 0].numpy()
    assert inside.output_shape(inputs, kernel, full=True) == (8, 8)
    for position in range(64):
        scatter = inside.scatter_step(inputs, kernel, position)
        gather = inside.gather_step(inputs, kernel, position, full=True)
        assert scatter.cell == gather.cell == divmod(position, 8)
        assert scatter.value == pytest.approx(gather.value, abs=1e-12)
        assert scatter.value == pytest.approx(reference[scatter.cell], abs=1e-6)
        assert scatter.partial[scatter.cell] == pytest.approx(scatter.value, abs=1e-12)  # complete at this step
    assert np.allclose(inside.scatter_step(inputs, kernel, 63).partial, reference)  # every stamp added
    assert np.allclose(gather.output, reference)
    corner = inside.scatter_step(inputs, kernel, 0)
    assert corner.source == (0, 0) and len(corner.terms) == 1


def test_the_step_examples_are_cut_from_the_real_stages():
    network = model(True)
    image = IMAGES[0, 0].numpy()
    result = inside.look_inside(network, image)
    example, values = result.example, dict(result.stages.all)
    row, col = example.upscale_at
    assert np.array_equal(example.upscale_source, values["deconv2"][example.channel, row:row + 2, col:col + 2])
    assert np.array_equal(example.decoder_inputs, values["upscale1"][example.channel, 2 * row:2 * row + 4,
                                                                     2 * col:2 * col + 4])  # copies, nothing else
    assert np.array_equal(example.decoder_kernel, network.deconv1_w[example.channel, 0].detach().numpy())
    assert np.array_equal(example.encoder_kernel, example.decoder_kernel)  # tied: one kernel, both directions
    top, left = example.encoder_at
    valid = inside.gather_step(example.encoder_inputs, example.encoder_kernel, 0, full=False)
    assert valid.output.shape == (4, 4) and valid.pad == 0
    with torch.no_grad():
        conv1 = network.conv1(torch.as_tensor(image)[None, None])[0, example.channel]
    bias = float(network.conv1.bias[example.channel].detach())
    assert np.allclose(valid.output + bias, conv1[top:top + 4, left:left + 4].numpy(), atol=1e-5)


def all_figures():
    result = inside.look_inside(model(False), IMAGES[0, 0].numpy())
    example, check = result.example, result.checks[0]
    encoder, decoder, other = inside.architecture(result.stages, result.parameters)
    gather = inside.gather_step(example.decoder_inputs, example.decoder_kernel, 9, full=True)
    return {
        "stage_maps": figures_inside.stage_figure("conv1", dict(result.stages.all)["conv1"]),
        "stage_vector": figures_inside.stage_figure("code", result.stages.code),
        "stage_image": figures_inside.stage_figure("input", result.stages.input, image=True),
        "architecture": figures_inside.architecture_figure(encoder, decoder, tied=False, other=other),
        "comparison": figures_inside.comparison_figure(check.by_transpose[0, 3], check.by_full_conv[0, 3],
                                                       layer="deconv2", channel=3),
        "kernels": figures_inside.kernels_figure(check.kernels[:, 3], title="kernels"),
        "scatter": figures_inside.scatter_figure(example.decoder_inputs, example.decoder_kernel,
                                                 inside.scatter_step(example.decoder_inputs,
                                                                     example.decoder_kernel, 9)),
        "gather": figures_inside.gather_figure(gather, full=True),
        "upscale": figures_inside.upscale_figure(example.upscale_source, example.decoder_inputs),
    }


@pytest.mark.parametrize("name", list(all_figures()))
def test_every_picture_draws_inside_its_frame(name):
    """SVG text does not wrap and anything outside the frame is cut off: every block of pixels lies inside, and
    every text fits (at about half an em a character, a sans-serif's average)."""
    picture = all_figures()[name]
    shown = read(picture)
    root = shown.root
    assert (float(root.get("width")), float(root.get("height"))) == (picture.width, picture.height)
    for node in root.iter(f"{SVG}image"):
        x, y, width, height = (float(node.get(key)) for key in ("x", "y", "width", "height"))
        assert -0.5 <= x and x + width <= picture.width + 0.5 and -0.5 <= y and y + height <= picture.height + 0.5
    for node in root.iter(f"{SVG}text"):
        x, y, size = float(node.get("x")), float(node.get("y")), float(node.get("font-size"))
        extent = 0.5 * size * len(node.text)
        left = {"start": x, "middle": x - extent / 2, "end": x - extent}[node.get("text-anchor")]
        assert -1 <= left and left + extent <= picture.width + 1, (name, node.text)
        assert 0 <= y <= picture.height, (name, node.text)
    assert shown.alt and shown.layers or name == "architecture"  # an alt text; pixels except in the diagram


def test_the_step_through_pictures_write_their_cells_numbers():
    result = inside.look_inside(model(False), IMAGES[0, 0].numpy())
    example = result.example
    gather = inside.gather_step(example.decoder_inputs, example.decoder_kernel, 9, full=True)
    texts = read(figures_inside.gather_figure(gather, full=True)).texts
    assert f"{gather.value:.2f}".replace("-0.00", "0.00") in texts  # the followed cell's number, in its cell
    assert all(f"{v:.2f}".replace("-0.00", "0.00") in texts for v in gather.kernel.ravel())  # every kernel weight


def test_the_architecture_title_gives_both_totals():
    title = read(all_figures()["architecture"]).texts[0]
    assert "59,809 parameters with tied weights, 86,209 untied" in title and "this model: untied" in title


def test_a_stage_picture_gives_its_colour_scale_in_the_title():
    values = np.zeros((2, 3, 3), np.float32)
    values[1, 2, 2] = -0.75  # the largest absolute value, negative: the scale runs from -0.75 to +0.75
    shown = read(figures_inside.stage_figure("conv9", values))
    assert shown.texts == ["conv9 · 2×3×3 · ±0.75"]
    assert read(figures_inside.stage_figure("input", np.zeros((1, 28, 28)), image=True)).texts == ["input · 1×28×28"]
