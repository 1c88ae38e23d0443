"""The model types: denoising corruption, the variational objective, and the interface every type shares."""

import math

import pytest
import torch

from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.config import ConfigError
from cae.models.denoising import DenoisingAutoencoder, DenoisingConfig
from cae.models.noise import Noise, psnr
from cae.models.registry import MODEL_TYPES, build_model, make_config, type_of
from cae.models.variational import VariationalAutoencoder, VariationalConfig, kl_to_standard_normal


def test_kl_term_matches_the_closed_form_on_known_numbers():
    mean = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    log_variance = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    kl = kl_to_standard_normal(mean, log_variance)
    # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - ln s^2) / 2 per number: 0; (1 + 4 - 1 - ln 4)/2 + (4 + 1 - 1 - 0)/2
    assert kl[0].item() == 0.0
    assert kl[1].item() == pytest.approx((4 - math.log(4)) / 2 + 2.0)


def test_gradients_flow_through_the_reparameterisation():
    mean = torch.zeros(4, 3, requires_grad=True)
    log_variance = torch.zeros(4, 3, requires_grad=True)
    code = VariationalAutoencoder.sample_code(mean, log_variance, torch.Generator().manual_seed(0))
    (code**2).sum().backward()
    assert mean.grad.abs().sum() > 0 and log_variance.grad.abs().sum() > 0
    torch.manual_seed(0)
    model = VariationalAutoencoder(VariationalConfig(code_size=4))
    model.objective(torch.rand(8, 1, 28, 28), generator=torch.Generator().manual_seed(1)).total.backward()
    assert model.log_variance_dense.weight.grad.abs().sum() > 0  # the variance head learns through the sample
    assert model.encode_dense.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("beta", [1.0, 3.5, 0.0])
def test_the_vae_total_is_the_sum_of_its_reported_terms(beta):
    torch.manual_seed(0)
    model = VariationalAutoencoder(VariationalConfig(code_size=5, beta=beta))
    x = torch.rand(16, 1, 28, 28)
    objective = model.objective(x, generator=torch.Generator().manual_seed(2))
    values = objective.values()
    assert list(values) == list(model.TERMS) == ["reconstruction", "kl"]
    assert objective.total.item() == pytest.approx(sum(values.values()), rel=1e-6)
    # reconstruction is cross-entropy summed over 784 pixels (nats per digit), not averaged per pixel
    assert values["reconstruction"] > 100
    elbo = model.negative_elbo(x, torch.Generator().manual_seed(2))
    kl = values["kl"] / beta if beta else None
    if kl is not None:  # the true bound weighs KL by 1, whatever beta trained it
        assert elbo.mean().item() == pytest.approx(values["reconstruction"] + kl, rel=1e-5)


def test_vae_reconstructs_from_the_mean_and_samples_digits_from_the_prior():
    torch.manual_seed(0)
    model = VariationalAutoencoder(VariationalConfig(code_size=6)).eval()
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(x), model(x))  # no sampling outside training
    mean, _ = model.heads(dict(model.feature_stages(x))["flatten"])
    assert torch.equal(model.encode(x), mean)
    samples = model.sample(10, torch.Generator().manual_seed(0))
    assert samples.shape == (10, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    names = [name for name, _ in model.encoder_stages(x)]
    assert names[-3:] == ["mean", "log_variance", "code"]


@pytest.mark.parametrize("kind, amount", [("gaussian", 0.1), ("gaussian", 0.5), ("mask", 0.3), ("saltpepper", 0.2)])
def test_each_corruption_has_the_statistics_it_promises(kind, amount):
    clean = torch.full((200, 1, 28, 28), 0.5)
    noisy = Noise(kind, amount).apply(clean, torch.Generator().manual_seed(0))
    changed = (noisy != clean).float().mean().item()
    assert 0 <= noisy.min() and noisy.max() <= 1 and torch.equal(clean, torch.full_like(clean, 0.5))  # input kept
    if kind == "gaussian":  # around mid-grey: zero mean; sigma 0.1 is 5 sigma from the clip, 0.5 clips ~32%
        offsets = noisy - clean
        assert abs(offsets.mean().item()) < 0.01
        clipped = ((noisy == 0) | (noisy == 1)).float().mean().item()
        if amount == 0.1:
            assert offsets.std().item() == pytest.approx(0.1, abs=0.003) and clipped == 0
        else:
            assert clipped == pytest.approx(0.3173, abs=0.01)  # P(|N(0, 1)| > 1)
    elif kind == "mask":
        assert changed == pytest.approx(amount, abs=0.01) and noisy[noisy != clean].eq(0).all()
    else:
        assert changed == pytest.approx(amount, abs=0.01)
        flipped = noisy[noisy != clean]
        assert flipped.eq(0).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_noise_text_and_psnr():
    assert Noise.parse("gaussian:0.5") == Noise("gaussian", 0.5)
    for bad in ("gaussian", "blur:0.5", "mask:2", "mask:x"):
        with pytest.raises(ConfigError):
            Noise.parse(bad)
    assert psnr(torch.mean((torch.zeros(4) - torch.full((4,), 0.1)) ** 2).item()) == pytest.approx(20.0)
    assert psnr(0.0) == float("inf")


def test_the_denoiser_trains_on_corrupted_inputs_against_clean_targets():
    torch.manual_seed(0)
    model = DenoisingAutoencoder(DenoisingConfig(code_size=8, noise="mask", noise_amount=0.5))
    seen = []
    original_forward = model.forward
    model.forward = lambda x: seen.append(x.clone()) or original_forward(x)
    x = torch.rand(4, 1, 28, 28)
    objective = model.objective(x, loss="mse", generator=torch.Generator().manual_seed(0))
    assert (seen[0] == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)  # the network saw the mask
    assert objective.total.item() == pytest.approx(torch.mean((original_forward(seen[0]) - x) ** 2).item(), rel=1e-5)


def test_registry_finds_each_type_by_config_and_name():
    for name, kind in MODEL_TYPES.items():
        config = kind.config_class(code_size=3)
        assert type_of(config) is kind and isinstance(build_model(config), kind.network_class)
        assert isinstance(build_model(config), ConvAutoencoder)  # one interface for every type
        assert make_config(name, {"code_size": 3}) == config
    assert [k.can_sample for k in MODEL_TYPES.values()] == [False, False, True]
    with pytest.raises(ConfigError, match="beta"):
        VariationalConfig(beta=-1).validate()
    with pytest.raises(ConfigError, match="noise"):
        DenoisingConfig(noise="blur").validate()
    with pytest.raises(ConfigError, match="unknown"):
        make_config("cae", {"beta": 1.0})  # a VAE knob on the plain autoencoder
    assert "beta 2" in VariationalConfig(beta=2).describe() and "masking 30%" in DenoisingConfig(
        noise="mask", noise_amount=0.3).describe()
    assert ModelConfig().describe().startswith("code 32")
