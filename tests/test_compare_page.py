"""The Compare runs page under AppTest: the workspace's runs, shipped models and PCA side by side (what differs
highlighted, scores with PSNR for every model and -ELBO where the type declares it), the figures, rename and delete
with a confirmation, a missing checkpoint left out with a message, and ten runs redrawn quickly once scored."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.engine import checkpoint
from cae.engine.store import EndReason, RunStore, StepRow, Validation, new_workspace_id
from cae.ui import common as ui
from cae.views import compare
from tests.conftest import ROOT

PLAIN = "Pretrained default"
VAE = "Pretrained variational (VAE)"


def saved_run(store: RunStore, workspace: str, shipped: str, name: str) -> str:
    """A finished run made of a shipped model, with a short loss curve and two validation checks."""
    ckpt = checkpoint.load(checkpoint.PRETRAINED[shipped])
    run_id = store.create_run(workspace, model_type=ckpt.model_type, model_config=ckpt.model_config,
                              train_config=ckpt.train_config, data_source="MNIST", name=name, total_steps=20).id
    store.append_steps(run_id, [StepRow(step, 0.1 / step, {}, step * 64) for step in range(1, 21)],
                       validations=[Validation(10, 1, 0.05), Validation(20, 2, 0.04)])
    store.add_checkpoint(run_id, ckpt, "final", step=20, epoch=2)
    store.end_run(run_id, EndReason.FINISHED)
    return run_id


def compare_page(workspace: str, *, timeout: float = 120) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.query_params[ui.WORKSPACE_PARAM] = workspace
    at.run()
    at.switch_page("pages/4_Compare.py").run()
    assert not at.exception, at.exception
    return at


def figure_titles(at) -> list[str]:
    return [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")]


def table(at):
    frame = at.dataframe[0].value
    return frame


@pytest.fixture
def sample_data(tmp_path, monkeypatch):
    """The offline sample (500 held-out digits): the page scores every model it shows, and what these tests check
    does not need 10,000 digits each."""
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "no-full-mnist"))


@pytest.fixture
def workspace(sample_data):
    workspace = new_workspace_id()
    with RunStore() as store:
        saved_run(store, workspace, PLAIN, "plain one")
        saved_run(store, workspace, VAE, "a vae")
    return workspace


@pytest.mark.slow  # scores three models on the held-out digits
def test_runs_shipped_models_and_pca_side_by_side_with_scores_and_figures(workspace):
    at = compare_page(workspace)
    chosen = at.multiselect(key="c_chosen").value
    assert len(chosen) == 3 and chosen[-1] == ui.DEFAULT_LABEL  # the two runs and the default model
    frame = table(at)
    assert len(frame) == 4 and frame.index[-1] == "PCA, 32 components"
    assert frame.index[0].startswith("a vae (finished)") and frame.index[1].startswith("plain one (finished)")
    assert frame["type"].iloc[0].startswith("Variational") and frame["type"].iloc[1].startswith("Autoencoder")
    assert frame["parameters"].iloc[1] > 0 and frame["steps"].iloc[0] == 20
    assert (frame[compare.MSE_COLUMN] > 0).all() and (frame[compare.MSE_COLUMN] < 0.2).all()
    assert frame[compare.PSNR_COLUMN].notna().all()  # every model, PCA included
    elbo = [name for name in frame.columns if "ELBO" in name]
    assert len(elbo) == 1 and frame[elbo[0]].notna().sum() == 1  # only the VAE declares it
    titles = figure_titles(at)
    assert any("against digits seen" in title for title in titles)
    assert any("per epoch" in title for title in titles)
    assert any("one row a model" in title for title in titles)


def test_the_settings_that_differ_are_found():
    rows = [{"model": "a", "type": "x", "code_size": 32, "lr": 1}, {"model": "b", "type": "x", "code_size": 2}]
    assert compare.differing_columns(rows) == ["code_size", "lr"]


@pytest.mark.slow  # scores three models on the held-out digits
def test_rename_and_delete_with_a_confirmation(workspace):
    at = compare_page(workspace)
    managed = at.selectbox(key="c_managed")
    target = next(option for option in managed.options if option.startswith("plain one"))
    managed.set_value(target).run()
    at.text_input(key="c_new_name").set_value("renamed run").run()
    at.button(key="c_rename").click().run()
    assert not at.exception
    with RunStore() as store:
        assert "renamed run" in [record.name for record in store.list_runs(workspace)]
    target = next(option for option in at.selectbox(key="c_managed").options if option.startswith("renamed run"))
    at.selectbox(key="c_managed").set_value(target).run()
    at.button(key="c_delete").click().run()
    assert any("for good" in warning.value for warning in at.warning)
    with RunStore() as store:
        assert len(store.list_runs(workspace)) == 2  # nothing deleted before the confirmation
    at.button(key="c_confirm").click().run()
    assert not at.exception
    with RunStore() as store:
        assert [record.name for record in store.list_runs(workspace)] == ["a vae"]


@pytest.mark.slow  # scores three models on the held-out digits
def test_a_run_whose_checkpoint_is_gone_is_left_out_with_a_message(workspace, runs_in_a_temporary_folder):
    for file in Path(runs_in_a_temporary_folder).rglob("final.pt"):
        file.unlink()
        break
    at = compare_page(workspace)
    assert any(warning.value.startswith("Left out:") for warning in at.warning)
    assert len(table(at)) == 3


@pytest.mark.slow
def test_ten_runs_redraw_quickly_once_scored(sample_data, monkeypatch):
    workspace = new_workspace_id()
    with RunStore() as store:
        for index in range(9):
            saved_run(store, workspace, PLAIN if index % 2 else VAE, f"run {index}")
    at = compare_page(workspace, timeout=600)  # the first draw scores ten models
    options = at.multiselect(key="c_chosen").options
    at.multiselect(key="c_chosen").set_value([option for option in options if option.startswith("run ")]
                                             + [ui.DEFAULT_LABEL]).run()
    assert not at.exception and len(table(at)) == 11  # ten models and PCA
    scored = []
    real_scores = compare.model_scores
    monkeypatch.setattr(compare, "model_scores", lambda *args: scored.append(args) or real_scores(*args))
    began = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - began
    assert not at.exception and len(table(at)) == 11
    assert scored == []  # every model's scores came from the cache: a redraw scores nothing again
    print(f"ten runs redrawn in {seconds:.2f} s")  # reported, not asserted: a figure, not a test
