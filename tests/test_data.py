"""MNIST sources: import with md5 checks, the offline sample, and clear errors that change nothing."""

import gzip
import shutil
from urllib.error import URLError

import pytest
import torch

from cae import data as data_command
from cae.engine import data as cae_data
from cae.engine.data import (
    FULL,
    SAMPLE,
    DataError,
    has_full_mnist,
    import_mnist,
    load_full_mnist,
    load_mnist,
    load_sample,
)
from tests.conftest import MNIST_RAW


def test_imported_full_mnist_has_all_digits(mnist):
    assert mnist.source == FULL
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.val_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype == torch.uint8 and mnist.val_labels.dtype == torch.int64
    assert mnist.describe() == "full MNIST: 60,000 training and 10,000 test digits"


def test_the_files_read_with_numpy_are_the_tensors_torchvision_reads(mnist, mnist_dir):
    from torchvision.datasets import MNIST  # the reference only: the app reads the files without torchvision

    for train, images, labels in ((True, mnist.train_images, mnist.train_labels),
                                  (False, mnist.val_images, mnist.val_labels)):
        reference = MNIST(str(mnist_dir), train=train, download=False)
        assert images.dtype == reference.data.dtype and labels.dtype == reference.targets.dtype
        assert torch.equal(images, reference.data) and torch.equal(labels, reference.targets)
    assert mnist.train_images.is_contiguous() and mnist.train_images.numpy().flags.writeable


def test_a_file_with_a_wrong_header_is_named(tmp_path, mnist_dir):
    root = tmp_path / "data"
    shutil.copytree(mnist_dir / "MNIST", root / "MNIST")
    victim = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    victim.write_bytes(bytes([0, 0, 8, 3]) + victim.read_bytes()[4:])  # an image file's magic on the labels
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte is not an MNIST label file"):
        load_full_mnist(root)


def test_load_mnist_uses_the_data_folder_named_by_the_environment(full_mnist):
    assert has_full_mnist() and load_mnist().source == FULL


def test_without_full_mnist_the_embedded_sample_is_used_and_split_the_same_way(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path))
    first, again = load_mnist(), load_sample()
    assert first.source == SAMPLE and len(first.train_images) == 4500 and len(first.val_images) == 500
    assert torch.equal(first.val_images, again.val_images)
    assert first.train_images.max() == 255 and sorted(first.val_labels.unique().tolist()) == list(range(10))
    assert "4,500 training and 500 validation digits" in first.describe()
    assert list(tmp_path.iterdir()) == []  # looking for data writes nothing


def copy_raw(tmp_path):
    source = tmp_path / "raw"
    shutil.copytree(MNIST_RAW, source)
    return source


def test_a_truncated_file_is_named_and_nothing_is_written(tmp_path):
    source = copy_raw(tmp_path)
    name = "t10k-images-idx3-ubyte.gz"
    (source / name).write_bytes((source / name).read_bytes()[:5000])
    root = tmp_path / "data"
    with pytest.raises(DataError, match=name):
        import_mnist(source, root)
    assert not root.exists() or list(root.iterdir()) == []


def test_a_missing_file_is_named(tmp_path):
    source = copy_raw(tmp_path)
    (source / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is missing"):
        import_mnist(source, tmp_path / "data")


def test_a_failed_reimport_keeps_the_data_that_was_there(tmp_path, monkeypatch):
    good = copy_raw(tmp_path)
    root = tmp_path / "data"
    import_mnist(good, root)
    # A gzip member that passes the md5 check cannot be made here, so make gunzip fail instead.
    monkeypatch.setattr(gzip, "open", lambda *a, **k: (_ for _ in ()).throw(EOFError("cut short")))
    with pytest.raises(DataError, match="could not be unpacked"):
        import_mnist(good, root)
    assert [p.name for p in root.iterdir()] == ["MNIST"]  # no staging folder left behind
    assert load_full_mnist(root).train_images.shape == (60000, 28, 28)


def test_a_corrupt_unpacked_file_in_the_data_folder_is_named(tmp_path):
    root = tmp_path / "data"
    import_mnist(MNIST_RAW, root)
    victim = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is truncated"):
        load_full_mnist(root)


def test_download_without_network_fails_clearly_and_changes_nothing(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise URLError("no network here")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", no_network)
    with pytest.raises(DataError, match="download failed"):
        cae_data.download_mnist(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_data_command_line_import_and_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "d"))
    assert data_command.main([]) == 0  # nothing imported yet: the embedded sample
    status = capsys.readouterr().out
    assert status.startswith(f"{tmp_path / 'd'}: ") and "4,500 training" in status
    assert data_command.main(["import", str(tmp_path / "nowhere")]) == 1
    assert "missing" in capsys.readouterr().err
    assert data_command.main(["import", str(MNIST_RAW)]) == 0
    assert "full MNIST: 60,000 training" in capsys.readouterr().out
    assert data_command.main([]) == 0
    assert "full MNIST: 60,000 training" in capsys.readouterr().out
