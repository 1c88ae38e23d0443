"""The Compare runs page under AppTest: the workspace's runs, shipped models and PCA side by side (what differs
highlighted, scores with PSNR for every model and -ELBO where the type declares it), the figures, rename and delete
with a confirmation, a missing checkpoint left out with a message, and ten runs redrawn quickly once scored."""

import json
import time
from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from cae.engine import checkpoint
from cae.engine.data import SAMPLE
from cae.engine.metrics import COMPARISON_PSNR
from cae.engine.recording import COMPARISON_SCORES
from cae.engine.store import EndReason, RunStore, StepRow, Validation, new_workspace_id
from cae.ui import common as ui
from cae.views import compare
from tests.conftest import ROOT

PLAIN = "Pretrained default"
VAE = "Pretrained variational (VAE)"


def saved_run(store: RunStore, workspace: str, shipped: str, name: str, *,
              scores: dict | None = None, terms: bool = False) -> str:
    """A finished run made of a shipped model, with a short loss curve (and two terms) and two validation checks,
    and the scores it stored as it ended, if any."""
    ckpt = checkpoint.load(checkpoint.PRETRAINED[shipped])
    run_id = store.create_run(workspace, model_type=ckpt.model_type, model_config=ckpt.model_config,
                              train_config=ckpt.train_config, data_source="MNIST", name=name, total_steps=20).id
    rows = [StepRow(step, 0.1 / step, {"reconstruction": 0.08 / step, "kl": 0.02 / step} if terms else {}, step * 64)
            for step in range(1, 21)]
    store.append_steps(run_id, rows, validations=[Validation(10, 1, 0.05), Validation(20, 2, 0.04)])
    store.add_checkpoint(run_id, ckpt, "final", step=20, epoch=2)
    store.end_run(run_id, EndReason.FINISHED, scores=scores)
    return run_id


def compare_page(workspace: str, *, timeout: float = 120, chosen: list[str] | None = None) -> AppTest:
    """The Compare page in a new session at the workspace's address (with these models chosen, else its defaults)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.query_params[ui.WORKSPACE_PARAM] = workspace
    if chosen is not None:
        at.session_state["c_chosen"] = chosen
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
    monkeypatch.setattr(compare, "model_scores",
                        lambda *args, **kwargs: scored.append(args) or real_scores(*args, **kwargs))
    began = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - began
    assert not at.exception and len(table(at)) == 11
    assert scored == []  # every model's scores came from the cache: a redraw scores nothing again
    print(f"ten runs redrawn in {seconds:.2f} s")  # reported, not asserted: a figure, not a test


def stored(psnr: float, *, data_source: str = SAMPLE, step: int = 20) -> dict:
    """Scores as a run stores them when it ends (cae.engine.recording)."""
    return {"held_out_mse": 0.0123, COMPARISON_SCORES: {"digits": 500, "data_source": data_source, "step": step,
                                                        COMPARISON_PSNR: psnr}}


def only_run(workspace: str) -> list[str]:
    with RunStore() as store:
        return [compare.run_label(record) for record in store.list_runs(workspace)]


def test_a_run_that_stored_its_scores_is_not_scored_again_on_the_page(sample_data, monkeypatch):
    workspace = new_workspace_id()
    with RunStore() as store:
        saved_run(store, workspace, PLAIN, "scored as it ended", scores=stored(12.345))
    scored = []
    real_scores = compare.model_scores
    monkeypatch.setattr(compare, "model_scores",
                        lambda *args, **kwargs: scored.append(args) or real_scores(*args, **kwargs))
    at = compare_page(workspace, chosen=only_run(workspace))
    frame = table(at)
    assert frame.index[0].startswith("scored as it ended")
    assert frame[compare.PSNR_COLUMN].iloc[0] == 12.345 and frame[compare.MSE_COLUMN].iloc[0] == 0.0123
    assert scored == []  # read from the store: the page measured nothing


@pytest.mark.parametrize("other", [dict(data_source="MNIST"), dict(step=19)], ids=["other data", "other weights"])
def test_stored_scores_of_other_data_or_other_weights_are_measured_again(other):
    ckpt, model = ui.pretrained_model(PLAIN)
    assert compare.stored_scores(model, stored(12.3), data_source=SAMPLE, step=20)[compare.PSNR_COLUMN] == 12.3
    assert compare.stored_scores(model, stored(12.3, **other), data_source=SAMPLE, step=20) is None


def test_the_objective_terms_can_be_drawn_beside_the_total(sample_data):
    workspace = new_workspace_id()
    with RunStore() as store:
        saved_run(store, workspace, VAE, "two terms", scores=stored(11.0), terms=True)
    at = compare_page(workspace, chosen=only_run(workspace))
    terms = at.multiselect(key="c_terms")
    assert terms.options == [compare.TOTAL, "reconstruction", "kl"] and terms.value == [compare.TOTAL]
    terms.set_value([compare.TOTAL, "kl"]).run()
    assert not at.exception
    loss = next(json.loads(chart.proto.spec) for chart in at.get("plotly_chart")
                if "against digits seen" in json.loads(chart.proto.spec)["layout"]["title"]["text"])
    lines = {trace["name"]: trace["line"]["dash"] for trace in loss["data"]}
    label = only_run(workspace)[0]
    assert lines == {label: "solid", f"{label}: kl": "dot"}
    kl = next(trace for trace in loss["data"] if trace["name"].endswith(": kl"))
    assert kl["y"][-1] < 0.02  # the kl term's own values (0.02 / step, smoothed), not the total's


def test_a_run_can_be_downloaded_from_the_page(sample_data, monkeypatch):
    workspace = new_workspace_id()
    with RunStore() as store:
        run_id = saved_run(store, workspace, PLAIN, "to download", scores=stored(12.0))
    served = []
    real_load = MemoryMediaFileStorage.load_and_get_id
    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id",
                        lambda self, data, *args, **kwargs: served.append(data) or real_load(self, data, *args,
                                                                                               **kwargs))
    at = compare_page(workspace, chosen=only_run(workspace))
    button = at.get("download_button")
    assert [item.label for item in button] == ["Download"]
    downloaded = checkpoint.load(served[-1])
    with RunStore() as store:
        original = store.load_checkpoint(workspace, run_id)
    assert downloaded.model_config == original.model_config
    assert all((downloaded.state_dict[name] == tensor).all() for name, tensor in original.state_dict.items())
    assert not downloaded.training_state  # a model file: no optimizer state
