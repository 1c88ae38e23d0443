"""The post's network: shapes layer by layer, tied weights without copies, and deconvolution = full convolution."""

import pytest
import torch
import torch.nn.functional as F

from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.config import ConfigError


def model(**settings) -> ConvAutoencoder:
    torch.manual_seed(0)
    return ConvAutoencoder(ModelConfig(**settings)).eval()


def test_shapes_layer_by_layer_follow_the_post():
    net, x = model(code_size=32), torch.rand(3, 1, 28, 28)
    stages = list(net.encoder_stages(x))
    code = stages[-1][1]
    stages += list(net.decoder_stages(code))
    sizes = [tuple(t.shape[1:]) for _, t in stages]
    assert sizes == [(32, 24, 24), (32, 12, 12), (32, 8, 8), (32, 4, 4), (512,), (32,),
                     (512,), (32, 4, 4), (32, 8, 8), (32, 12, 12), (32, 24, 24), (1, 28, 28)]


def test_encode_and_decode_work_on_their_own_and_output_is_in_0_1():
    net = model(code_size=7)
    assert net.encode(torch.rand(5, 1, 28, 28)).shape == (5, 7)
    images = net.decode(torch.randn(4, 7) * 10)
    assert images.shape == (4, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(net(x), net.decode(net.encode(x)))


def test_tied_transposed_convs_use_the_encoder_tensors_themselves():
    net = model(tied_weights=True)
    assert net.deconv1_w is net.conv1.weight and net.deconv2_w is net.conv2.weight
    names = {name for name, _ in net.named_parameters()}
    assert not any("deconv1_weight" in n or "deconv2_weight" in n for n in names)
    untied = model(tied_weights=False)
    assert untied.deconv1_w is not untied.conv1.weight
    extra = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in net.parameters())
    assert extra == 32 * 25 + 32 * 32 * 25  # the two decoder kernels, and nothing else


def test_tied_weight_gradient_receives_both_uses():
    # An untied copy computes the same function; its encoder and decoder gradients must add up to the tied one's.
    tied, untied = model(tied_weights=True), model(tied_weights=False)
    untied.load_state_dict({**tied.state_dict(), "deconv1_weight": tied.conv1.weight.detach().clone(),
                            "deconv2_weight": tied.conv2.weight.detach().clone()})
    x = torch.rand(8, 1, 28, 28)
    F.mse_loss(tied(x), x).backward()
    F.mse_loss(untied(x), x).backward()
    for conv, deconv in (("conv1", "deconv1_weight"), ("conv2", "deconv2_weight")):
        both = getattr(untied, conv).weight.grad + getattr(untied, deconv).grad
        assert torch.allclose(getattr(tied, conv).weight.grad, both, atol=1e-6)
        assert getattr(untied, deconv).grad.abs().sum() > 0  # the decoder's share is real, not zero


@pytest.mark.parametrize("layer, channels_in", [("conv2", 32), ("conv1", 32)])
def test_transposed_conv_is_a_full_convolution_with_the_kernel_rotated_180_degrees(layer, channels_in):
    net = model()
    weight = getattr(net, layer).weight.detach()  # (out, in, 5, 5) of the encoder conv
    bias = torch.randn(weight.shape[1])
    x = torch.randn(4, channels_in, 12, 12)
    transposed = F.conv_transpose2d(x, weight, bias)
    rotated = weight.flip(2, 3).transpose(0, 1)  # 180-degree rotation, in/out channels swapped
    full = F.conv2d(F.pad(x, (4, 4, 4, 4)), rotated, bias)  # "full" convolution: padding k - 1
    assert transposed.shape == full.shape == (4, weight.shape[1], 16, 16)
    assert (transposed - full).abs().max() < 1e-5


def test_the_model_decoder_is_that_full_convolution():
    net = model()
    stages = dict(net.decoder_stages(net.encode(torch.rand(2, 1, 28, 28))))
    w = net.conv1.weight.detach()
    full = torch.sigmoid(F.conv2d(F.pad(stages["upscale1"], (4, 4, 4, 4)), w.flip(2, 3).transpose(0, 1),
                                  net.deconv1_bias))
    assert (stages["deconv1"] - full).abs().max() < 1e-5


@pytest.mark.parametrize("settings, field", [({"code_size": 0}, "code_size"), ({"code_size": 2.5}, "code_size"),
                                             ({"dropout": 1.5}, "dropout"), ({"activation": "gelu"}, "activation"),
                                             ({"tied_weights": "yes"}, "tied_weights")])
def test_bad_config_is_refused_with_the_field_named(settings, field):
    with pytest.raises(ConfigError, match=field):
        ConvAutoencoder(ModelConfig(**settings))


@pytest.mark.parametrize("tied", [True, False])
def test_the_network_declares_the_transposed_convolutions_it_applies(tied):
    net = model(tied_weights=tied)
    deconv2, deconv1 = net.transposed_convolutions()
    assert [(d.layer, d.input_stage, d.encoder_layer) for d in (deconv2, deconv1)] == [
        ("deconv2", "upscale2", "conv2"), ("deconv1", "upscale1", "conv1")]
    assert deconv1.weight is net.deconv1_w and deconv1.bias is net.deconv1_bias
    assert deconv1.encoder_weight is net.conv1.weight and (deconv1.weight is deconv1.encoder_weight) == tied
    stages = dict(net.decoder_stages(net.encode(torch.rand(2, 1, 28, 28))))
    applied = torch.sigmoid(F.conv_transpose2d(stages[deconv1.input_stage], deconv1.weight, deconv1.bias))
    assert torch.allclose(applied, stages[deconv1.layer], atol=1e-6)  # what decoder_stages really computes
    assert net.encoder_kernels()["conv1"] is net.conv1.weight and net.encoder_kernels()["conv2"] is net.conv2.weight
    layers = {net.layer_of(name) for name, _ in net.named_parameters()}
    assert layers == {"conv1", "conv2", "encode_dense", "decode_dense", "deconv2", "deconv1"}
    with pytest.raises(ValueError, match="no prior"):
        net.sample(2)  # the post's autoencoder declares no prior
