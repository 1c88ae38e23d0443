"""Checkpoints: a faithful round trip, atomic writes, a clear error for anything that is not ours, and a description
that tells a run stopped early from one that went to its end."""

import io
import os
import pickle
import zipfile

import pytest
import torch

from cae.engine import checkpoint
from cae.engine.checkpoint import Checkpoint, CheckpointError
from cae.engine.data import MnistData
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import Trainer
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.denoising import DenoisingConfig
from cae.models.registry import build_model
from cae.models.variational import VariationalConfig
from tests.conftest import ROOT

V1_FILE = ROOT / "tests" / "fixtures" / "v1_untied_code8.pt"  # written by `python -m cae.train` before model types


def make(code_size: int = 8) -> Checkpoint:
    torch.manual_seed(0)
    model = ConvAutoencoder(ModelConfig(code_size=code_size))
    return Checkpoint(model_config=ModelConfig(code_size=code_size), state_dict=model.state_dict(),
                      history={"train_loss": [0.1, 0.05]}, data_source="MNIST",
                      metrics={checkpoint.SCORE: 0.01, "evaluated_on": "10,000 test digits"})


def test_round_trip_keeps_weights_configs_history_and_versions(tmp_path):
    original = make()
    path = checkpoint.save(original, tmp_path / "sub" / "m.pt")
    loaded = checkpoint.load(path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(original.build_model()(x), loaded.build_model()(x))
    assert loaded.history == {"train_loss": [0.1, 0.05]} and loaded.held_out_mse == 0.01
    assert loaded.versions["torch"] == str(torch.__version__) and loaded.data_source == "MNIST"
    assert checkpoint.load(checkpoint.to_bytes(original)).model_config == original.model_config
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = checkpoint.save(make(8), tmp_path / "m.pt")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        checkpoint.save(make(16), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.pt"]


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cae-explorer-pwned",))


def foreign_files(tmp_path):
    good = checkpoint.to_bytes(make())
    buffer = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(3)}, buffer)  # a plain state_dict from elsewhere
    wrong_shape = make(8).to_dict() | {"model_config": make(16).to_dict()["model_config"]}
    nan = make().to_dict()
    nan["state_dict"] = {k: v.clone().fill_(float("nan")) for k, v in nan["state_dict"].items()}
    pickled_code = io.BytesIO()
    torch.save({"format": "cae-explorer-checkpoint", "payload": Exploit()}, pickled_code)
    files = {
        "truncated": good[: len(good) // 2],
        "random": os.urandom(4096),
        "text": b"just some notes, renamed to .pt\n",
        "empty": b"",
        "state_dict": buffer.getvalue(),
        "plain pickle": pickle.dumps({"format": "cae-explorer-checkpoint"}),
        "code": pickled_code.getvalue(),
    }
    for name, raw in {"wrong shape": wrong_shape, "nan": nan,
                      "unknown type": make().to_dict() | {"model_type": "gan"},
                      "newer version": make().to_dict() | {"version": 99},
                      "bad config": make().to_dict() | {"model_config": {"code_size": -1}}}.items():
        out = io.BytesIO()
        torch.save(raw, out)
        files[name] = out.getvalue()
    return files


@pytest.mark.parametrize("kind", ["truncated", "random", "text", "empty", "state_dict", "plain pickle", "code",
                                  "wrong shape", "nan", "unknown type", "newer version", "bad config"])
def test_corrupt_truncated_or_foreign_files_raise_a_clear_error(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    path.write_bytes(foreign_files(tmp_path)[kind])
    with pytest.raises(CheckpointError) as raised:
        checkpoint.load(path)
    message = str(raised.value)
    assert str(path) in message and "Traceback" not in message
    assert not os.path.exists("/tmp/cae-explorer-pwned")  # no code from the file ever ran


def test_a_missing_file_and_an_upload_name(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="upload.pt"):
        checkpoint.load(b"not a checkpoint", name="upload.pt")


def test_the_shipped_default_loads():
    ckpt = checkpoint.load(checkpoint.DEFAULT_CHECKPOINT)
    assert ckpt.model_type == "cae" and ckpt.model_config == ModelConfig(code_size=32)
    assert ckpt.data_source == "MNIST" and zipfile.is_zipfile(checkpoint.DEFAULT_CHECKPOINT)


@pytest.mark.parametrize("path", [*checkpoint.PRETRAINED.values(), V1_FILE], ids=lambda path: path.name)
def test_a_score_stored_under_its_old_name_loads_under_todays(path):
    raw = torch.load(path, weights_only=True)["metrics"]
    assert "test_mse" in raw and checkpoint.SCORE not in raw  # written before the score had today's name
    ckpt = checkpoint.load(path)
    assert ckpt.held_out_mse == ckpt.metrics[checkpoint.SCORE] == raw["test_mse"] and "test_mse" not in ckpt.metrics
    assert f"Held-out MSE per pixel {raw['test_mse']:.4f} on {raw['evaluated_on']}" in ckpt.describe()
    resaved = torch.load(io.BytesIO(checkpoint.to_bytes(ckpt)), weights_only=True)["metrics"]
    assert resaved[checkpoint.SCORE] == raw["test_mse"] and "test_mse" not in resaved  # saved under today's name


def test_todays_score_wins_over_an_old_name_and_must_be_a_number():
    both = make().to_dict()
    both["metrics"] = {checkpoint.SCORE: 0.02, "test_mse": 0.5}
    unscored = Checkpoint(model_config=make().model_config, state_dict=make().state_dict)
    assert checkpoint.load(checkpoint.to_bytes(unscored)).held_out_mse is None
    out = io.BytesIO()
    torch.save(both, out)
    assert checkpoint.load(out.getvalue()).held_out_mse == 0.02
    for name in (checkpoint.SCORE, "test_mse"):
        bad = make().to_dict()
        bad["metrics"] = {name: "0.01"}
        out = io.BytesIO()
        torch.save(bad, out)
        with pytest.raises(CheckpointError, match=f"its {name} is not a number"):
            checkpoint.load(out.getvalue())


def test_a_checkpoint_written_before_model_types_still_loads_and_works():
    raw = torch.load(V1_FILE, weights_only=True)
    assert raw["version"] == 1 and raw["model_type"] == "cae"  # the file really is of the old format
    ckpt = checkpoint.load(V1_FILE)
    assert ckpt.model_config == ModelConfig(code_size=8, tied_weights=False)
    assert isinstance(ckpt.train_config, TrainConfig) and ckpt.train_config.loss == "bce"
    model = ckpt.build_model()
    assert model.encode(torch.rand(2, 1, 28, 28)).shape == (2, 8)
    assert torch.equal(model.deconv1_w, raw["state_dict"]["deconv1_weight"])  # its own untied weights, not fresh
    again = checkpoint.load(checkpoint.to_bytes(ckpt))  # re-saved in today's format, the same model
    assert again.model_config == ckpt.model_config and torch.load(
        io.BytesIO(checkpoint.to_bytes(ckpt)), weights_only=True)["version"] == checkpoint.VERSION


@pytest.mark.parametrize("config", [DenoisingConfig(code_size=4, noise="mask", noise_amount=0.3),
                                    VariationalConfig(code_size=6, beta=2.5, tied_weights=False)])
def test_each_model_type_keeps_its_type_and_objective_settings(config):
    torch.manual_seed(0)
    model = build_model(config)
    ckpt = Checkpoint(model_config=config, state_dict=model.state_dict(), train_config=TrainConfig(epochs=3))
    loaded = checkpoint.load(checkpoint.to_bytes(ckpt))
    assert loaded.model_config == config and type(loaded.build_model()) is type(model)
    assert loaded.train_config == TrainConfig(epochs=3)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded.build_model()(x), model.eval()(x))


def mnist_slice(mnist) -> MnistData:
    """640 training digits (10 steps an epoch at batch 64) and 200 validation digits: a run in a second."""
    return MnistData(mnist.source, mnist.train_images[:640], mnist.train_labels[:640], mnist.val_images[:200],
                     mnist.val_labels[:200])


def run_then_stop(mnist, steps: int) -> Trainer:
    trainer = Trainer(ModelConfig(code_size=8), TrainConfig(epochs=4, batch_size=64), mnist_slice(mnist))
    for _ in range(steps):
        trainer.step()
    trainer.stop()
    return trainer


def test_a_run_stopped_in_its_first_epoch_says_so_once_saved_and_loaded(mnist, tmp_path):
    trainer = run_then_stop(mnist, 3)
    loaded = checkpoint.load(checkpoint.save(trainer.checkpoint(), tmp_path / "stopped.pt"))
    lines = loaded.describe().split("  \n")
    assert lines[-2] == f"trained on MNIST: {trainer.config.describe()}"  # the plan ...
    assert lines[-1].startswith("stopped after 3 ") and lines[-1].endswith(" (epoch 1 of 4)")  # ... and how far it went


def test_the_planned_steps_come_from_the_file_or_from_the_first_epochs_check(mnist):
    trainer = run_then_stop(mnist, 13)  # in epoch 2: the first check came after one epoch's 10 steps
    assert trainer.history.val_step == [10]
    ckpt = checkpoint.load(checkpoint.to_bytes(trainer.checkpoint()))
    assert ckpt.ended_early() == "stopped after 13 of 40 steps (epoch 2 of 4)"
    assert "MSE per pixel" in ckpt.describe() and "Held-out" not in ckpt.describe()  # an old check, not a score
    at_an_epochs_end = checkpoint.load(checkpoint.to_bytes(run_then_stop(mnist, 20).checkpoint()))
    assert at_an_epochs_end.ended_early() == "stopped after 20 of 40 steps (at the end of epoch 2 of 4)"
    first_epoch = run_then_stop(mnist, 3).checkpoint()
    first_epoch.metrics["total_steps"] = 40  # a file that holds its plan
    planned = checkpoint.load(checkpoint.to_bytes(first_epoch))
    assert planned.ended_early() == "stopped after 3 of 40 steps (epoch 1 of 4)"


def test_a_run_that_went_to_its_end_says_nothing_of_stopping(mnist):
    trainer = Trainer(ModelConfig(code_size=8), TrainConfig(epochs=2, batch_size=128), mnist_slice(mnist))
    while not trainer.finished:
        trainer.step()
    ckpt = checkpoint.load(checkpoint.to_bytes(trainer.checkpoint()))
    assert ckpt.ended_early() is None and "stopped" not in ckpt.describe()
    assert ckpt.describe().endswith(f"trained on MNIST: {trainer.config.describe()}")
    for path in checkpoint.PRETRAINED.values():  # the shipped models went to their ends too
        assert checkpoint.load(path).ended_early() is None
