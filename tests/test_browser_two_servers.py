"""Two app servers on one PostgreSQL run store (CAE_RUNS_DB), as a class's servers behind a proxy, in Chromium: a run
that the command line adds to a workspace is on the Compare page of both; renamed through one, the other shows the
new name; and neither server's start marks another machine's live run interrupted.

Both servers run on the offline sample (the Compare page scores on its 500 held-out digits) and share the checkpoint
folder (CAE_RUNS_DIR), as servers on several machines share it over the network.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cae.engine.store import RunStore, new_workspace_id
from cae.views.compare import run_label
from tests.browser import button, chromium_browsers, streamlit_server
from tests.conftest import ROOT
from tests.postgres import postgres_for_tests

RENAMED = "renamed on the first server"


@pytest.fixture(scope="module")
def postgres():
    yield from postgres_for_tests()


def compare_page(context, server, workspace: str):
    page = context.new_page()
    page.goto(f"{server.url}/Compare?w={workspace}")
    return page


def wait_for_chosen(page, label: str) -> None:
    """Until the page's choice of models holds `label` (the page chooses a workspace's runs by default)."""
    page.locator('[data-testid="stMultiSelect"]').filter(has_text=label).first.wait_for(timeout=180_000)


@pytest.mark.browser
def test_two_app_servers_on_one_postgresql_store_see_the_same_workspace(postgres, tmp_path):
    url = postgres.new_database()
    files = tmp_path / "runs"
    env = {"CAE_RUNS_DB": url, "CAE_RUNS_DIR": str(files)}
    workspace = new_workspace_id()
    # A teacher prepares a run for the class from the command line (one epoch on 512 digits).
    trained = subprocess.run(
        [sys.executable, "-m", "cae.train", "--dry-run", "--no-progress", "--workspace", workspace, "--name",
         "prepared for the class", "--out", str(tmp_path / "model.pt")],
        cwd=ROOT, env={**os.environ, **env, "CAE_DATA_DIR": str(tmp_path / "data")}, capture_output=True, text=True,
        timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    with RunStore(url, root=files) as store:
        (record,) = store.list_runs(workspace)
        assert record.state == "finished" and record.checkpoints
        # A run in flight on a third machine whose host has this one's name; its pid means nothing here.
        gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True, check=True).stdout)
        elsewhere = store.create_run(workspace, model_type="cae", model_config={}, train_config={},
                                     data_source="MNIST", owner=f"{socket.gethostname()}/{gone}/0000/0123456789abcdef")
    with (streamlit_server(tmp_path / "data", env=env) as first, streamlit_server(tmp_path / "data", env=env) as second,
          chromium_browsers(2) as (one, other)):
        pages = [compare_page(one, first, workspace), compare_page(other, second, workspace)]
        for page in pages:  # each server opened the store (and looked for interrupted runs) for this page
            wait_for_chosen(page, run_label(record))
        with RunStore(url, root=files) as store:
            assert store.get_run(workspace, elsewhere.id).state == "running"

        page = pages[0]
        manage = page.get_by_text("Rename, download or delete a run")
        manage.wait_for(timeout=180_000)  # below the table and figures, drawn once the models are scored
        assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id("stException").all_inner_texts()
        manage.click()
        page.get_by_label("New name").fill(RENAMED)
        button(page, "Rename").click()
        page.get_by_text(f"Renamed to {RENAMED!r}").wait_for(timeout=60_000)
        with RunStore(url, root=files) as store:
            renamed = store.get_run(workspace, record.id)
        assert renamed.name == RENAMED
        pages[1].reload()
        wait_for_chosen(pages[1], run_label(renamed))
    for server in (first, second):
        log = server.log.read_text()
        assert "Traceback" not in log, log[-3000:]
