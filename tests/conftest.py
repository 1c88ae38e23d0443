"""Shared fixtures and the suite's tiers.

Fixtures: full MNIST imported once per test session into a temporary data folder (never ../shared), and one
Streamlit server, started the README's way, that the browser tests share.

Tiers (markers declared in pyproject.toml): `browser` is given here to every test that uses `app_server`, and is
written on the cold-start test, which starts servers of its own; `slow` is written on the tests of this suite's own
files that take more than a few seconds, and given here by name (SLOW_ELSEWHERE) in files whose authors mark them
so. `bash tests/run.sh` runs everything (CI); `bash tests/run.sh -m "not browser and not slow"` is the quick tier.
The browser tests run last, so the shared server is up only while they run.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

# The app's own process settings, before anything loads torch: with OpenMP's default long spin after each parallel
# region, torch's idle threads took the cores from the page scripts and runs that tests drive in this process (about
# half the quick tier's time on a busy 2-core machine).
import cae.ui.appenv  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
# The four original MNIST files; CI has ../shared beside the clone. Override with CAE_MNIST_RAW.
MNIST_RAW = Path(os.environ.get("CAE_MNIST_RAW") or ROOT.parent / "shared" / "data" / "MNIST" / "raw")

# The shared server's grace for a closed tab's run (CAE_ORPHAN_SECONDS): its test waits seconds, not the 45 default.
BROWSER_ORPHAN_SECONDS = 5

# Tests of more than a few seconds (real training to the end, real-time waits, scoring all 10,000 test digits) in
# files whose authors mark them here.
SLOW_ELSEWHERE = {
    "test_train_page.py": {
        "test_start_then_the_loss_chart_gains_points_and_filters_are_drawn",
        "test_a_short_run_finishes_and_its_model_joins_the_choice_with_pca_beside_it",
        "test_pause_stop_and_reset",
        "test_reset_right_after_stop_keeps_the_stopped_model",
        "test_learning_rate_10_collapses_the_model_and_the_page_says_what_happened",
        "test_a_nan_mid_run_stops_with_the_message",
        "test_two_sessions_train_side_by_side_without_mixing",
        "test_a_short_vae_run_draws_its_kl_curve_and_joins_the_choice",
    },
    "test_checkpoint.py": {
        "test_the_planned_steps_come_from_the_file_or_from_the_first_epochs_check",
    },
    "test_learner_fixes.py": {
        "test_worst_first_scores_every_digit_and_turns_the_first_index_off",
    },
    "test_training.py": {
        "test_a_reader_is_let_in_between_steps_even_next_to_a_busy_python_thread",
        "test_a_session_that_comes_back_in_time_keeps_its_run",
        "test_a_snapshot_never_waits_for_the_step_in_flight",
    },
}


@pytest.hookimpl(tryfirst=True)  # before -m and -k deselect: the marks must be on when they choose
def pytest_collection_modifyitems(config, items) -> None:
    """Mark the browser and slow tests (see the module docstring) and move the browser tests to the end."""
    seen: dict[str, set[str]] = {}
    for item in items:
        module = item.path.name
        name = getattr(item, "originalname", item.name)  # without a parameter's id
        if "app_server" in item.fixturenames:
            item.add_marker(pytest.mark.browser)
        if name in SLOW_ELSEWHERE.get(module, ()):
            item.add_marker(pytest.mark.slow)
        seen.setdefault(module, set()).add(name)
    for module, names in SLOW_ELSEWHERE.items():
        missing = names - seen.get(module, names)
        if missing and len(seen.get(module, ())) > len(names):  # the whole file collected, yet a name is gone
            warnings.warn(pytest.PytestConfigWarning(
                f"conftest.SLOW_ELSEWHERE names tests {module} no longer has (renamed?): {sorted(missing)}"),
                stacklevel=2)
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)  # stable: file order kept


@pytest.fixture(autouse=True)
def runs_in_a_temporary_folder(tmp_path_factory, monkeypatch) -> Path:
    """Every test's run store (CAE_RUNS_DIR) is a folder of its own: nothing writes runs into the repo, and no
    test sees another's runs (nor a server database the developer's shell names in CAE_RUNS_DB)."""
    folder = tmp_path_factory.mktemp("runs")
    monkeypatch.setenv("CAE_RUNS_DIR", str(folder))
    monkeypatch.delenv("CAE_RUNS_DB", raising=False)
    return folder


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


@pytest.fixture(scope="session")
def app_server(mnist_dir, tmp_path_factory):
    """The app as the README starts it, on full MNIST, shared by the browser tests (each opens its own browser, so
    its own sessions); a closed tab's run stops after BROWSER_ORPHAN_SECONDS."""
    from cae.engine.runner import ORPHAN_SECONDS_VARIABLE
    from tests.browser import streamlit_server

    runs = tmp_path_factory.mktemp("server-runs")
    env = {ORPHAN_SECONDS_VARIABLE: str(BROWSER_ORPHAN_SECONDS), "CAE_RUNS_DIR": str(runs)}
    with streamlit_server(mnist_dir, env=env) as server:
        yield server
