"""Checkpoints: a faithful round trip, atomic writes, and a clear error for anything that is not ours."""

import io
import os
import pickle
import zipfile

import pytest
import torch

from cae import checkpoint
from cae.checkpoint import Checkpoint, CheckpointError
from cae.model import ConvAutoencoder, ModelConfig


def make(code_size: int = 8) -> Checkpoint:
    torch.manual_seed(0)
    model = ConvAutoencoder(ModelConfig(code_size=code_size))
    return Checkpoint(model_type="cae", model_config={"code_size": code_size, "dropout": 0.0,
                                                      "tied_weights": True, "activation": "tanh"},
                      state_dict=model.state_dict(), history={"train_loss": [0.1, 0.05]},
                      data_source="MNIST", metrics={"test_mse": 0.01})


def test_round_trip_keeps_weights_configs_history_and_versions(tmp_path):
    original = make()
    path = checkpoint.save(original, tmp_path / "sub" / "m.pt")
    loaded = checkpoint.load(path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(original.build_model()(x), loaded.build_model()(x))
    assert loaded.history == {"train_loss": [0.1, 0.05]} and loaded.metrics["test_mse"] == 0.01
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
    wrong_shape = make(8).to_dict() | {"model_config": make(16).model_config}
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
    assert ckpt.model_type == "cae" and ckpt.model_config["code_size"] == 32
    assert ckpt.data_source == "MNIST" and zipfile.is_zipfile(checkpoint.DEFAULT_CHECKPOINT)
