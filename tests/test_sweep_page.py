"""The Train page's "Sweep one setting" under AppTest, on the embedded engine: a run per value through the server's
queue (two places for three runs), all shown, kept at the address, and the Compare page opens on the sweep's chart;
a bad value starts nothing; Stop sweep, or Reset, stops every run and each keeps its model. (On a Ray cluster:
tests/test_ray_engine.py.)"""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from cae.engine.store import EndReason, RunStore
from cae.ui import common as ui
from cae.views import compare
from tests.apptest import until
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # each test trains runs

SHORT = {"t_subset": 500, "t_batch": 64, "t_epochs": 1, "t_lr": 1e-3}  # 8 steps a run


@pytest.fixture(autouse=True)
def setup(tmp_path, monkeypatch):
    """The offline sample (a run's last check is 500 digits), and two places: the third run of a sweep waits."""
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "no-full-mnist"))
    monkeypatch.setenv("CAE_MAX_RUNS", "2")
    ui.run_queue.clear()
    yield
    ui.run_queue.clear()


def train_page(**settings) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/1_Train.py").run()
    for key, value in {**SHORT, **settings}.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def start_sweep(at: AppTest, setting: str, values: str | list) -> None:
    at.selectbox(key="t_sweep_setting").set_value(setting).run()
    field = {"Code size": "code_size", "Random seed": "seed"}[setting]
    at.text_input(key=f"t_sweep_values-{field}").set_value(values).run()
    at.button(key="t_sweep_start").click().run()
    assert not at.exception, at.exception


def sweep_runs(at: AppTest) -> list:
    return [handle for _, handle in at.session_state["t_sweep"].runs]


def test_a_code_size_sweep_trains_a_run_a_value_shows_them_all_and_the_compare_page_draws_it():
    at = train_page()
    workspace = at.query_params[ui.WORKSPACE_PARAM]
    start_sweep(at, "Code size", "2, 4, 8")
    handles = sweep_runs(at)
    assert [handle.model_config.code_size for handle in handles] == [2, 4, 8]
    # While it goes: nothing else starts, the settings stay, every run has a line and a curve.
    assert at.button(key="t_start").disabled and at.button(key="t_sweep_start").disabled
    assert at.slider(key="t_code").disabled
    assert [str(value) for value in at.dataframe[0].value["Code size"]] == ["2", "4", "8"]
    assert any(header.value.startswith("Sweep: 3 runs") for header in at.subheader)
    until(at, lambda: not any(handle.alive for handle in handles), seconds=180)
    at.run()
    rows = at.dataframe[0].value
    assert list(rows["state"]) == ["finished"] * 3 and list(rows["step"]) == ["8 of 8"] * 3
    assert any(header.value == "Sweep: 3 runs, ended" for header in at.subheader)
    loss = next(json.loads(chart.proto.spec) for chart in at.get("plotly_chart")
                if json.loads(chart.proto.spec)["layout"]["title"]["text"].startswith("Training loss against"))
    assert [trace["name"] for trace in loss["data"]] == ["2", "4", "8"]
    assert not at.button(key="t_start").disabled  # the page is free again

    with RunStore() as store:
        records = store.list_runs(workspace)
    assert sorted(record.model_config["code_size"] for record in records) == [2, 4, 8]
    assert all(record.state == "finished" and record.name.endswith(f"code_size={record.model_config['code_size']}")
               for record in records)
    saved = [option for option in at.selectbox(key="model_select").options if option.startswith(ui.SAVED_PREFIX)]
    assert len(saved) == 3  # every run's model is offered on every page

    compare_page = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    compare_page.query_params[ui.WORKSPACE_PARAM] = workspace  # nothing chosen: the newest sweep is the default
    compare_page.run()
    compare_page.switch_page("pages/4_Compare.py").run()
    assert not compare_page.exception, compare_page.exception
    titles = [json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in compare_page.get("plotly_chart")]
    assert "Held-out MSE against code_size" in titles
    by_size = {record.model_config["code_size"]: compare.run_label(record) for record in records}
    assert compare_page.multiselect(key="c_chosen").value == [by_size[2], by_size[4], by_size[8]]


def test_a_bad_value_says_which_and_starts_nothing():
    at = train_page()
    workspace = at.query_params[ui.WORKSPACE_PARAM]
    start_sweep(at, "Code size", "2, x")
    assert [error.value for error in at.error] == ["Not started: code size 'x' is not a number."]
    assert "t_sweep" not in at.session_state and not at.button(key="t_start").disabled
    with RunStore() as store:
        assert store.list_runs(workspace) == []


def seed_sweep_under_way() -> tuple[AppTest, str, list]:
    """A page whose sweep of two long runs has taken steps: the page, its workspace and the runs' handles."""
    at = train_page(t_epochs=50)
    workspace = at.query_params[ui.WORKSPACE_PARAM]
    start_sweep(at, "Random seed", "1, 2")
    handles = sweep_runs(at)
    until(at, lambda: all(handle.snapshot().step > 2 for handle in handles), seconds=120)
    return at, workspace, handles


def test_stop_sweep_stops_every_run_and_each_keeps_its_model():
    at, workspace, handles = seed_sweep_under_way()
    at.button(key="t_sweep_stop").click().run()
    until(at, lambda: not any(handle.alive for handle in handles), seconds=60)
    at.run()
    with RunStore() as store:
        records = store.list_runs(workspace)
    assert len(records) == 2
    assert all(record.end_reason is EndReason.USER and record.checkpoints for record in records)
    assert set(at.dataframe[0].value["state"]) == {"stopped"}


def test_reset_during_a_sweep_stops_its_runs_keeps_their_models_and_clears_the_page():
    at, workspace, handles = seed_sweep_under_way()
    assert not at.button(key="t_reset").disabled
    at.button(key="t_reset").click().run()
    assert not any(handle.alive for handle in handles)  # Reset waited for them
    assert "t_sweep" not in at.session_state and not at.button(key="t_start").disabled
    with RunStore() as store:
        records = store.list_runs(workspace)
    assert len(records) == 2 and all(record.end_reason is EndReason.USER and record.checkpoints
                                     for record in records)
