"""The code space's functions: maps and their placement of new codes, neighbours, interpolation, grids, map jobs."""

import json
import threading
import time

import numpy as np
import pytest
import torch

import cae.views.latent_maps
from cae.engine import checkpoint
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.views import latent
from cae.views.latent_maps import MapJobs, TsneMap, fit_tsne, load_shipped_map


def blobs(per_blob: int = 100, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated clusters of codes, and which cluster each code is in."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (3, size))
    labels = np.repeat(np.arange(3), per_blob)
    return (centres[labels] + rng.normal(0, 1, (len(labels), size))).astype(np.float32), labels


@pytest.fixture(scope="module")
def small_tsne() -> tuple[TsneMap, np.ndarray]:
    codes, labels = blobs()
    return fit_tsne(codes, threads=1, exaggeration_steps=50, plain_steps=100), labels


def test_pca_map_shapes_and_placing_the_reference_again_gives_its_points():
    codes, _ = blobs(size=32)
    pca = latent.fit_pca(codes)
    assert pca.method == "pca" and pca.coords.shape == (300, 2) and 0 < pca.kept_variance <= 1
    assert pca.place(codes[:5]).shape == (5, 2)
    np.testing.assert_allclose(pca.place(codes), pca.coords, atol=1e-4)
    assert not pca.coords.flags.writeable  # shared by every visitor


def test_a_two_number_code_is_its_own_map():
    codes = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    plane = latent.fit_pca(codes)
    assert plane.method == "plane" and plane.kept_variance == 1
    np.testing.assert_allclose(plane.coords, codes, atol=1e-6)


def test_tsne_map_shape_keeps_clusters_and_places_a_new_code_among_its_nearest(small_tsne):
    tsne, labels = small_tsne
    assert tsne.coords.shape == (300, 2) and np.isfinite(tsne.coords).all()
    assert latent.knn_accuracy(tsne.coords, labels) > 0.95
    new = tsne.reference[7] + np.random.default_rng(2).normal(0, 0.3, tsne.reference.shape[1])
    placed = tsne.place(new[None])
    assert placed.shape == (1, 2)
    near, _ = latent.nearest(tsne.reference, new, 10)
    spread = np.ptp(tsne.coords, axis=0).max()
    assert np.linalg.norm(placed[0] - np.median(tsne.coords[near], axis=0)) < 0.1 * spread
    others = tsne.coords[labels != labels[7]]
    assert np.linalg.norm(others - placed[0], axis=1).min() > np.linalg.norm(placed[0] - tsne.coords[7])


def test_nearest_is_sorted_by_distance_leaves_out_the_digit_itself_and_matches_brute_force():
    codes, _ = blobs()
    indices, distances = latent.nearest(codes, codes[11], 8, exclude=11)
    assert 11 not in indices and len(indices) == 8
    assert np.all(np.diff(distances) >= 0)
    brute = np.argsort(np.linalg.norm(codes - codes[11], axis=1))[1:9]
    assert set(indices) == set(brute)
    np.testing.assert_allclose(distances, np.linalg.norm(codes[indices] - codes[11], axis=1), rtol=1e-5)


def test_interpolation_ends_decode_to_the_end_digits_reconstructions(mnist):
    model = checkpoint.load(checkpoint.DEFAULT_CHECKPOINT).build_model()
    images = mnist.val_images[:2].numpy().astype(np.float32) / 255
    codes = latent.encode_images(model, images)
    line = latent.interpolate_codes(codes[0], codes[1], 10)
    assert line.shape == (10, codes.shape[1])
    decoded = latent.decode_codes(model, line)
    with torch.no_grad():
        reconstructions = model(torch.from_numpy(images)[:, None])[:, 0].numpy()
    np.testing.assert_allclose(decoded[[0, -1]], reconstructions, atol=1e-5)
    blend = latent.blend_pixels(images[0], images[1], 10)
    np.testing.assert_allclose(blend[[0, -1]], images, atol=1e-6)
    np.testing.assert_allclose(blend[5], images[0] * 4 / 9 + images[1] * 5 / 9, atol=1e-6)


def test_slider_ranges_are_the_percentiles_and_the_grid_reads_like_the_map():
    codes = np.stack([np.arange(101, dtype=np.float32), np.zeros(101, np.float32)], 1)
    ranges = latent.code_ranges(codes)
    np.testing.assert_allclose(ranges[0], [1, 99])
    assert ranges[1][1] > ranges[1][0]  # a constant number still gets a usable slider
    grid = latent.grid_codes(np.array([[0.0, 1.0], [10.0, 20.0]]), size=3)
    np.testing.assert_allclose(grid[0], [0, 20])  # top left: lowest x, highest y
    np.testing.assert_allclose(grid[-1], [1, 10])


def test_the_manifold_tiles_one_decoded_image_per_grid_point():
    torch.manual_seed(0)
    model = ConvAutoencoder(ModelConfig(code_size=2)).eval()
    extent = np.array([[-1.0, 1.0], [-2.0, 2.0]])
    image = latent.manifold(model, extent, size=4)
    assert image.shape == (112, 112)
    second = latent.decode_codes(model, latent.grid_codes(extent, 4)[1:2])[0]
    np.testing.assert_allclose(image[:28, 28:56], second, atol=1e-6)
    with pytest.raises(ValueError):
        latent.manifold(ConvAutoencoder(ModelConfig(code_size=3)).eval(), extent)


def test_fingerprints_follow_the_weights_not_the_object():
    torch.manual_seed(0)
    first = ConvAutoencoder(ModelConfig(code_size=4)).eval()
    twin = ConvAutoencoder(ModelConfig(code_size=4)).eval()
    twin.load_state_dict(first.state_dict())
    assert latent.weights_fingerprint(first) == latent.weights_fingerprint(twin)
    with torch.no_grad():
        twin.encode_dense.bias.add_(1e-3)
    assert latent.weights_fingerprint(first) != latent.weights_fingerprint(twin)


def test_a_shipped_map_is_used_only_when_it_fits(tmp_path):
    codes, _ = blobs()
    path = tmp_path / "model.tsne.npy"
    np.save(path, np.ones((300, 2), np.float32))
    assert load_shipped_map(path, codes).coords.shape == (300, 2)
    assert load_shipped_map(path, codes[:10]) is None  # other digits
    assert load_shipped_map(tmp_path / "missing.npy", codes) is None


def test_map_jobs_make_each_map_once_even_when_asked_at_once():
    release, calls = threading.Event(), []

    def slow_fit(codes, progress):
        calls.append(len(codes))
        progress.fraction, progress.stage = 0.5, "half way"
        release.wait(10)
        return TsneMap(codes[:, :2].copy(), codes)

    jobs, codes = MapJobs(slow_fit), blobs()[0]
    started = [jobs.start("model-a", codes) for _ in range(3)]
    assert all(job is started[0] for job in started) and not started[0].finished
    release.set()
    deadline = time.time() + 10
    while not started[0].finished and time.time() < deadline:
        time.sleep(0.02)
    assert started[0].result is not None and calls == [300]
    assert jobs.start("model-a", codes) is started[0]


def test_jobs_beyond_the_limit_wait_their_turn_and_say_so():
    release, calls = threading.Event(), []

    def slow_fit(codes, progress):
        calls.append(progress)
        release.wait(10)
        return TsneMap(codes[:, :2].copy(), codes)

    jobs, codes = MapJobs(slow_fit, at_once=1), blobs()[0]
    first = jobs.start("model-a", codes)
    deadline = time.time() + 10
    while len(calls) < 1 and time.time() < deadline:
        time.sleep(0.02)
    second = jobs.start("model-b", codes)
    while second.progress.stage != cae.views.latent_maps.WAITING and time.time() < deadline:
        time.sleep(0.02)
    assert second.progress.stage == cae.views.latent_maps.WAITING
    time.sleep(0.3)  # the second job's fit must not have started while the first holds the only place
    assert calls == [first.progress] and not second.finished
    release.set()
    while not (first.finished and second.finished) and time.time() < deadline:
        time.sleep(0.02)
    assert first.result is not None and second.result is not None
    assert calls == [first.progress, second.progress]


def test_a_failed_job_says_why_and_is_tried_again():
    def failing(codes, progress):
        raise RuntimeError("no memory")

    jobs = MapJobs(failing)
    job = jobs.start("model-b", blobs()[0])
    deadline = time.time() + 10
    while not job.finished and time.time() < deadline:
        time.sleep(0.02)
    assert "no memory" in job.error
    assert jobs.start("model-b", blobs()[0]) is not job


def test_a_map_process_that_runs_too_long_is_stopped_and_says_so():
    with pytest.raises(RuntimeError, match=r"took more than 0.1 s and was stopped"):
        # starting the child takes longer than the timeout
        cae.views.latent_maps.fit_in_child(blobs()[0], cae.views.latent_maps.Progress(), timeout=0.1)


def test_the_real_job_runs_in_a_child_process_and_reports_progress():
    codes, labels = blobs(per_blob=70)
    job = MapJobs().start("model-c", codes)
    seen, deadline = set(), time.time() + 240
    while not job.finished and time.time() < deadline:
        seen.add(job.progress.stage.split(" ")[0])
        time.sleep(0.05)
    assert job.error is None, job.error
    assert job.result.coords.shape == (210, 2) and job.progress.fraction == 1.0
    assert "step" in seen  # progress came while it ran
    assert latent.knn_accuracy(job.result.coords, labels) > 0.95


def test_the_command_line_writes_the_map_of_the_validation_digits(full_mnist, mnist, tmp_path, capsys):
    from cae.latent import main

    out, codes_out = tmp_path / "map.npy", tmp_path / "codes.npy"
    started = time.perf_counter()
    assert main(["--method", "pca", "--out", str(out), "--save-codes", str(codes_out), "--score", "--dry-run"]) == 0
    elapsed = time.perf_counter() - started
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["method"] == "pca" and summary["count"] == 500 and summary["source"] == "MNIST"
    assert summary["code_size"] == 32 and summary["out"] == str(out)
    # Both times are parts of this call, in seconds (each rounded to 0.01).
    assert 0 <= summary["seconds"] and 0 < summary["encode_seconds"]
    assert summary["seconds"] + summary["encode_seconds"] <= elapsed + 0.01
    model = checkpoint.load(checkpoint.DEFAULT_CHECKPOINT).build_model()
    codes = latent.encode_images(model, mnist.val_images[:500])
    np.testing.assert_allclose(np.load(codes_out), codes, atol=1e-5)
    np.testing.assert_allclose(np.load(out), latent.fit_pca(codes).coords, atol=1e-4)  # row i is digit i
    assert summary["knn5_accuracy"] == round(latent.knn_accuracy(np.load(out), mnist.val_labels.numpy()[:500]), 4)
    assert 0.3 < summary["knn5_accuracy"] <= 1  # a PCA map: far from t-SNE, well above the 0.1 of chance
