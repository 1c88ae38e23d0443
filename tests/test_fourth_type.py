"""A made-up fourth model type, defined here and registered through the registry alone, works end to end.

It has a term of its own in its objective, a score of its own and a prior of its own: a code squashed into the box
(-1, 1) with an L1 penalty on it, new digits decoded from codes drawn uniformly from that box. It trains (Trainer),
evaluates (its score in `python -m cae.evaluate`'s JSON), samples (`--sample` and the home page) and shows its views
on the home page and on "How it works", with no change anywhere but this file and one `register` call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cae import evaluate
from cae.engine import checkpoint
from cae.engine.checkpoint import Checkpoint
from cae.engine.metrics import declared_score
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import Trainer
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.config import Knob, check_range
from cae.models.contract import Score, contract_problems
from cae.models.objective import Objective, per_pixel_loss
from cae.models.registry import MODEL_TYPES, ModelType, make_config, register, type_of
from cae.views import explore
from tests.conftest import ROOT
from tests.drawing import SEVEN, canvas, canvas_state
from tests.pictures import shown_pictures

ACTIVE = 0.1  # a code number farther than this from 0 counts as in use


@dataclass(frozen=True)
class BoxedConfig(ModelConfig):
    sparsity: float = 0.05  # weight of the mean |code| term

    RANGES = {**ModelConfig.RANGES, "sparsity": (0.0, 1.0)}
    KNOBS = (Knob("sparsity", "Sparsity", "Weight of the mean |code| term.", low=0.0, high=1.0, step=0.05),)

    def validate(self) -> BoxedConfig:
        super().validate()
        check_range("sparsity", self.sparsity, *self.RANGES["sparsity"])
        return self

    def describe(self) -> str:
        return f"{super().describe()} · sparsity {self.sparsity:g}"


class UniformBox:
    """Every code number uniform on (-1, 1): the box the encoder's tanh keeps codes in."""

    description = "U(-1, 1) in each code number"

    def sample(self, count: int, code_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else None
        return torch.rand((count, code_size), generator=generator, device=device) * 2 - 1

    def traversal_range(self) -> tuple[float, float]:
        return -1.0, 1.0


def active_percent(model: BoxedAutoencoder, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return 100 * (model.encode(x).abs() > ACTIVE).float().mean(1)


class BoxedAutoencoder(ConvAutoencoder):
    TERMS = {"reconstruction": "reconstruction", "sparsity": "sparsity x mean |code|"}
    SCORES = (Score("test_active_code_percent", "Code numbers in use", "%", "lower", active_percent,
                    help=f"The share of code numbers farther than {ACTIVE} from 0."),)
    PRIOR = UniformBox()

    def head_stages(self, features: torch.Tensor):
        yield "code", torch.tanh(self.encode_dense(features))  # (B, code) in (-1, 1)

    def objective(self, x: torch.Tensor, *, loss: str = "mse", generator: torch.Generator | None = None) -> Objective:
        code = self.encode(x)
        return Objective.of(reconstruction=per_pixel_loss(self.decode(code), x, loss),
                            sparsity=self.config.sparsity * code.abs().mean())


FOURTH = ModelType("boxed", "Boxed sparse autoencoder", "A code in a box, with as few numbers in use as it can.",
                   BoxedConfig, BoxedAutoencoder)


@pytest.fixture
def fourth() -> ModelType:
    kind = register(FOURTH)
    yield kind
    MODEL_TYPES.pop(kind.name)


def test_the_registry_knows_what_it_declares(fourth):
    assert contract_problems(BoxedConfig, BoxedAutoencoder) == []
    assert fourth.can_sample and fourth.prior is BoxedAutoencoder.PRIOR
    assert [score.key for score in fourth.scores] == ["test_active_code_percent"]
    assert type_of(BoxedConfig()) is fourth and make_config("boxed", {"sparsity": 0.2}) == BoxedConfig(sparsity=0.2)
    ckpt = Checkpoint(model_config=BoxedConfig(code_size=3), state_dict=BoxedAutoencoder(BoxedConfig(3)).state_dict())
    assert checkpoint.load(checkpoint.to_bytes(ckpt)).kind is fourth


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_it_trains_evaluates_and_samples(fourth, mnist, full_mnist, tmp_path, capsys):
    small = replace(mnist, val_images=mnist.val_images[:500], val_labels=mnist.val_labels[:500])
    trainer = Trainer(BoxedConfig(code_size=8, sparsity=0.1),
                      TrainConfig(epochs=1, train_subset=256, batch_size=32, learning_rate=3e-3), small)
    losses = [trainer.step().loss for _ in range(trainer.total_steps)]
    assert trainer.finished and trainer.step_count == 8 and len(trainer.history.val_mse) == 1
    assert list(trainer.history.terms) == ["reconstruction", "sparsity"]  # its own term, recorded by name
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    path = checkpoint.save(trainer.checkpoint(), tmp_path / "boxed.pt")

    assert evaluate.main([str(path), "--dry-run"]) == 0
    scored = last_json(capsys)
    assert scored["model_type"] == "boxed" and scored["count"] == 500 and "held_out_elbo_nats" not in scored
    model = checkpoint.load(path).build_model()
    (score,) = fourth.scores
    expected = declared_score(model, score, mnist.val_images[:500])
    assert scored["test_active_code_percent"] == pytest.approx(expected) and 0 < expected <= 100

    assert evaluate.main([str(path), "--sample", "6", str(tmp_path / "new.npy")]) == 0
    samples = np.load(tmp_path / "new.npy")
    with torch.no_grad():  # decoded from codes drawn from its own prior, the box, with the seed evaluate uses
        codes = torch.rand((6, 8), generator=torch.Generator().manual_seed(0)) * 2 - 1
        assert np.allclose(samples, model.decode(codes)[:, 0].numpy(), atol=1e-6)
    values, images = explore.traversal(model, mnist.val_images[0].numpy() / 255, 3)
    assert np.allclose(values, np.linspace(-1, 1, 9)) and images.shape == (9, 28, 28)


@pytest.fixture
def app_with_the_fourth_model(fourth, full_mnist) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    torch.manual_seed(0)
    config = BoxedConfig(code_size=3)
    ckpt = Checkpoint(model_config=config, state_dict=BoxedAutoencoder(config).state_dict())
    at.file_uploader(key="checkpoint_upload").set_value(("boxed.pt", checkpoint.to_bytes(ckpt),
                                                         "application/octet-stream")).run()
    assert not at.exception and at.selectbox(key="model_select").value == "Uploaded: boxed.pt"
    return at


def picture_alts(at) -> list[str]:
    """What each picture of the page shows, in words (the prior's samples and the traversal are pictures)."""
    return [picture.alt for picture in shown_pictures(at)]


def test_the_home_page_shows_its_prior_samples_traversal_and_score(app_with_the_fourth_model):
    at = app_with_the_fourth_model
    assert any("Boxed sparse autoencoder" in c.value for c in at.sidebar.caption)
    assert any("New digits from the prior" in h.value for h in at.subheader)
    assert any("drawn from U(-1, 1) in each code number, seed 0" in alt for alt in picture_alts(at))
    at.session_state["canvas-0"] = canvas_state(canvas(SEVEN))
    at.run()
    assert not at.exception
    assert any("code number 0 swept from -1 to 1" in alt for alt in picture_alts(at))
    (shown,) = [m for m in at.metric if m.label == "Code numbers in use"]
    assert shown.value.endswith(" %") and 0 <= float(shown.value.split()[0]) <= 100


def test_the_how_it_works_page_looks_inside_it(app_with_the_fourth_model):
    at = app_with_the_fourth_model
    at.switch_page("pages/2_How_it_works.py").run()
    assert not at.exception
    differences = [float(m.value) for m in at.metric if "max difference" in m.label]
    assert len(differences) == 2 and all(0 <= d < 1e-5 for d in differences)
