"""End to end in Chromium: the server, started the README's way, is killed mid-run (SIGKILL to its whole process
group, as a crash or the kernel's OOM killer would) and started again on the same runs folder and port. At the same
address the run shows as "interrupted at step N", its last epoch's checkpoint is a usable model, and Resume
finishes the run with its loss curve continued from that checkpoint."""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from cae.engine.store import EndReason, RunRecord, RunStore, new_workspace_id
from cae.engine.train_config import PAGE_DEFAULTS
from tests.browser import (
    ROOT,
    SEVEN,
    button,
    choose,
    chromium,
    draw,
    free_port,
    readme_command,
    screenshot,
    wait_for_reconstruction,
    wait_images_loaded,
)

# A run of a few epochs of a few seconds each here: the store writes the loss every second, so the kill comes after
# a write that follows the first epoch's checkpoint, with an epoch to spare.
TRAINING_DIGITS = 5_000
EPOCHS = 3
STEPS_PER_EPOCH = math.ceil(TRAINING_DIGITS / PAGE_DEFAULTS.train.batch_size)
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH
PAGE_SECONDS = 120  # a page of a cold server on a busy 2-core machine
RUN_SECONDS = 300  # the run's seconds of training, stretched by whatever else the machine runs (10x seen)

_T = TypeVar("_T")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@dataclass(frozen=True)
class CrashableServer:
    url: str
    process: subprocess.Popen
    log: Path

    def crash(self) -> None:
        """SIGKILL to the server and every process it started, then reap it (a zombie's pid still looks alive)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@contextlib.contextmanager
def server_in_its_own_group(data_dir: Path, runs_dir: Path, port: int) -> Iterator[CrashableServer]:
    """The README's server (tests.browser.readme_command) on `port`, leading a process group of its own so that a
    test can kill it whole without killing itself; stopped with SIGTERM after, if still running."""
    env = {**os.environ, "CAE_DATA_DIR": str(data_dir), "CAE_RUNS_DIR": str(runs_dir), "PYTHONUNBUFFERED": "1"}
    log = Path(tempfile.NamedTemporaryFile(prefix="streamlit-crash-", suffix=".log", delete=False).name)
    with log.open("w") as output:
        process = subprocess.Popen(readme_command(port), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: healthy(url) or process.poll() is not None, 120, "the server answering its health check")
        assert process.poll() is None, f"streamlit exited: {log.read_text()[-2000:]}"
        yield CrashableServer(url, process, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(15)


def healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok"
    except OSError:
        return False


def until(condition: Callable[[], _T], seconds: float, what: str, *, every: float = 0.1,
          seen: Callable[[], str] | None = None) -> _T:
    """Ask `condition` until it gives something true, within `seconds`; returns that. `seen` says, on a timeout,
    what there was instead."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {seconds} s" + (f"; seen: {seen()}" if seen else ""))
        time.sleep(every)


def only_run(store: RunStore, workspace: str) -> RunRecord | None:
    records = store.list_runs(workspace)
    assert len(records) <= 1, [record.name for record in records]
    return records[0] if records else None


def set_slider(page, label: str, shown: str) -> None:
    """Move the sidebar slider labelled `label` with the keyboard (to its lowest value, then up) until its thumb
    shows `shown`; a value it does not offer fails at the slider's highest."""
    slider = page.locator('[data-testid="stSidebar"] [data-testid="stSlider"]').filter(has_text=label)
    thumb = slider.get_by_role("slider")
    if thumb.get_attribute("aria-valuetext") == shown:
        return
    thumb.press("Home")
    while (now := thumb.get_attribute("aria-valuetext")) != shown:
        if thumb.input_value() == thumb.get_attribute("max"):  # the thumb is an <input type=range>
            raise AssertionError(f"{label}: the slider does not offer {shown!r} (it ends at {now!r})")
        thumb.press("ArrowRight")
        page.wait_for_function("([thumb, before]) => thumb.getAttribute('aria-valuetext') !== before",
                               arg=[thumb.element_handle(), now], timeout=30_000)


def test_a_run_killed_with_its_server_is_interrupted_usable_and_resumes_to_its_end(
        mnist_dir, runs_in_a_temporary_folder):
    runs_dir = runs_in_a_temporary_folder
    workspace = new_workspace_id()
    port = free_port()
    with RunStore(root=runs_dir) as store, chromium() as browser:
        page = browser.new_page()
        with server_in_its_own_group(mnist_dir, runs_dir, port) as first:
            address = f"{first.url}/Train?w={workspace}"
            page.goto(address)
            button(page, "Start").wait_for(timeout=PAGE_SECONDS * 1000)
            set_slider(page, "Training digits", f"{TRAINING_DIGITS:,}")
            set_slider(page, "Epochs", str(EPOCHS))
            button(page, "Start").click()

            def written_past_an_epoch() -> RunRecord | None:
                """The running run once it has an epoch's checkpoint and loss points written after it (which the
                resumed run must replace, not keep); or in its last epoch without those, on a machine that trains
                an epoch in less than the store's second between writes."""
                record = only_run(store, workspace)
                epochs = [item.step for item in record.checkpoints if item.kind == "epoch"] if record else []
                if not epochs or (record.steps <= max(epochs) and max(epochs) < TOTAL_STEPS - STEPS_PER_EPOCH):
                    return None
                assert record.state == "running", f"the run ended before the kill: {record.status}"
                return record

            before = until(written_past_an_epoch, RUN_SECONDS, "a running run's steps past its epoch's checkpoint")
            first.crash()
        assert before.total_steps == TOTAL_STEPS, (before.total_steps, before.train_config)
        crashed_curve = store.loss_curve(workspace, before.id)

        with server_in_its_own_group(mnist_dir, runs_dir, port) as second:
            page.goto(address)
            shown = page.get_by_test_id("stMainBlockContainer").get_by_text(re.compile(r"interrupted at step \d+"))
            shown.wait_for(timeout=PAGE_SECONDS * 1000)
            interrupted = store.get_run(workspace, before.id)
            assert interrupted.state == "interrupted" and interrupted.end_reason is EndReason.INTERRUPTED
            epoch_step = max(item.step for item in interrupted.checkpoints if item.kind == "epoch")
            epoch = epoch_step // STEPS_PER_EPOCH
            assert epoch_step == epoch * STEPS_PER_EPOCH and epoch < EPOCHS, epoch_step
            step = int(re.search(r"interrupted at step (\d+)", shown.inner_text()).group(1))
            assert step == interrupted.steps >= epoch_step, (step, interrupted.steps, epoch_step)
            assert crashed_curve.steps == list(range(1, step + 1)), crashed_curve.steps
            page.get_by_text(f"(step {step:,} of {TOTAL_STEPS:,})").wait_for(timeout=30_000)
            screenshot(page, "crash-interrupted.png")

            # Its model: the last epoch's checkpoint, chosen in the model choice on the home page, rebuilds a digit.
            label = f"Saved: {interrupted.name} (interrupted at step {step})"
            page.locator('[data-testid="stSidebarNav"] a').first.click()
            page.get_by_text("Draw a digit on the black square").wait_for(timeout=PAGE_SECONDS * 1000)
            choose(page, "Model to use", label)
            page.get_by_text(f"Model: {label}").wait_for(timeout=30_000)
            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_text(f"at the end of epoch {epoch} of {EPOCHS}").wait_for(timeout=30_000)
            assert page.get_by_text("cannot be used").count() == 0
            draw(page, SEVEN)
            wait_for_reconstruction(page)
            mse = float(page.locator('[data-testid="stMetricValue"]').first.inner_text())
            assert 0 < mse < 0.3, mse
            wait_images_loaded(page)
            screenshot(page, "crash-model-on-home.png")

            page.locator('[data-testid="stSidebarNav"] a', has_text="Train").click()
            button(page, "Resume").click(timeout=PAGE_SECONDS * 1000)

            def ended_again() -> RunRecord | None:
                record = store.get_run(workspace, before.id)
                resumed = record.end_reason is not EndReason.INTERRUPTED  # reopened by Resume, or ended since
                return record if resumed and record.ended_at is not None else None

            def where_it_is() -> str:
                record = store.get_run(workspace, before.id)
                screenshot(page, "crash-failure.png")
                return f"{record.status}, step {record.steps}; server log: {second.log.read_text()[-3000:]}"

            finished = until(ended_again, RUN_SECONDS, "the resumed run's end", every=0.5, seen=where_it_is)
            page.get_by_text("The model of this run is in the sidebar").wait_for(timeout=PAGE_SECONDS * 1000)
            wait_images_loaded(page)
            screenshot(page, "crash-resumed-finished.png")
            log = second.log.read_text()
            assert "Traceback" not in log, log[-3000:]

        assert finished.state == "finished" and finished.end_reason is EndReason.FINISHED, finished.status
        assert finished.steps == finished.total_steps == TOTAL_STEPS
        final = [item for item in finished.checkpoints if item.kind == "final"]
        assert len(final) == 1 and final[0].exists and final[0].step == TOTAL_STEPS, finished.checkpoints
        # The curve goes on from the epoch's checkpoint: every step once, in order, and the same losses that the final
        # model's own history holds (the steps before the crash as the first server wrote them, the rest resumed).
        curve = store.loss_curve(workspace, before.id)
        assert finished.loss_stride == 1 and curve.steps == list(range(1, TOTAL_STEPS + 1)), curve.steps
        history = store.load_checkpoint(workspace, before.id, "final").history
        assert curve.loss == pytest.approx(history["train_loss"], rel=1e-6)
        # The steps before the checkpoint are the first server's points, kept; those it trained past the checkpoint are
        # trained again from the checkpoint's weights, optimizer state and random generators: the same losses.
        assert curve.loss[:epoch_step] == crashed_curve.loss[:epoch_step]
        assert curve.loss[epoch_step:step] == pytest.approx(crashed_curve.loss[epoch_step:step], rel=1e-4)
        # Not a new start: right after the resume the loss is far below the first steps' (a fresh model's).
        resumed = curve.loss[epoch_step:epoch_step + 5]
        assert sum(resumed) < 0.5 * sum(curve.loss[:5]), (curve.loss[:5], resumed)
        checks = store.validations(workspace, before.id)
        assert [check.step for check in checks] == [STEPS_PER_EPOCH * number for number in range(1, EPOCHS + 1)]
