"""The command lines, run as a person runs them, on real MNIST; includes the shipped model's quality bar."""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT


def cli(*args, env_dir, cwd=ROOT):
    env = {**os.environ, "CAE_DATA_DIR": str(env_dir)}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_train_dry_run_writes_a_checkpoint_that_evaluate_scores(mnist_dir, tmp_path):
    out = tmp_path / "dry.pt"
    done = cli("cae.train", "--dry-run", "--code-size", "8", "--no-tied-weights", "--out", str(out),
               "--no-progress", env_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert summary["checkpoint"] == str(out) and 0 < summary["test_mse"] < 0.3
    scored = cli("cae.evaluate", str(out), "--dry-run", env_dir=mnist_dir)
    assert scored.returncode == 0, scored.stderr
    result = last_json(scored.stdout)
    assert result["code_size"] == 8 and result["count"] == 500 and result["source"] == "MNIST"
    assert result["pca_mse"] > 0


def test_the_shipped_default_beats_half_of_pca_on_all_10000_test_digits(mnist_dir):
    done = cli("cae.evaluate", env_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["count"] == 10000 and result["source"] == "MNIST" and result["code_size"] == 32
    assert abs(result["pca_mse"] - 0.0168) < 0.0005  # the reference figure for PCA-32
    assert result["test_mse"] <= 0.5 * result["pca_mse"]


def test_reconstruct_writes_one_image_per_input(mnist, mnist_dir, tmp_path):
    images = mnist.val_images[:6].numpy() / 255.0
    np.save(tmp_path / "in.npy", images)
    done = cli("cae.evaluate", "--reconstruct", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"),
               env_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (6, 28, 28) and out.min() >= 0 and out.max() <= 1
    assert ((out - images) ** 2).mean() < 0.02


def test_bad_inputs_get_one_clear_line(mnist_dir, tmp_path):
    np.save(tmp_path / "bad.npy", np.full((2, 28, 28), 255.0))
    done = cli("cae.evaluate", "--reconstruct", str(tmp_path / "bad.npy"), str(tmp_path / "o.npy"), env_dir=mnist_dir)
    assert done.returncode == 1 and "values in [0, 1]" in done.stderr and not (tmp_path / "o.npy").exists()
    (tmp_path / "notes.pt").write_text("hello")
    done = cli("cae.evaluate", str(tmp_path / "notes.pt"), env_dir=mnist_dir)
    assert done.returncode == 1 and "not a readable checkpoint" in done.stderr
    done = cli("cae.train", "--code-size", "0", env_dir=mnist_dir)
    assert done.returncode == 2 and "code_size must be between 1 and 256" in done.stderr
    done = cli("cae.train", "--dry-run", "--out", str(tmp_path), env_dir=mnist_dir)  # a folder: found before training
    assert done.returncode == 2 and "is a folder" in done.stderr and "steps of" not in done.stdout


def test_each_model_type_trains_from_the_command_line_and_evaluate_reports_its_scores(mnist_dir, tmp_path):
    vae, dae = tmp_path / "vae.pt", tmp_path / "dae.pt"
    done = cli("cae.train", "--model-type", "vae", "--beta", "0.5", "--code-size", "4", "--dry-run", "--out", str(vae),
               "--no-progress", env_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    assert "Variational autoencoder" in done.stdout and "nats per digit" in done.stdout
    done = cli("cae.train", "--model-type", "dae", "--noise", "mask", "--noise-amount", "0.3", "--dry-run",
               "--out", str(dae), "--no-progress", env_dir=mnist_dir)
    assert done.returncode == 0, done.stderr
    scored = last_json(cli("cae.evaluate", str(vae), "--dry-run", env_dir=mnist_dir).stdout)
    assert scored["model_type"] == "vae" and scored["test_elbo_nats"] > 100
    scored = last_json(cli("cae.evaluate", str(dae), "--dry-run", "--noise", "gaussian:0.5", env_dir=mnist_dir).stdout)
    assert scored["model_type"] == "dae" and scored["noise"] == "gaussian:0.5"
    assert abs(scored["noisy_psnr_db"] - 9.4) < 0.3  # the noisy input's PSNR the issue quotes
    assert "test_elbo_nats" not in scored
    sampled = cli("cae.evaluate", str(vae), "--sample", "7", str(tmp_path / "s.npy"), env_dir=mnist_dir)
    assert sampled.returncode == 0, sampled.stderr
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (7, 28, 28) and 0 <= samples.min() and samples.max() <= 1


def test_type_specific_mistakes_get_one_clear_line(mnist_dir, tmp_path):
    done = cli("cae.train", "--beta", "2", "--dry-run", env_dir=mnist_dir)
    assert done.returncode == 2 and "--beta does not apply to --model-type cae" in done.stderr
    done = cli("cae.evaluate", "--sample", "4", str(tmp_path / "s.npy"), env_dir=mnist_dir)
    assert done.returncode == 1 and "cannot sample new digits" in done.stderr and not (tmp_path / "s.npy").exists()
    done = cli("cae.evaluate", "--sample", "4", str(tmp_path / "s.npy"), "--noise", "gaussian:0.5", env_dir=mnist_dir)
    assert done.returncode == 2 and "not with --reconstruct or --sample" in done.stderr
    done = cli("cae.evaluate", "--dry-run", "--noise", "blur:0.5", env_dir=mnist_dir)
    assert done.returncode == 1 and "noise must be one of" in done.stderr
