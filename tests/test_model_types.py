"""The model types: denoising corruption, the variational objective, their declared scores and priors, and the
contract every registered type keeps (cae.models.contract)."""

import math

import pytest
import torch
from torch import nn

from cae.engine.metrics import as_batch, declared_score, declared_scores
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.config import ConfigError
from cae.models.contract import ModelConfigLike, Network, Prior, Score, contract_problems
from cae.models.denoising import DenoisingAutoencoder, DenoisingConfig
from cae.models.noise import Noise, psnr
from cae.models.prior import StandardNormal, kl_to_standard_normal
from cae.models.registry import MODEL_TYPES, ModelType, build_model, make_config, register, type_of
from cae.models.variational import VariationalAutoencoder, VariationalConfig


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
    with pytest.raises(ConfigError, match="beta"):
        VariationalConfig(beta=-1).validate()
    with pytest.raises(ConfigError, match="noise"):
        DenoisingConfig(noise="blur").validate()
    with pytest.raises(ConfigError, match="unknown"):
        make_config("cae", {"beta": 1.0})  # a VAE knob on the plain autoencoder
    assert "beta 2" in VariationalConfig(beta=2).describe() and "masking 30%" in DenoisingConfig(
        noise="mask", noise_amount=0.3).describe()
    assert ModelConfig().describe().startswith("code 32")


@pytest.mark.parametrize("name", list(MODEL_TYPES))
def test_every_registered_type_keeps_the_contract(name):
    kind = MODEL_TYPES[name]
    assert contract_problems(kind.config_class, kind.network_class) == []
    torch.manual_seed(0)
    config = kind.config_class(code_size=3)
    network = build_model(config).eval()
    assert isinstance(config, ModelConfigLike) and isinstance(network, Network) and isinstance(network, nn.Module)
    x = torch.rand(5, 1, 28, 28)
    assert network.encode(x).shape == (5, 3) and network.decode(torch.zeros(2, 3)).shape == (2, 1, 28, 28)
    assert torch.equal(network.reconstruct(x), network(x))
    stages = [name for name, _ in network.encoder_stages(x)]
    assert stages[-1] == "code"
    decoder = [name for name, _ in network.decoder_stages(network.encode(x))]
    objective = network.train().objective(x, loss=network.OBJECTIVE_LOSS, generator=torch.Generator().manual_seed(0))
    network.eval()
    assert list(objective.values()) == list(network.TERMS)  # the terms it declares, in order
    assert isinstance(network.loss_label(network.OBJECTIVE_LOSS), str) and config.describe()
    layers = {network.layer_of(parameter) for parameter, _ in network.named_parameters()}
    assert set(network.STAGE_LAYERS.values()) <= layers  # it names layers it has
    deconvs = network.transposed_convolutions()
    assert deconvs and all(d.layer in decoder and d.input_stage in decoder for d in deconvs)
    assert deconvs[-1].layer == decoder[-1]  # the last one makes the image
    for score in kind.scores:
        with torch.no_grad():
            values = score.per_digit(network, x, torch.Generator().manual_seed(0))
        assert values.shape == (5,) and torch.isfinite(values).all()
    if kind.prior is not None:
        low, high = kind.prior.traversal_range()
        assert low < high and isinstance(kind.prior, Prior) and kind.prior.description
        assert kind.prior.sample(4, 3, torch.Generator().manual_seed(0)).shape == (4, 3)


def test_can_sample_is_what_the_type_declares_and_says_whether_it_makes_digits():
    for kind in MODEL_TYPES.values():
        network = build_model(kind.config_class(code_size=3)).eval()
        assert kind.can_sample == (kind.prior is not None) == (network.PRIOR is not None)
        if kind.can_sample:
            digits = network.sample(4, torch.Generator().manual_seed(0))
            assert digits.shape == (4, 1, 28, 28) and 0 <= digits.min() and digits.max() <= 1
        else:
            with pytest.raises(ValueError, match="no prior"):
                network.sample(4)
    assert any(kind.can_sample for kind in MODEL_TYPES.values())  # the variational type does


class Shifted(StandardNormal):
    """N(2, I): another prior, for a VAE that changes only its PRIOR."""

    description = "N(2, I)"

    def sample(self, count, code_size, generator=None):
        return super().sample(count, code_size, generator) + 2

    def traversal_range(self):
        return -1.0, 5.0

    def kl(self, mean, log_variance, code):
        return kl_to_standard_normal(mean - 2, log_variance)


class ShiftedVariational(VariationalAutoencoder):
    PRIOR = Shifted()


def test_a_vae_with_another_prior_samples_and_pulls_towards_that_prior():
    config = VariationalConfig(code_size=4)
    torch.manual_seed(0)
    standard = VariationalAutoencoder(config).eval()
    shifted = ShiftedVariational(config).eval()
    shifted.load_state_dict(standard.state_dict())
    codes = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(shifted.sample(3, torch.Generator().manual_seed(0)), standard.decode(codes + 2))
    assert torch.allclose(standard.sample(3, torch.Generator().manual_seed(0)), standard.decode(codes))
    x = torch.rand(6, 1, 28, 28)
    kl = {name: model.objective(x, generator=torch.Generator().manual_seed(1)).values()["kl"]
          for name, model in (("standard", standard), ("shifted", shifted))}
    mean, log_variance = standard.heads(dict(standard.feature_stages(x))["flatten"])
    assert kl["shifted"] == pytest.approx(kl_to_standard_normal(mean - 2, log_variance).mean().item(), rel=1e-5)
    assert kl["shifted"] != pytest.approx(kl["standard"])


def test_the_declared_scores_are_the_figures_evaluate_has_always_reported():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8)
    vae = VariationalAutoencoder(VariationalConfig(code_size=4)).eval()
    generator, total = torch.Generator().manual_seed(0), 0.0  # the ELBO as evaluate computed it by name before
    with torch.no_grad():
        for i in range(0, 300, 256):
            total += vae.negative_elbo(as_batch(images[i:i + 256]), generator).sum().item()
    assert declared_scores(vae, images) == {"held_out_elbo_nats": pytest.approx(total / 300, rel=1e-6)}
    dae = DenoisingAutoencoder(DenoisingConfig(code_size=4, noise="mask", noise_amount=0.4)).eval()
    clean = as_batch(images)
    with torch.no_grad():
        output = dae(Noise("mask", 0.4).apply(clean, torch.Generator().manual_seed(0)))
    expected = psnr(torch.mean((output - clean) ** 2).item())
    (score,) = dae.SCORES
    assert score.better == "higher" and score.unit == "dB"
    assert declared_score(dae, score, images, batch_size=1000) == pytest.approx(expected, rel=1e-5)
    assert declared_scores(ConvAutoencoder(ModelConfig(code_size=4)), images) == {}


class Headless(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config


def test_the_registry_refuses_a_type_that_breaks_the_contract_or_takes_a_name():
    problems = contract_problems(ModelConfig, Headless)
    assert "Headless lacks encode" in problems and "Headless lacks PRIOR" in problems
    with pytest.raises(TypeError, match="does not keep the contract"):
        register(ModelType("headless", "Headless", "Nothing.", ModelConfig, Headless))
    with pytest.raises(ValueError, match="registered already"):
        register(ModelType("cae", "Again", "Twice.", ModelConfig, ConvAutoencoder))
    assert "headless" not in MODEL_TYPES
    with pytest.raises(ConfigError, match="better"):
        Score("x", "X", "", "bigger", lambda model, x, generator: x)
