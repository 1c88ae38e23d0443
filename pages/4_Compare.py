"""Compare runs: pick runs kept at this address, shipped models and PCA at a code size, and see what differs between
them, their scores, their loss curves, their validation checks and their reconstructions of the same digits.

What the page computes comes from cae.views.compare; its figures from cae.views.figures.compare. A model's scores
are computed once per server process (per saved run, shipped model or PCA size), so redrawing ten runs is quick.
"""

from __future__ import annotations

import cae.ui.appenv  # noqa: F401  (first: settles torch's threads before torch loads)

# isort: split

from enum import StrEnum

import pandas as pd
import streamlit as st
from torch import nn

from cae.engine import checkpoint
from cae.engine.checkpoint import CheckpointError
from cae.engine.metrics import COMPARISON_DIGITS
from cae.engine.store import NoCheckpoint, RunRecord, StoreError
from cae.ui import common as ui
from cae.views import compare
from cae.views.figures import compare as compare_figures

DIGITS_SHOWN = 8
MOST_CHOSEN = 10
HIGHLIGHT = "background-color: rgba(255, 196, 0, 0.35)"
CODE_SIZE = "code_size"  # the setting whose sweep gets PCA beside it (ModelConfig.code_size)


class CompareKey(StrEnum):
    CHOSEN = "c_chosen"
    PCA = "c_pca"
    PCA_SIZE = "c_pca_size"
    LOG_SCALE = "c_log"
    TERMS = "c_terms"
    MANAGED = "c_managed"
    NEW_NAME = "c_new_name"
    RENAME = "c_rename"
    DOWNLOAD = "c_download"
    DELETE = "c_delete"
    CONFIRM = "c_confirm"
    CANCEL = "c_cancel"
    DELETING = "c_deleting"  # the run id waiting for its deletion to be confirmed
    MESSAGE = "c_message"


@st.cache_data(show_spinner="Scoring on the held-out digits ...", max_entries=256)
def cached_scores(key: str, source: str, _model: nn.Module, held_out_mse: float | None) -> dict[str, float]:
    """A model's scores, once per `key` (a run's id and last change, a shipped model's label) and data source."""
    return compare.model_scores(_model, ui.shared_data().val_images, held_out_mse=held_out_mse)


@st.cache_resource(show_spinner="Fitting PCA ...", max_entries=2)
def cached_pca_eigen(source: str) -> tuple:
    return compare.pca_eigen(ui.shared_data().train_images)  # the data `source` names (its key changes with it)


@st.cache_resource(show_spinner=False, max_entries=16)
def cached_pca(source: str, components: int):
    basis = compare.pca_basis(cached_pca_eigen(source), components)
    return basis, compare.pca_scores(*basis, ui.shared_data().val_images)


def run_candidate(workspace: str, record: RunRecord) -> compare.Candidate | str:
    """A saved run as a candidate, or why it cannot be one (a missing checkpoint file)."""
    store = ui.run_store().store
    try:
        ckpt = ui.saved_checkpoint(workspace, record.id)
        model = ckpt.build_model()
        curve = store.loss_curve(workspace, record.id)
        checks = store.validations(workspace, record.id)
    except (NoCheckpoint, StoreError, CheckpointError) as error:  # a missing file or a store gone: said, not raised
        return f"{record.name}: {error}"
    samples = [value or 0 for value in curve.samples]
    shown = record.best_checkpoint
    scores = compare.stored_scores(model, record.scores, data_source=ui.shared_data().source,
                                   step=shown.step if shown is not None else -1)
    return compare.Candidate(compare.run_label(record), ckpt, model,
                             compare.Curve(samples, curve.loss, [check.epoch for check in checks],
                                           [check.val_mse for check in checks], curve.terms),
                             steps=record.steps, wall_seconds=record.wall_seconds, scores=scores)


def shipped_candidate(label: str) -> compare.Candidate:
    ckpt, model = ui.pretrained_model(label)
    return compare.Candidate(label, ckpt, model, compare.curve_from_history(ckpt),
                             steps=len(ckpt.history.get("train_loss") or []) or None,
                             wall_seconds=ckpt.metrics.get("wall_seconds"))


def scores_of(candidate: compare.Candidate, key: str) -> dict[str, float]:
    """The candidate's table scores: as stored with its run, else measured once per process (a shipped model's
    held-out MSE comes from its checkpoint when that was measured on the data in use)."""
    if candidate.scores is not None:
        return candidate.scores
    source = ui.shared_data().source
    if candidate.model is None:
        return cached_pca(source, candidate.pca_components)[1]
    ckpt = candidate.checkpoint
    known_mse = ckpt.metrics.get("held_out_mse") if ckpt.data_source == source else None
    return cached_scores(key, source, candidate.model, known_mse)


def table(candidates: list[compare.Candidate], keys: list[str]) -> None:
    rows = compare.settings_rows(candidates)
    for row, candidate, key in zip(rows, candidates, keys):
        row.update({name: round(value, 4) for name, value in scores_of(candidate, key).items()})
    frame = pd.DataFrame(rows).set_index("model")
    differing = compare.highlighted_columns(candidates)
    styled = frame.style.map(lambda _: HIGHLIGHT, subset=differing) if differing else frame
    st.dataframe(styled, key="compare-table")
    held_out = len(ui.shared_data().val_images)
    st.caption("Highlighted: the settings that are not the same for every model (PCA aside). Held-out MSE on the "
               f"{held_out:,} held-out digits (lower is better); the other scores on the first "
               f"{min(held_out, COMPARISON_DIGITS):,} of them: the PSNR of each output from those digits with "
               "Gaussian noise of sigma 0.5 (the same noise for every model; higher is better), and the scores a "
               "model's type declares.")


def sweep_chart(candidates: list[compare.Candidate], keys: list[str]) -> None:
    """When the chosen runs differ in one setting only: their score against it (with PCA at the same sizes for a
    code-size sweep: the bottleneck curve)."""
    sweep = compare.sweep_of(candidates)
    if sweep is None:
        return
    models = [(candidate, key) for candidate, key in zip(candidates, keys) if candidate.checkpoint is not None]
    runs = [(candidate.label, value, scores_of(candidate, key)[compare.MSE_COLUMN])
            for (candidate, key), value in zip(models, sweep.values)]
    pca = []
    if sweep.setting == CODE_SIZE and sweep.numeric:
        source = ui.shared_data().source
        pca = [(size, cached_pca(source, size)[1][compare.MSE_COLUMN]) for size in sorted(set(sweep.values))]
    ui.chart(compare_figures.sweep_chart(sweep.setting, runs, log_x=sweep.log_scale, pca=pca), key="compare-sweep")
    st.caption(f"The models chosen differ in {sweep.setting} only, so this is a sweep of it"
               + (": the bottleneck curve, an autoencoder against PCA keeping as many numbers per digit."
                  if pca else "."))


def loss_chart(candidates: list[compare.Candidate], log_scale: bool) -> None:
    """The loss curves overlaid, with the objective's terms a reader chooses (a variational model reports two)."""
    curves = [candidate.curve for candidate in candidates if candidate.curve is not None]
    names = compare.term_names(curves)
    chosen = st.multiselect("Loss terms", names, default=[compare.TOTAL], key=CompareKey.TERMS,
                            help="The objective's total, and each term it reports (a variational model's "
                                 "reconstruction and KL divergence); a term is a dashed line of its model's colour.")
    series = [compare_figures.LossSeries(candidate.label if name == compare.TOTAL else f"{candidate.label}: {name}",
                                         candidate.curve.samples, values, model_index, names.index(name))
              for model_index, candidate in enumerate(candidates) if candidate.curve is not None
              for name in chosen if (values := candidate.curve.series(name)) is not None]
    ui.chart(compare_figures.loss_curves(series, log_scale=log_scale), key="compare-loss")


def figures(candidates: list[compare.Candidate], log_scale: bool) -> None:
    with_curves = [candidate for candidate in candidates if candidate.curve is not None]
    if with_curves:
        loss_chart(candidates, log_scale)
        ui.chart(compare_figures.validation_curves([(c.label, c.curve.val_epoch, c.curve.val_mse)
                                                    for c in with_curves]), key="compare-val")
    data = ui.shared_data()
    digits = data.val_images[:DIGITS_SHOWN]
    pca = {c.pca_components: cached_pca(data.source, c.pca_components)[0] for c in candidates if c.model is None}
    rows = [("held-out digits", digits.numpy() / 255)]
    rows += [(c.label, compare.reconstructions(c, digits, pca.get(c.pca_components))) for c in candidates]
    ui.chart(compare_figures.reconstruction_rows(rows, title=f"Validation digits #0 to #{DIGITS_SHOWN - 1}, "
                                                             f"one row a model"), key="compare-digits")
    current = ui.current_digit()
    if current is None:
        st.caption("Draw, pick or upload a digit on the home page to see it through each model here too.")
        return
    image = current.image[None]
    rows = [(f"yours ({current.origin})", image)]
    rows += [(c.label, compare.reconstructions(c, image, pca.get(c.pca_components))) for c in candidates]
    ui.chart(compare_figures.reconstruction_rows(rows, title="Your digit through each model"), key="compare-yours")


def download_button(workspace: str, record: RunRecord, where) -> None:
    """The run's model as a checkpoint file (its weights, configs and history; no optimizer state), or why not."""
    try:
        ckpt = ui.saved_checkpoint(workspace, record.id)
    except StoreError as error:  # NoCheckpoint included: a missing file is said, not raised
        where.caption(f"No model to download: {error}")
        return
    where.download_button("Download", checkpoint.to_bytes(ckpt), file_name=f"{record.id}.pt",
                          mime="application/octet-stream", key=CompareKey.DOWNLOAD,
                          help="The run's model as a checkpoint file: choose it on any page's sidebar upload, or "
                               "load it with `python -m cae.evaluate`.")


def manage(workspace: str, records: list[RunRecord]) -> None:
    """Rename, download or delete one of the workspace's runs (a deletion asks to be confirmed)."""
    store = ui.run_store().store
    by_label = {compare.run_label(record): record for record in records}
    with st.expander("Rename, download or delete a run"):
        label = st.selectbox("Run", list(by_label), key=CompareKey.MANAGED)
        record = by_label[label]
        st.text_input("New name", value=record.name, key=CompareKey.NEW_NAME, max_chars=200)
        rename, delete, download = st.columns(3)
        if rename.button("Rename", key=CompareKey.RENAME):
            try:
                store.rename_run(workspace, record.id, st.session_state[CompareKey.NEW_NAME])
                st.session_state[CompareKey.MESSAGE] = f"Renamed to {st.session_state[CompareKey.NEW_NAME]!r}."
            except (ValueError, StoreError) as error:
                st.session_state[CompareKey.MESSAGE] = f"Not renamed: {error}"
            st.rerun()
        download_button(workspace, record, download)
        if delete.button("Delete", key=CompareKey.DELETE, disabled=record.live):
            st.session_state[CompareKey.DELETING] = record.id
        if st.session_state.get(CompareKey.DELETING) == record.id:
            st.warning(f"Delete {record.name!r} and its checkpoints for good?")
            yes, no = st.columns(2)
            if yes.button("Yes, delete it", key=CompareKey.CONFIRM, type="primary"):
                try:
                    store.delete_run(workspace, record.id)
                    st.session_state[CompareKey.MESSAGE] = f"Deleted {record.name!r}."
                except StoreError as error:
                    st.session_state[CompareKey.MESSAGE] = f"Not deleted: {error}"
                st.session_state.pop(CompareKey.DELETING, None)
                st.rerun()
            if no.button("Cancel", key=CompareKey.CANCEL):
                st.session_state.pop(CompareKey.DELETING, None)
                st.rerun()


ui.model_sidebar()
workspace = ui.workspace()
st.title("Compare runs")
message = st.session_state.pop(CompareKey.MESSAGE, None)
if message:
    st.info(message)
access = ui.run_store()
records = []
if access.store is not None:
    try:
        records = [record for record in access.store.list_runs(workspace) if record.state in ui.LISTED_STATES]
    except StoreError as error:
        st.warning(f"Saved runs cannot be read: {error}.")
runs = {compare.run_label(record): record for record in records}
options = [*runs, *checkpoint.PRETRAINED]
# The newest sweep, when the newest run is one of a sweep's: its chart is what a sweep was made for. Else the three
# newest runs beside the default model.
swept = [compare.run_label(record) for record in compare.newest_sweep(records)]
default = (swept or [*list(runs)[:3], ui.DEFAULT_LABEL])[:MOST_CHOSEN]
chosen = st.multiselect("Models to compare", options, default=default, key=CompareKey.CHOSEN,
                        max_selections=MOST_CHOSEN,
                        help="Runs kept at this address (train them on the Train page) and the shipped models.")
pca_column, size_column, scale_column = st.columns([1, 2, 1])
with_pca = pca_column.toggle("Add PCA", key=CompareKey.PCA, value=True,
                             help="PCA keeps the same number of numbers per digit as a code of this size.")
pca_size = size_column.slider("PCA code size", 2, 64, 32, key=CompareKey.PCA_SIZE, disabled=not with_pca)
log_scale = scale_column.toggle("Log scale", key=CompareKey.LOG_SCALE, value=True)
candidates: list[compare.Candidate] = []
keys: list[str] = []
for label in chosen:
    if label in runs:
        record = runs[label]
        candidate = run_candidate(workspace, record)
        key = f"run:{record.id}:{record.ended_at}"
    else:
        candidate, key = shipped_candidate(label), f"shipped:{label}"
    if isinstance(candidate, str):
        st.warning(f"Left out: {candidate}")
        continue
    candidates.append(candidate)
    keys.append(key)
if with_pca:
    candidates.append(compare.Candidate(f"PCA, {pca_size} components", None, None, pca_components=pca_size))
    keys.append(f"pca:{pca_size}")
if not candidates:
    st.info("Pick models to compare above.")
else:
    table(candidates, keys)
    sweep_chart(candidates, keys)
    figures(candidates, log_scale)
if records and access.store is not None:
    manage(workspace, records)
elif not records:
    st.caption("No runs kept at this address yet: train one on the Train page and it appears here.")
