"""The command lines on real MNIST, called in-process as `main(argv)` (the shipped model's quality bar included),
and one `python -m cae.X` run of each (cae.train, cae.evaluate, cae.latent, cae.data) that proves it really starts.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from cae import evaluate, train
from cae.engine import checkpoint
from tests.conftest import ROOT


@dataclass(frozen=True)
class Done:
    """How a command line ended, as its process would: exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(full_mnist, capsys) -> Callable[..., Done]:
    """Call a command line's main() with string arguments, on full MNIST; argparse's own exits count too."""
    def call(main: Callable[[list[str]], int], *argv: str) -> Done:
        try:
            code = main(list(argv))
        except SystemExit as exit:  # argparse: a usage error exits with status 2
            code = 0 if exit.code is None else exit.code
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return call


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow  # the run's end checks all 10,000 test digits; PCA on all 60,000 training digits
def test_train_dry_run_writes_a_checkpoint_that_evaluate_scores(run, tmp_path):
    out = tmp_path / "dry.pt"
    done = run(train.main, "--dry-run", "--code-size", "8", "--no-tied-weights", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert summary["checkpoint"] == str(out) and 0 < summary[checkpoint.SCORE] < 0.3
    scored = run(evaluate.main, str(out), "--dry-run")
    assert scored.returncode == 0, scored.stderr
    result = last_json(scored.stdout)
    assert result["code_size"] == 8 and result["count"] == 500 and result["source"] == "MNIST"
    assert result["pca_mse"] > 0


@pytest.mark.slow  # scores all 10,000 test digits and fits PCA on all 60,000 training digits
def test_the_shipped_default_beats_half_of_pca_on_all_10000_test_digits(run):
    done = run(evaluate.main)
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["count"] == 10000 and result["source"] == "MNIST" and result["code_size"] == 32
    assert abs(result["pca_mse"] - 0.0168) < 0.0005  # the reference figure for PCA-32
    assert result[checkpoint.SCORE] <= 0.5 * result["pca_mse"]


def test_reconstruct_writes_one_image_per_input(run, mnist, tmp_path):
    images = mnist.val_images[:6].numpy() / 255.0
    np.save(tmp_path / "in.npy", images)
    done = run(evaluate.main, "--reconstruct", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"reconstructed": 6, "out": str(tmp_path / "out.npy")}
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (6, 28, 28) and out.min() >= 0 and out.max() <= 1
    assert ((out - images) ** 2).mean() < 0.02


def test_bad_inputs_get_one_clear_line(run, tmp_path):
    np.save(tmp_path / "bad.npy", np.full((2, 28, 28), 255.0))
    done = run(evaluate.main, "--reconstruct", str(tmp_path / "bad.npy"), str(tmp_path / "o.npy"))
    assert done.returncode == 1 and "values in [0, 1]" in done.stderr and not (tmp_path / "o.npy").exists()
    (tmp_path / "notes.pt").write_text("hello")
    done = run(evaluate.main, str(tmp_path / "notes.pt"))
    assert done.returncode == 1 and "not a readable checkpoint" in done.stderr
    done = run(train.main, "--code-size", "0")
    assert done.returncode == 2 and "code_size must be between 1 and 256" in done.stderr
    done = run(train.main, "--dry-run", "--out", str(tmp_path))  # a folder: found before training
    assert done.returncode == 2 and "is a folder" in done.stderr and "steps of" not in done.stdout


@pytest.mark.slow  # two runs, each checking all 10,000 test digits at its end
def test_each_model_type_trains_from_the_command_line_and_evaluate_reports_its_scores(run, tmp_path):
    vae, dae = tmp_path / "vae.pt", tmp_path / "dae.pt"
    done = run(train.main, "--model-type", "vae", "--beta", "0.5", "--code-size", "4", "--dry-run", "--out", str(vae),
               "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "Variational autoencoder" in done.stdout and "nats per digit" in done.stdout
    done = run(train.main, "--model-type", "dae", "--noise", "mask", "--noise-amount", "0.3", "--dry-run",
               "--out", str(dae), "--no-progress")
    assert done.returncode == 0, done.stderr
    scored = last_json(run(evaluate.main, str(vae), "--dry-run").stdout)
    assert scored["model_type"] == "vae" and scored["held_out_elbo_nats"] > 100
    scored = last_json(run(evaluate.main, str(dae), "--dry-run", "--noise", "gaussian:0.5").stdout)
    assert scored["model_type"] == "dae" and scored["noise"] == "gaussian:0.5"
    assert abs(scored["noisy_psnr_db"] - 9.4) < 0.3  # the noisy input's PSNR the issue quotes
    assert "held_out_elbo_nats" not in scored and "held_out_own_noise_psnr_db" in scored  # its own score only
    sampled = run(evaluate.main, str(vae), "--sample", "7", str(tmp_path / "s.npy"))
    assert sampled.returncode == 0, sampled.stderr
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (7, 28, 28) and 0 <= samples.min() and samples.max() <= 1


def test_type_specific_mistakes_get_one_clear_line(run, tmp_path):
    done = run(train.main, "--beta", "2", "--dry-run")
    assert done.returncode == 2 and "--beta does not apply to --model-type cae" in done.stderr
    done = run(evaluate.main, "--sample", "4", str(tmp_path / "s.npy"))
    assert done.returncode == 1 and "cannot sample new digits" in done.stderr and not (tmp_path / "s.npy").exists()
    done = run(evaluate.main, "--sample", "4", str(tmp_path / "s.npy"), "--noise", "gaussian:0.5")
    assert done.returncode == 2 and "not with --reconstruct or --sample" in done.stderr
    done = run(evaluate.main, "--dry-run", "--noise", "blur:0.5")
    assert done.returncode == 1 and "noise must be one of" in done.stderr


# One real process per command line: `python -m` finds its entry point, prints, and exits with its status.

def python_m(module: str, *args: str, data_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_python_m_cae_train_really_starts(mnist_dir):
    """The entry point and its exit status; the dry run itself is tested in-process above."""
    done = python_m("cae.train", "--help", data_dir=mnist_dir)
    assert done.returncode == 0 and "--model-type" in done.stdout and "--dry-run" in done.stdout, done.stderr
    done = python_m("cae.train", "--beta", "2", "--dry-run", data_dir=mnist_dir)
    assert done.returncode == 2 and "--beta does not apply to --model-type cae" in done.stderr


@pytest.mark.slow
def test_python_m_cae_evaluate_really_starts(mnist, mnist_dir, tmp_path):
    np.save(tmp_path / "in.npy", mnist.val_images[:3].numpy() / 255.0)
    done = python_m("cae.evaluate", "--reconstruct", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"),
                    data_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["reconstructed"] == 3 and np.load(tmp_path / "out.npy").shape == (3, 28, 28)
    done = python_m("cae.evaluate", "--sample", "2", str(tmp_path / "s.npy"), data_dir=mnist_dir)
    assert done.returncode == 1 and done.stderr.startswith("error: ")  # the status a script would see


@pytest.mark.slow
def test_python_m_cae_latent_really_starts(mnist_dir, tmp_path):
    out = tmp_path / "map.npy"
    done = python_m("cae.latent", "--method", "pca", "--out", str(out), "--dry-run", data_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "python -m cae.latent ran nothing: does cae/latent.py call main() under __main__?"
    assert last_json(done.stdout)["count"] == 500 and np.load(out).shape == (500, 2)


@pytest.mark.slow
def test_python_m_cae_data_really_starts(tmp_path):
    done = python_m("cae.data", data_dir=tmp_path)  # an empty data folder: the embedded sample is in use
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(f"{tmp_path}: ") and "4,500 training" in done.stdout
    done = python_m("cae.data", "import", str(tmp_path / "nowhere"), data_dir=tmp_path)
    assert done.returncode == 1 and "missing" in done.stderr
