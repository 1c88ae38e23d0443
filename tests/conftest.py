"""Shared fixtures: full MNIST imported once per test session into a temporary data folder (never ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The four original MNIST files; CI has ../shared beside the clone. Override with CAE_MNIST_RAW.
MNIST_RAW = Path(os.environ.get("CAE_MNIST_RAW") or ROOT.parent / "shared" / "data" / "MNIST" / "raw")


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A data folder holding full MNIST, imported through `cae.engine.data.import_mnist` (md5-checked)."""
    from cae.engine.data import import_mnist

    if not MNIST_RAW.is_dir():
        pytest.fail(f"full MNIST is needed for the tests: {MNIST_RAW} is missing (set CAE_MNIST_RAW)")
    root = tmp_path_factory.mktemp("data")
    import_mnist(MNIST_RAW, root)
    return root


@pytest.fixture
def full_mnist(mnist_dir, monkeypatch) -> Path:
    """Point CAE_DATA_DIR at the imported full MNIST for one test."""
    monkeypatch.setenv("CAE_DATA_DIR", str(mnist_dir))
    return mnist_dir


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from cae.engine.data import load_full_mnist

    return load_full_mnist(mnist_dir)
