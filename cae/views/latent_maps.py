"""The nonlinear map of the codes (t-SNE, by openTSNE), placing new codes on it, and the server's map jobs.

Why t-SNE by openTSNE (measured, figures in docs/benchmarks.md): on the default model's 10,000 codes its map keeps the
codes' neighbourhoods as well as the 32-number codes themselves (5-NN accuracy), and its FFT gradients scale
linearly in the number of digits, with half its default steps enough (see below).

Placing a new code follows openTSNE's own `transform` (its defaults: 25 neighbours, perplexity 5, start at their
median, 250 steps against the fixed map), with the repulsion from the map's points computed exactly: one new code
needs no FFT grid, and openTSNE's grid over the whole map took seconds per point here.

`MapJobs` makes each model's map once per server, in a child process followed by a thread, so no visitor's
page waits for it (see fit_in_child); a few at a time, so that a class asking for maps of their own models at once
does not start a process per visitor on a machine with two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cae.engine.run_queue import RunQueue, default_places

PERPLEXITY = 30  # openTSNE's default
# Half openTSNE's default steps (250 + 500): the same 5-NN accuracy on 10,000 codes at well under half the CPU
# time (measured; docs/benchmarks.md).
EXAGGERATION_STEPS = 125
PLAIN_STEPS = 250
REPORT_EVERY = 25  # steps between progress reports (each also publishes the map so far)
CHILD_NICENESS = 5  # the map's process gives way to the server's pages (10 starved it on a busy machine)
CHILD_TIMEOUT_SECONDS = 900.0  # a map of 10,000 codes takes about 30 s; a process still going after this is stuck
WAITING = "waiting for another model's map to finish (the server makes a few at a time)"
NEIGHBOURS_SHARE = 0.1  # of the progress bar: the neighbour search before the first step


def _read_only(array: np.ndarray) -> np.ndarray:
    """Finished maps are shared by every visitor: make writing to them an error."""
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class TsneMap:
    """A t-SNE map of reference codes, and the rule that places new codes on it."""

    coords: np.ndarray  # (N, 2)
    reference: np.ndarray  # (N, D) the codes the map was made from
    method: str = "tsne"

    def place(self, codes: np.ndarray, *, neighbours: int = 25, perplexity: float = 5.0,
              steps: int = 250) -> np.ndarray:
        """(B, D) new codes -> (B, 2): openTSNE's transform, with exact repulsion from the fixed map."""
        codes = np.asarray(codes, np.float64).reshape(-1, self.reference.shape[1])
        reference = self.reference.astype(np.float64)
        squared = ((codes[:, None, :] - reference[None]) ** 2).sum(-1)  # (B, N)
        count = min(neighbours, len(reference))
        near = np.argsort(squared, axis=1)[:, :count]  # (B, k)
        weights = _perplexity_weights(np.take_along_axis(squared, near, 1), perplexity)
        coords = self.coords.astype(np.float64)
        placed = np.median(coords[near], axis=1)  # (B, 2)
        return _refine(placed, coords, near, weights, steps).astype(np.float32)


def _perplexity_weights(squared: np.ndarray, perplexity: float) -> np.ndarray:
    """(B, k) squared distances -> (B, k) Gaussian weights summing to 1, each row of the given perplexity."""
    squared = squared - squared[:, :1]  # the nearest at 0: exp() never underflows to all zeros
    target = np.log(min(perplexity, squared.shape[1]))
    low, high = np.zeros(len(squared)), np.full(len(squared), np.inf)
    beta = np.ones(len(squared))
    for _ in range(64):  # bisection on the precision, all rows at once
        weights = np.exp(-squared * beta[:, None])
        weights /= weights.sum(1, keepdims=True)
        entropy = -(weights * np.log(np.maximum(weights, 1e-300))).sum(1)
        too_flat = entropy > target
        low = np.where(too_flat, beta, low)
        high = np.where(too_flat, high, beta)
        beta = np.where(np.isinf(high), beta * 2, (low + high) / 2)
    return weights


def _refine(placed: np.ndarray, coords: np.ndarray, near: np.ndarray, weights: np.ndarray, steps: int, *,
            learning_rate: float = 0.1, exaggeration: float = 1.5, momentum: float = 0.8,
            max_grad_norm: float = 0.25) -> np.ndarray:
    """Gradient descent on each new point's KL divergence, the map's points fixed (openTSNE's partial embedding).

    x and y apart, as (B, N) arrays: a third of the time of (B, N, 2) offsets.
    """
    map_x, map_y = coords[:, 0], coords[:, 1]
    near_x, near_y = map_x[near], map_y[near]  # (B, k)
    update = np.zeros_like(placed)
    gains = np.ones_like(placed)
    for _ in range(steps):
        offset_x, offset_y = placed[:, :1] - map_x, placed[:, 1:] - map_y  # (B, N)
        kernel = 1 / (1 + offset_x * offset_x + offset_y * offset_y)  # Student-t similarity
        squared = kernel * kernel
        total = kernel.sum(1)
        near_dx, near_dy = placed[:, :1] - near_x, placed[:, 1:] - near_y  # (B, k)
        pull = exaggeration * weights / (1 + near_dx * near_dx + near_dy * near_dy)
        gradient = np.stack([(pull * near_dx).sum(1) - (squared * offset_x).sum(1) / total,
                             (pull * near_dy).sum(1) - (squared * offset_y).sum(1) / total], 1)
        norm = np.linalg.norm(gradient, axis=1, keepdims=True)
        gradient *= np.minimum(1, max_grad_norm / np.maximum(norm, 1e-12))
        same_sign = np.sign(update) == np.sign(gradient)
        gains = np.maximum(np.where(same_sign, gains * 0.8, gains + 0.2), 0.01)
        update = momentum * update - learning_rate * gains * gradient
        placed = placed + update
    return placed


@dataclass
class Progress:
    """What a running map job has done, for a progress bar (written by the job's thread, read by pages)."""

    fraction: float = 0.0
    stage: str = "starting"
    preview: np.ndarray | None = None  # (N, 2) the map so far


Report = Callable[[float, str, "np.ndarray | None"], None]  # (fraction done, stage, the map so far)


def fit_tsne(codes: np.ndarray, *, report: Report | None = None, seed: int = 0, threads: int = 2,
             exaggeration_steps: int = EXAGGERATION_STEPS, plain_steps: int = PLAIN_STEPS) -> TsneMap:
    """openTSNE's t-SNE of the codes (PCA start; FFT gradients from 10,000 codes, Barnes-Hut below), calling
    `report` as it goes."""
    import openTSNE  # imported here: the PCA map and the plane never need it

    report = report or (lambda fraction, stage, preview: None)
    codes = np.ascontiguousarray(codes, np.float32)
    total = exaggeration_steps + plain_steps
    done = [0]

    def callback(iteration: int, error: float, embedding: np.ndarray) -> bool:
        done[0] = min(done[0] + REPORT_EVERY, total)
        report(NEIGHBOURS_SHARE + (1 - NEIGHBOURS_SHARE) * done[0] / total, f"step {done[0]} of {total}",
               np.asarray(embedding, np.float32))
        return False  # False: go on

    report(0.0, "finding each code's neighbours", None)
    tsne = openTSNE.TSNE(perplexity=min(PERPLEXITY, (len(codes) - 1) / 3), n_jobs=threads, random_state=seed,
                         early_exaggeration_iter=exaggeration_steps, n_iter=plain_steps,
                         callbacks=callback, callbacks_every_iters=REPORT_EVERY)
    embedding = np.asarray(tsne.fit(codes), np.float32)
    report(1.0, "done", embedding)
    return TsneMap(_read_only(embedding.copy()), _read_only(codes.copy()))


def shipped_map_path(checkpoint_path: Path, method: str) -> Path:
    """Where a shipped model's precomputed map lies: default.pt -> default.tsne.npy."""
    return checkpoint_path.with_suffix(f".{method}.npy")


def load_shipped_map(path: Path, reference: np.ndarray) -> TsneMap | None:
    """A precomputed map (written by `python -m cae.latent`) for these reference codes, or None if it does not fit."""
    if not path.is_file():
        return None
    coords = np.load(path, allow_pickle=False)
    if coords.shape != (len(reference), 2) or not np.isfinite(coords).all():
        return None
    return TsneMap(_read_only(coords.astype(np.float32)), _read_only(np.asarray(reference, np.float32).copy()))


def fit_in_child(codes: np.ndarray, progress: Progress, *, threads: int = 2,
                 timeout: float = CHILD_TIMEOUT_SECONDS) -> TsneMap:
    """fit_tsne in a child process at low priority (this module's command line), following its progress.

    A process, not a thread: openTSNE's neighbour search held the GIL for 3 s at a time here, which would
    freeze every visitor's page; and a niced process gives way to the server's pages on a small machine.
    """
    with tempfile.TemporaryDirectory(prefix="cae-map-") as folder:
        codes_path, out, preview = (Path(folder) / name for name in ("codes.npy", "map.npy", "preview.npy"))
        np.save(codes_path, np.asarray(codes, np.float32))
        with open(Path(folder) / "stderr.txt", "w+") as errors:
            child = subprocess.Popen([sys.executable, "-m", "cae.views.latent_maps", str(codes_path), str(out),
                                      "--threads", str(threads)], stdout=subprocess.PIPE,
                                     stderr=errors, text=True)
            # A stuck process must not keep its place in the queue for ever: other models' maps wait for it.
            killed = threading.Event()
            overdue = threading.Timer(timeout, lambda: (killed.set(), child.kill()))
            overdue.start()
            try:
                for line in child.stdout:
                    message = json.loads(line)
                    if message.get("preview"):
                        progress.preview = np.load(preview)
                    progress.fraction, progress.stage = message["fraction"], message["stage"]
                code = child.wait()
            finally:
                overdue.cancel()
            if killed.is_set():
                raise RuntimeError(f"the map's process took more than {timeout:g} s and was stopped")
            if code != 0:
                errors.seek(0)
                raise RuntimeError(f"the map's process failed: {errors.read()[-1000:]}")
        coords = np.load(out)
    return TsneMap(_read_only(coords), _read_only(np.asarray(codes, np.float32).copy()))


@dataclass
class MapJob:
    """One model's map being made; `result` or `error` once it has finished."""

    progress: Progress = field(default_factory=Progress)
    started: float = field(default_factory=time.perf_counter)
    seconds: float | None = None
    result: TsneMap | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None


class MapJobs:
    """The server's map jobs by model fingerprint: each map made at most once, never twice at once, and at most
    `at_once` maps at a time (the others wait, their stage says so).

    One instance per server (the page keeps it in st.cache_resource); a thread follows each job. Finished maps are
    read-only and shared; a failed job is started again by the next visitor who asks.
    """

    def __init__(self, fit: Callable[[np.ndarray, Progress], TsneMap] | None = None, *, keep: int = 16,
                 at_once: int | None = None):
        self._fit = fit  # None: fit_in_child, looked up when a job starts
        self._keep = keep  # finished maps kept; each is N x (D + 2) numbers
        self._lock = threading.Lock()
        self._jobs: dict[str, MapJob] = {}
        # Each job's process uses 2 threads: half the cores' worth of jobs fill the machine; more would only slow
        # every job (and every page) down. The others wait their turn, first come, first served.
        self._queue = RunQueue(default_places() if at_once is None else at_once)

    def get(self, fingerprint: str) -> MapJob | None:
        with self._lock:
            return self._jobs.get(fingerprint)

    def start(self, fingerprint: str, codes: np.ndarray, *, shipped: Path | None = None) -> MapJob:
        """The job for this model: the one already there (running or done), else a new one started now."""
        with self._lock:
            job = self._jobs.get(fingerprint)
            if job is not None and job.error is None:
                return job
            job = MapJob()
            ready = load_shipped_map(shipped, codes) if shipped is not None else None
            if ready is not None:
                job.result, job.seconds = ready, 0.0
                job.progress.fraction, job.progress.stage = 1.0, "shipped with the model"
            else:
                threading.Thread(target=self._run, args=(job, codes), daemon=True,
                                 name=f"code-map-{fingerprint}").start()
            self._jobs[fingerprint] = job
            self._forget_oldest()
            return job

    def _run(self, job: MapJob, codes: np.ndarray) -> None:
        if self._queue.counts()[0] >= self._queue.places:  # every place taken: say so while waiting for one
            job.progress.stage = WAITING
        ticket = object()  # the queue's token for this job (a MapJob, a dataclass, is not hashable)
        self._queue.wait_for_place(ticket)
        job.progress.stage = "starting"
        job.started = time.perf_counter()  # the seconds shown are the making, not the wait
        try:
            result = (self._fit or fit_in_child)(codes, job.progress)
        except Exception as error:  # noqa: BLE001  (shown on the page; the next visitor may try again)
            job.seconds = time.perf_counter() - job.started
            job.error = f"{type(error).__name__}: {error}"
            return
        finally:
            self._queue.release(ticket)
        job.seconds = time.perf_counter() - job.started  # first: a page that sees the result reads the seconds
        job.result = result

    def _forget_oldest(self) -> None:
        finished = [key for key, job in self._jobs.items() if job.finished]
        for key in finished[:max(0, len(self._jobs) - self._keep)]:
            del self._jobs[key]


def _child(argv: list[str] | None = None) -> int:
    """The child process of fit_in_child: CODES.npy -> OUT.npy, a JSON progress line at a time on stdout."""
    parser = argparse.ArgumentParser(prog="python -m cae.views.latent_maps")
    parser.add_argument("codes", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.nice(CHILD_NICENESS)
    preview = args.out.with_name("preview.npy")

    def report(fraction: float, stage: str, embedding: np.ndarray | None) -> None:
        if embedding is not None:
            np.save(preview.with_suffix(".part.npy"), embedding)
            os.replace(preview.with_suffix(".part.npy"), preview)  # the parent never reads half a file
        print(json.dumps({"fraction": round(fraction, 4), "stage": stage, "preview": embedding is not None}),
              flush=True)

    coords = fit_tsne(np.load(args.codes), report=report, threads=args.threads).coords
    np.save(args.out.with_suffix(".part.npy"), coords)
    os.replace(args.out.with_suffix(".part.npy"), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
