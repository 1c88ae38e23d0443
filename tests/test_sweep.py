"""Sweeping one setting: `python -m cae.sweep SETTING=V1,V2,...` (called in-process as main(argv), on the offline
sample of real MNIST digits) writes one run a value to the store, every value checked before the first run; the
Compare page finds the one setting the chosen runs differ in and draws their score against it, beside PCA at the
same code sizes for a code-size sweep."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from cae import sweep
from cae.engine.store import RunStore, new_workspace_id
from cae.ui import common as ui
from cae.views import compare
from tests.conftest import ROOT


@pytest.fixture
def sample_data(tmp_path, monkeypatch):
    """The offline sample (500 held-out digits): each run of the sweep scores itself in a second."""
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "no-full-mnist"))
    monkeypatch.chdir(tmp_path)  # the checkpoints go to runs/sweep-<time>/ under it


def run_sweep(capsys, *argv: str) -> tuple[int, list[dict], str]:
    """Exit status, the JSON lines printed (one a run), and what went to stderr."""
    try:
        code = sweep.main(list(argv))
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def runs_in(workspace: str) -> list:
    with RunStore() as store:
        return store.list_runs(workspace)


@pytest.mark.slow  # three runs
def test_a_code_size_sweep_writes_one_run_a_value_and_the_compare_page_draws_the_bottleneck_curve(
        sample_data, capsys):
    workspace = new_workspace_id()
    code, printed, _ = run_sweep(capsys, "code_size=2,4,8", "--dry-run", "--no-progress", "--workspace", workspace,
                                 "--name", "bottleneck")
    assert code == 0
    assert [line["sweep"] for line in printed] == [{"code_size": "2"}, {"code_size": "4"}, {"code_size": "8"}]
    assert all(line["run_id"] and line["store_problem"] is None and line["held_out_mse"] > 0 for line in printed)
    records = runs_in(workspace)
    assert sorted(record.model_config["code_size"] for record in records) == [2, 4, 8]
    assert {record.name for record in records} == {f"bottleneck: code_size={size}" for size in (2, 4, 8)}
    assert all(record.state == "finished" for record in records)

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params[ui.WORKSPACE_PARAM] = workspace
    at.session_state["c_chosen"] = [compare.run_label(record) for record in records]
    at.run()
    at.switch_page("pages/4_Compare.py").run()
    assert not at.exception, at.exception
    charts = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    swept = next(chart for chart in charts if chart["layout"]["title"]["text"] == "Held-out MSE against code_size")
    runs, pca = swept["data"]
    assert runs["x"] == [2, 4, 8] and pca["x"] == [2, 4, 8]
    by_size = {record.model_config["code_size"]: record.scores["held_out_mse"] for record in records}
    assert runs["y"] == pytest.approx([by_size[size] for size in (2, 4, 8)])
    assert pca["y"][0] > pca["y"][1] > pca["y"][2] > 0  # more components, less error
    assert any("bottleneck curve" in caption.value for caption in at.caption)


@pytest.mark.slow  # four runs
def test_a_sweep_of_the_model_type_and_of_a_switch(sample_data, capsys):
    workspace = new_workspace_id()
    code, printed, _ = run_sweep(capsys, "model_type=cae,vae", "--code-size", "4", "--dry-run", "--no-progress",
                                 "--workspace", workspace)
    assert code == 0 and len(printed) == 2
    assert sorted(record.model_type for record in runs_in(workspace)) == ["cae", "vae"]
    other = new_workspace_id()
    code, printed, _ = run_sweep(capsys, "tied_weights=true,false", "--dry-run", "--no-progress", "--workspace", other)
    assert code == 0
    assert sorted(record.model_config["tied_weights"] for record in runs_in(other)) == [False, True]


@pytest.mark.parametrize("argv, message", [
    (["code_size"], "SETTING=VALUE"),
    (["colour=1,2"], "the settings are"),
    (["code_size=8"], "at least two values"),
    (["code_size=8,8"], "lists a value twice"),
    (["tied_weights=true,maybe"], "true or false"),
    (["code_size=2,0"], "code_size"),  # the config's own range check, before any run starts
    (["code_size=2,4", "--code-size", "8"], "the setting swept"),
    (["beta=1,2"], "does not apply"),  # the default type has no beta
])
def test_a_bad_sweep_says_why_and_trains_nothing(sample_data, capsys, argv, message):
    workspace = new_workspace_id()
    code, printed, err = run_sweep(capsys, *argv, "--dry-run", "--no-progress", "--workspace", workspace)
    assert code == 2 and printed == []
    assert message in err
    assert runs_in(workspace) == []


def test_runs_that_differ_in_exactly_one_setting_are_a_sweep():
    ckpt, model = ui.pretrained_model("Pretrained default")

    def variant(**settings) -> compare.Candidate:
        changed = replace(ckpt, model_config=replace(ckpt.model_config, **settings))
        return compare.Candidate(str(settings), changed, model)

    base = compare.Candidate("base", ckpt, model)
    assert compare.sweep_of([base, variant(code_size=8), variant(code_size=64)]) == \
        compare.Sweep("code_size", [ckpt.model_config.code_size, 8, 64])
    assert compare.sweep_of([base, variant(code_size=8, dropout=0.5)]) is None  # two settings differ
    assert compare.sweep_of([base]) is None  # one model is no sweep
    pca = compare.Candidate("PCA", None, None, pca_components=8)
    assert compare.sweep_of([base, variant(code_size=8), pca]).setting == "code_size"  # PCA aside
    assert compare.highlighted_columns([base, variant(code_size=8), pca]) == ["code_size"]  # not PCA's empty cells
    assert compare.highlighted_columns([base, pca]) == []


def test_the_compare_pages_default_is_the_newest_sweep_when_the_newest_run_is_one_of_it():
    def record(name: str):
        return SimpleNamespace(name=name)

    older = record("sweep 10:00: code_size=2")
    first, second = record("sweep 11:00: seed=10"), record("sweep 11:00: seed=2")
    assert compare.newest_sweep([first, second, older]) == [second, first]  # its runs only, by value (2 < 10)
    types = [record("s: model_type=vae"), record("s: model_type=cae")]
    assert compare.newest_sweep(types) == types[::-1]  # not numbers: oldest first
    assert compare.newest_sweep([record("by hand"), second, first]) == []  # the newest run is no sweep's
    assert compare.newest_sweep([record("alone: seed=3"), second]) == []  # a sweep of one is none
    assert compare.newest_sweep([]) == []
