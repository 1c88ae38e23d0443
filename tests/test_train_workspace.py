"""`python -m cae.train ... --workspace ID` writes its run to the run store (a temporary CAE_RUNS_DIR here), where
the app shows it at that workspace's address; a malformed id or a store that cannot be opened stops it before
training."""

import json

from cae import train
from cae.engine import checkpoint
from cae.engine.store import EndReason, RunStore, new_workspace_id


def main(capsys, *argv: str) -> tuple[int, str, str]:
    code = train.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_command_line_run_lands_in_its_workspace_with_its_scores(full_mnist, tmp_path, capsys):
    workspace = new_workspace_id()
    code, out, err = main(capsys, "--dry-run", "--code-size", "8", "--out", str(tmp_path / "dry.pt"), "--no-progress",
                          "--workspace", workspace, "--name", "prepared for class")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["workspace"] == workspace and summary["store_problem"] is None
    with RunStore() as store:
        (record,) = store.list_runs(workspace)
        assert record.id == summary["run_id"] and record.name == "prepared for class"
        assert record.state == "finished" and record.end_reason is EndReason.FINISHED
        assert record.steps == record.total_steps == 512 // record.train_config["batch_size"]
        assert record.scores[checkpoint.SCORE] == summary[checkpoint.SCORE] and record.scores["pca_mse"] > 0
        assert store.loss_curve(workspace, record.id).steps == list(range(1, record.steps + 1))
        assert store.load_checkpoint(workspace, record.id).model_config.code_size == 8


def test_a_malformed_workspace_stops_before_training(full_mnist, tmp_path, capsys):
    code, out, err = main(capsys, "--dry-run", "--out", str(tmp_path / "dry.pt"), "--workspace", "nope")
    assert code == 2 and "--workspace" in err and "not a workspace id" in err
    assert not (tmp_path / "dry.pt").exists()


def test_a_store_that_cannot_be_opened_stops_before_training(full_mnist, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CAE_RUNS_DIR", str(blocker / "runs"))
    code, out, err = main(capsys, "--dry-run", "--out", str(tmp_path / "dry.pt"), "--workspace", new_workspace_id())
    assert code == 1 and err.startswith("error: run store")
