"""The Streamlit pieces every page shares: session-state keys, cached shared objects, the sidebar model choice,
and the reconstruction view. Importable without a running app; call the functions only from a page.

Shared objects (`st.cache_resource`) are read-only: the default model only ever runs inference. What a session
trains or uploads lives in that session's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import streamlit as st
from torch import nn

from cae import checkpoint, explore, figures
from cae.checkpoint import Checkpoint, CheckpointError
from cae.data import MnistData, load_mnist
from cae.metrics import model_mse, pca_mse
from cae.training import TrainingRunner

DEFAULT_LABEL = "Pretrained default"


class Key(StrEnum):
    """Every session-state key of the app, in one place."""

    MODELS = "models"  # label -> Checkpoint: this session's trained and uploaded models
    BUILT = "built_models"  # label -> nn.Module in eval mode, built once from MODELS
    MODEL_WIDGET = "model_select"  # the label chosen in the sidebar (kept across pages by `sticky`)
    UPLOAD = "checkpoint_upload"
    UPLOAD_MESSAGE = "checkpoint_upload_message"  # (level, text) from the last checkpoint upload
    CANVAS_ROUND = "canvas_round"  # bumped by Clear: a new canvas key mounts an empty canvas
    PEN = "pen_width"
    SOURCE = "input_source"
    PICK_HOW = "pick_how"
    PICK_START = "pick_start"
    PICK_DIGIT = "pick_digit"
    PICK_SEED = "pick_seed"
    PICK_WORST = "pick_worst"
    PICKED = "picked_sample"
    POOL_MSE = "pool_mse"  # (label, digit) -> per-image MSE over the test digits, for "worst first"
    DIGIT_UPLOAD = "digit_upload"
    RUNNER = "runner"  # training page: this session's TrainingRunner
    RUN_COUNT = "run_count"
    RUN_SAVED = "run_saved"  # label under which the current run's model was added to MODELS
    RUN_MESSAGE = "run_message"  # why Start did not start, shown once
    RUN_WAS_LIVE = "run_was_live"  # the page was drawn while a run was going: its end must redraw the page
    CURRENT_DIGIT = "current_digit"  # CurrentDigit: the digit last drawn, picked or uploaded on the home page


@st.cache_resource(show_spinner="Loading MNIST ...")
def shared_data() -> MnistData:
    """The digits, loaded once per process and shared read-only by every session."""
    return load_mnist()


@st.cache_resource(show_spinner="Loading the pretrained model ...")
def default_model() -> tuple[Checkpoint, nn.Module]:
    ckpt = checkpoint.load(checkpoint.DEFAULT_CHECKPOINT)
    model = ckpt.build_model()  # eval mode; never trained, so every session may run it at once
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return ckpt, model


@st.cache_resource(show_spinner="Fitting PCA for comparison ...")
def shared_pca_mse(source: str, components: int) -> float:
    data = shared_data()
    assert data.source == source  # the key names the data it was computed on
    return pca_mse(data.train_images, data.val_images, components)


@dataclass(frozen=True)
class CurrentDigit:
    """The digit this session looked at last on the home page, for the other pages to show."""

    image: np.ndarray  # (28, 28) model input in [0, 1]
    origin: str  # how it came: "drawn", "MNIST test digit #12", "uploaded: five.png"


def set_current_digit(image: np.ndarray, origin: str) -> None:
    st.session_state[Key.CURRENT_DIGIT] = CurrentDigit(np.asarray(image, np.float32).copy(), origin)


def current_digit() -> CurrentDigit | None:
    """The digit last drawn, picked or uploaded in this session, or None before the first."""
    return st.session_state.get(Key.CURRENT_DIGIT)


@dataclass(frozen=True)
class ChosenModel:
    label: str
    checkpoint: Checkpoint
    model: nn.Module


def add_session_model(label: str, ckpt: Checkpoint) -> str:
    """Keep a model in this session under a label not used yet; returns that label."""
    models = st.session_state.setdefault(Key.MODELS, {})
    unique, n = label, 2
    while unique in models or unique == DEFAULT_LABEL:
        unique, n = f"{label} ({n})", n + 1
    models[unique] = ckpt
    return unique


def _load_uploaded_checkpoint() -> None:
    upload = st.session_state.get(Key.UPLOAD)
    if upload is None:
        return
    try:
        ckpt = checkpoint.load(upload.getvalue(), name=upload.name)
    except CheckpointError as error:
        st.session_state[Key.UPLOAD_MESSAGE] = ("error", f"Not loaded: {error}. The current model is unchanged.")
        return
    label = add_session_model(f"Uploaded: {upload.name}", ckpt)
    st.session_state[Key.MODEL_WIDGET] = label  # a callback runs before the widget is drawn, so this is allowed
    st.session_state[Key.UPLOAD_MESSAGE] = ("success", f"Loaded {label}.")


def _session_model(label: str) -> nn.Module:
    built = st.session_state.setdefault(Key.BUILT, {})
    if label not in built:
        built[label] = st.session_state[Key.MODELS][label].build_model()
    return built[label]


def describe(ckpt: Checkpoint) -> str:
    c, m = ckpt.model_config, ckpt.metrics
    score = m.get("test_mse", m.get("val_mse"))
    where = m.get("evaluated_on") or ("MNIST test digits" if ckpt.data_source == "MNIST" else "validation digits")
    lines = [f"code {c['code_size']} · dropout {c['dropout']} · {'tied' if c['tied_weights'] else 'untied'} "
             f"weights · {c['activation']}"]
    if score is not None:
        lines.append(f"MSE per pixel {score:.4f} on {where}")
    if ckpt.train_config:
        t = ckpt.train_config
        lines.append(f"trained on {ckpt.data_source or '?'}: {t['epochs']} epochs, {t['optimizer']} "
                     f"lr {t['learning_rate']:g}, batch {t['batch_size']}, {t['loss']} loss")
    return "  \n".join(lines)


def sticky(widget, label: str, *args, key: str, default, **kwargs):
    """A widget whose value survives visits to other pages (Streamlit forgets widgets a page did not draw)."""
    kept = f"{key}__kept"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(kept, default)
    value = widget(label, *args, key=key, **kwargs)
    st.session_state[kept] = value
    return value


def finished_run_label(runner: TrainingRunner) -> str:
    t = runner.trainer
    how = "stopped" if t.stop_reason else "trained"
    number = st.session_state.get(Key.RUN_COUNT, 1)
    return f"Run {number}: code {t.model_config.code_size}, {how} at step {t.step_count}"


def collect_finished_run() -> None:
    """Once a run of this session has ended, add its model to the session's models (on whichever page is open)."""
    runner: TrainingRunner | None = st.session_state.get(Key.RUNNER)
    if runner is None or runner.alive or runner.state in ("ready", "failed") or st.session_state.get(Key.RUN_SAVED):
        return
    with runner.reading() as trainer:
        if trainer.step_count == 0:
            return  # stopped before the first step: nothing was learned
        ckpt = trainer.checkpoint()
        train_images = trainer.train_images.cpu()
    data = shared_data()
    k = ckpt.model_config["code_size"]
    whole = len(train_images) == len(data.train_images)
    ckpt.metrics["pca_mse"] = shared_pca_mse(data.source, k) if whole else pca_mse(train_images, data.val_images, k)
    ckpt.metrics["test_mse"] = model_mse(ckpt.build_model(), data.val_images)  # the final weights, not the last epoch's
    ckpt.metrics["evaluated_on"] = f"{len(data.val_images):,} {data.val_name} digits"
    ckpt.metrics["wall_seconds"] = runner.wall_seconds
    label = add_session_model(finished_run_label(runner), ckpt)
    st.session_state[Key.RUN_SAVED] = label


def model_sidebar() -> ChosenModel:
    """The model choice, the same on every page: the default, this session's models, or an uploaded file."""
    collect_finished_run()
    models = st.session_state.setdefault(Key.MODELS, {})
    with st.sidebar:
        st.header("Model")
        label = sticky(st.selectbox, "Model to use", [DEFAULT_LABEL, *models], key=Key.MODEL_WIDGET,
                       default=DEFAULT_LABEL, help="The pretrained default, models trained on the Train page in "
                                                   "this browser session, or a checkpoint you upload.")
        st.file_uploader("Load a checkpoint (.pt)", type=["pt", "pth", "ckpt"], key=Key.UPLOAD,
                         on_change=_load_uploaded_checkpoint,
                         help="A file written by this app or by `python -m cae.train`. It is read safely: "
                              "no code inside a file is ever run.")
        message = st.session_state.pop(Key.UPLOAD_MESSAGE, None)
        if message:
            getattr(st, message[0])(message[1])
        ckpt, model = default_model() if label == DEFAULT_LABEL else (models[label], _session_model(label))
        st.caption(describe(ckpt))
    return ChosenModel(label, ckpt, model)


def chart(figure, *, key: str, where=st) -> None:
    """A figure from cae.figures, drawn without Streamlit's theme: it brings its own look, and a themed copy would
    make the browser plot it again after mounting it (see figures._figure)."""
    where.plotly_chart(figure, key=key, width="stretch", theme=None)


def show_reconstruction(model: nn.Module, image: np.ndarray | None, *, key: str) -> explore.Reconstruction | None:
    """Input, reconstruction and error side by side, with the MSE; the code's bars go where `show_code` is called.

    With no image the panels are drawn blank, so the chart stays mounted and the browser only updates it
    when a digit arrives (several times faster than drawing a new chart).
    """
    result = None if image is None else explore.reconstruct_one(model, image)
    blank = np.zeros((28, 28), np.float32)
    panels = [("Model input (28x28)", blank if result is None else result.image),
              ("Reconstruction", blank if result is None else result.output),
              ("Squared error", blank if result is None else result.error)]
    chart(figures.digit_panels(panels, error_panel=2), key=f"{key}-panels")
    if result is None:
        return None
    st.metric("MSE per pixel", f"{result.mse:.4f}",
              help="Mean squared error between the model input and its reconstruction, pixels in [0, 1].")
    return result


def show_code(result: explore.Reconstruction, *, key: str) -> None:
    chart(figures.code_chart(result.code), key=f"{key}-code")
