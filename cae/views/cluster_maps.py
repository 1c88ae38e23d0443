"""The code space's t-SNE maps made on the Ray cluster (CAE_RAY_ADDRESS) instead of in a child process of the app.

`fit_on_cluster` has the shape MapJobs takes as its `fit` (cae.views.latent_maps): the map is made by a Ray task
on a worker (one CPU, openTSNE on one thread), which streams its progress and the map so far back as it goes, so
the page's progress bar and preview move as they do with the child process. Imported only where a cluster is
configured: it imports ray.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import ray

from cae.views.latent_maps import Progress, TsneMap, fit_tsne

TASK_CPUS = 1  # a worker of the class recipe has one CPU a run; a map takes one like a run does


def map_on_worker(codes: np.ndarray, threads: int) -> Iterator[dict[str, Any]]:
    """On a worker: fit_tsne in a thread, its reports yielded as they come, then the map's coordinates."""
    reports: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["map"] = fit_tsne(codes, threads=threads,
                                      report=lambda fraction, stage, preview: reports.put((fraction, stage, preview)))
        except Exception as error:  # raised again below, in the task, where Ray hands it to the caller
            outcome["error"] = error
        finally:
            reports.put(None)

    threading.Thread(target=fit, name="cae-tsne", daemon=True).start()
    while (report := reports.get()) is not None:
        fraction, stage, preview = report
        yield {"fraction": fraction, "stage": stage, "preview": preview}
    if "error" in outcome:
        raise outcome["error"]
    yield {"coords": outcome["map"].coords}


MAP_TASK = ray.remote(max_retries=0)(map_on_worker)  # a map that failed once would fail again: said, not retried


def fit_on_cluster(codes: np.ndarray, progress: Progress, *, threads: int = TASK_CPUS) -> TsneMap:
    """MapJobs' `fit` on the cluster: the map of `codes`, made by a Ray task, `progress` kept up to date."""
    codes = np.ascontiguousarray(codes, np.float32)
    coords = None
    for reference in MAP_TASK.options(num_cpus=threads).remote(codes, threads):
        message = ray.get(reference)
        if "coords" in message:
            coords = np.array(message["coords"], np.float32)
            break
        if message["preview"] is not None:
            progress.preview = np.array(message["preview"], np.float32)
        progress.fraction, progress.stage = message["fraction"], message["stage"]
    if coords is None:
        raise RuntimeError("the map's task ended without a map")
    reference_codes = codes.copy()
    for array in (coords, reference_codes):  # finished maps are shared by every visitor: read-only
        array.setflags(write=False)
    return TsneMap(coords, reference_codes)
