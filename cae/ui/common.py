"""The Streamlit pieces every page shares: session-state keys, cached shared objects, the sidebar model choice,
and the reconstruction view. Importable without a running app; call the functions only from a page.

Shared objects (`st.cache_resource`) are read-only: the default model only ever runs inference. What a session
trains or uploads lives in that session's state.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx
from torch import nn

from cae.engine import checkpoint
from cae.engine.checkpoint import Checkpoint, CheckpointError
from cae.engine.data import MnistData, load_mnist, source_signature
from cae.engine.engine import (
    PREVIEW_DIGITS,
    RAY_ADDRESS_VARIABLE,
    RESUMABLE_KINDS,
    ChosenEngine,
    RunHandle,
    engine_from_environment,
)
from cae.engine.metrics import model_mse, pca_mse
from cae.engine.run_queue import RunQueue, default_places, places_from_environment
from cae.engine.store import (
    NoCheckpoint,
    RunRecord,
    RunStore,
    StoreError,
    is_workspace_id,
    new_workspace_id,
    runs_dir,
)
from cae.engine.trainer import RunState
from cae.models.config import Knob
from cae.models.registry import type_of

DEFAULT_LABEL = next(iter(checkpoint.PRETRAINED))


class SharedKey(StrEnum):
    """The session-state keys more than one page reads; each page names its own keys in an enum of its own
    (HomeKey, TrainKey, InsideKey, CodeSpaceKey)."""

    MODELS = "models"  # label -> Checkpoint: this session's trained and uploaded models
    BUILT = "built_models"  # label -> nn.Module in eval mode, built once from MODELS
    MODEL_WIDGET = "model_select"  # the label chosen in the sidebar (kept across pages by `sticky`)
    UPLOAD = "checkpoint_upload"
    UPLOAD_MESSAGE = "checkpoint_upload_message"  # (level, text) from the last checkpoint upload
    CURRENT_DIGIT = "current_digit"  # CurrentDigit: the digit last drawn, picked or uploaded on the home page
    RUNNER = "runner"  # this session's run, a RunHandle (the Train page starts it; every page collects its model)
    RUN_COUNT = "run_count"
    RUN_SAVED = "run_saved"  # label under which the current run's model was added to MODELS
    DOWNLOAD = "model_download"  # the sidebar's download of the chosen session model
    REROUTED = "rerouted"  # a page of this session ran outside app.py's navigation once and was rerun through it
    WORKSPACE = "workspace"  # this session's workspace id (also in the address as ?w=)
    WORKSPACE_MESSAGE = "workspace_message"  # why the address's workspace was not used, shown once
    RUN_IDS = "run_ids"  # store run ids whose model is already in MODELS (not listed again as saved)
    SAVED = "saved_models"  # store run id -> Checkpoint loaded from the run store


def shared_data() -> MnistData:
    """The digits, loaded once per process and shared read-only by every session; loaded again when the data
    folder changes (full MNIST imported while the server runs), so nobody has to restart the server for it."""
    return _data_for(source_signature())


def warm_up() -> None:
    """Load what every first page needs (the digits, the default model, the run store) into the shared caches, so
    that the server's first visitor does not wait for it: app.py calls this once as the server starts. And route
    every page through app.py's navigation from the first visit on (see _through_the_router: a direct link's first
    run on a cold server would otherwise run the page alone, then again through the router)."""
    PagesManager.uses_pages_directory = False
    # Outside a visitor's run each cached call's spinner warns "missing ScriptRunContext": expected here, so not
    # written to the server's log.
    context_log = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = context_log.level
    context_log.setLevel(logging.ERROR)
    try:
        shared_data()
        pretrained_model()
        run_store()
    finally:
        context_log.setLevel(level)


@st.cache_resource(show_spinner="Loading MNIST ...", max_entries=2)
def _data_for(signature: tuple) -> MnistData:
    return load_mnist(Path(signature[0]))


@st.cache_resource(show_spinner="Loading a pretrained model ...")
def pretrained_model(label: str = DEFAULT_LABEL) -> tuple[Checkpoint, nn.Module]:
    """A shipped model (checkpoint.PRETRAINED), loaded once per process and shared read-only."""
    ckpt = checkpoint.load(checkpoint.PRETRAINED[label])
    model = ckpt.build_model()  # eval mode; never trained, so every session may run it at once
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return ckpt, model


@st.cache_resource
def run_queue() -> RunQueue:
    """The server's places for runs training at once (CAE_MAX_RUNS, else half the cores), shared by every session."""
    try:
        return RunQueue(places_from_environment())
    except ValueError as error:  # a bad CAE_MAX_RUNS: say so in the server's log and go on with the default
        print(f"CAE Explorer: {error}; using the default instead", file=sys.stderr)
        return RunQueue(default_places())


# A run's filters and reconstructions change slowly: new ones every few seconds spare the browser redrawing them every
# second (its drawing takes CPU from the trainer on the same cores).
PREVIEW_SECONDS = 3.0


def run_engine() -> ChosenEngine:
    """What trains this server's runs (cae.engine.engine): a Ray cluster when CAE_RAY_ADDRESS names one that can be
    used, else threads of this process in the server's queue; `problem` says why a configured cluster is not used."""
    address = os.environ.get(RAY_ADDRESS_VARIABLE, "").strip()
    if not address:  # made per call: the embedded engine only holds the shared data, store and queue
        return _chosen_engine()
    return _cluster_engine(address, str(runs_dir()), os.environ.get("CAE_RUNS_DB") or "")


@st.cache_resource(show_spinner="Connecting to the Ray cluster ...", max_entries=2)
def _cluster_engine(address: str, root: str, url: str) -> ChosenEngine:
    """One connection to the cluster per process, store and address, shared by every session (each run's handle is
    the session's own)."""
    return _chosen_engine()


def _chosen_engine() -> ChosenEngine:
    return engine_from_environment(shared_data, store=run_store().store, queue=run_queue(),
                                   preview_digits=PREVIEW_DIGITS, preview_seconds=PREVIEW_SECONDS)


WORKSPACE_PARAM = "w"  # the address's query key of the workspace id
SAVED_PREFIX = "Saved: "  # the model choice's label of a run kept in the run store
LISTED_STATES = ("finished", "stopped", "interrupted")  # runs with a model to offer


@dataclass(frozen=True)
class StoreAccess:
    """The process's run store, or why there is none (the app then works without saving)."""

    store: RunStore | None
    problem: str | None


def run_store() -> StoreAccess:
    """One RunStore per process and runs location (CAE_RUNS_DIR / CAE_RUNS_DB), opened once; at its opening the
    runs of a server that died are marked interrupted."""
    return _store_at(str(runs_dir()), os.environ.get("CAE_RUNS_DB") or "")


@st.cache_resource(show_spinner=False, max_entries=4)
def _store_at(root: str, url: str) -> StoreAccess:
    try:
        store = RunStore(url or None, root=root)
        store.mark_interrupted_on_start()
    except StoreError as error:  # the one place a store that cannot be opened is caught: the app goes on
        print(f"CAE Explorer: {error}; runs are not saved", file=sys.stderr)
        return StoreAccess(None, f"Runs are not saved on this server: {error}.")
    return StoreAccess(store, None)


def workspace() -> str:
    """This session's workspace id, kept in the address (?w=): the address's when it is one, else the session's
    (a page switch drops the query string), else a new one; a malformed id in the address gets a new one and a
    message."""
    given = st.query_params.get(WORKSPACE_PARAM)
    kept = st.session_state.get(SharedKey.WORKSPACE)
    if is_workspace_id(given):
        chosen = given
    elif given is None and kept:
        chosen = kept
    else:
        chosen = new_workspace_id()
        if given is not None:
            shown = given if len(given) <= 40 else given[:37] + "..."
            st.session_state[SharedKey.WORKSPACE_MESSAGE] = (
                f"The address named workspace {shown!r}, which is not a workspace id; a new workspace was made "
                f"for your runs.")
    st.session_state[SharedKey.WORKSPACE] = chosen
    if given != chosen:
        st.query_params[WORKSPACE_PARAM] = chosen
    return chosen


def workspace_link(workspace_id: str, settings: dict[str, str] | None = None) -> str:
    """The address of this page with the workspace in it (the page's address without its query string, as the
    browser sent it), and the page's settings after it when given (the Train page's, cae.views.train_link)."""
    base = (st.context.url or "").split("?")[0] or "/"
    return f"{base}?{urlencode({WORKSPACE_PARAM: workspace_id, **(settings or {})})}"


def saved_runs(workspace_id: str) -> list[RunRecord]:
    """The workspace's runs that have a model to offer (finished, stopped or interrupted), newest first; [] without
    a store or when it cannot be read (the sidebar then says why)."""
    access = run_store()
    if access.store is None:
        return []
    try:
        records = access.store.list_runs(workspace_id)
    except StoreError as error:
        st.session_state[SharedKey.WORKSPACE_MESSAGE] = f"Saved runs cannot be read: {error}."
        return []
    return [record for record in records if record.state in LISTED_STATES and record.checkpoints]


def saved_labels(records: list[RunRecord]) -> dict[str, str]:
    """Model-choice label -> run id for the workspace's saved runs that are not in this session's models yet."""
    in_session = st.session_state.get(SharedKey.RUN_IDS, {})
    labels: dict[str, str] = {}
    for record in records:
        if record.id in in_session:
            continue
        label = f"{SAVED_PREFIX}{record.name} ({record.status})"
        if label in labels:
            label = f"{label} [{record.id[:6]}]"
        labels[label] = record.id
    return labels


def saved_checkpoint(workspace_id: str, run_id: str) -> Checkpoint:
    """A saved run's model, loaded from the store once per session; NoCheckpoint (or StoreError) says why not."""
    loaded = st.session_state.setdefault(SharedKey.SAVED, {})
    if run_id not in loaded:
        access = run_store()
        if access.store is None:
            raise StoreError(access.problem or "no run store")
        loaded[run_id] = access.store.load_checkpoint(workspace_id, run_id).without_training_state()
    return loaded[run_id]


RESUMABLE_REASONS = ("interrupted", "tab_closed", "user")  # ends a run can be resumed from


DEAD_RUNS_CHECK_SECONDS = 60.0
_dead_runs_checked_at = -math.inf  # when this process last looked


def _look_for_dead_runs(store: RunStore) -> None:
    """Mark the runs of dead processes interrupted, at most once a minute: with several app servers on one store,
    another machine's crashed server may come back under a new identity, and nobody else restarts to notice."""
    global _dead_runs_checked_at
    now = time.monotonic()
    if now - _dead_runs_checked_at >= DEAD_RUNS_CHECK_SECONDS:
        _dead_runs_checked_at = now
        store.mark_interrupted_on_start()


def resumable_runs(workspace_id: str) -> list[RunRecord]:
    """The workspace's runs that stopped before their end (interrupted, tab closed, stopped) and kept a checkpoint
    to resume from, newest first."""
    access = run_store()
    if access.store is None:
        return []
    try:
        _look_for_dead_runs(access.store)
        records = access.store.list_runs(workspace_id)
    except StoreError:
        return []  # the sidebar says why
    return [record for record in records
            if record.end_reason is not None and record.end_reason.value in RESUMABLE_REASONS
            and any(item.kind in RESUMABLE_KINDS for item in record.checkpoints)]


def session_alive_check() -> Callable[[], bool]:
    """A check that says whether this browser session is still connected (always True outside a real server)."""
    context = get_script_run_ctx()
    if context is None or not Runtime.exists():
        return lambda: True
    runtime, session_id = Runtime.instance(), context.session_id
    return lambda: bool(runtime.is_active_session(session_id))  # a bool: it travels to a cluster's actor


def shared_pca_mse(components: int) -> float:
    """PCA's MSE with as many components, on the digits in use now: computed once per data and size."""
    return _pca_mse_for(source_signature(), components)


@st.cache_resource(show_spinner="Fitting PCA for comparison ...")
def _pca_mse_for(signature: tuple, components: int) -> float:
    data = _data_for(signature)  # the digits the key names, whatever the data folder holds by now
    return pca_mse(data.train_images, data.val_images, components)


@dataclass(frozen=True)
class CurrentDigit:
    """The digit this session looked at last on the home page, for the other pages to show."""

    image: np.ndarray  # (28, 28) model input in [0, 1]
    origin: str  # how it came: "drawn", "MNIST test digit #12", "uploaded: five.png"


def set_current_digit(image: np.ndarray, origin: str) -> None:
    st.session_state[SharedKey.CURRENT_DIGIT] = CurrentDigit(np.asarray(image, np.float32).copy(), origin)


def current_digit() -> CurrentDigit | None:
    """The digit last drawn, picked or uploaded in this session, or None before the first."""
    return st.session_state.get(SharedKey.CURRENT_DIGIT)


@dataclass(frozen=True)
class ChosenModel:
    label: str
    checkpoint: Checkpoint
    model: nn.Module


def add_session_model(label: str, ckpt: Checkpoint) -> str:
    """Keep a model in this session under a label not used yet; returns that label."""
    models = st.session_state.setdefault(SharedKey.MODELS, {})
    unique, n = label, 2
    while unique in models or unique in checkpoint.PRETRAINED:
        unique, n = f"{label} ({n})", n + 1
    models[unique] = ckpt
    return unique


def _load_uploaded_checkpoint() -> None:
    upload = st.session_state.get(SharedKey.UPLOAD)
    if upload is None:
        return
    try:
        ckpt = checkpoint.load(upload.getvalue(), name=upload.name)
    except CheckpointError as error:
        st.session_state[SharedKey.UPLOAD_MESSAGE] = ("error", f"Not loaded: {error}. The current model is unchanged.")
        return
    label = add_session_model(f"Uploaded: {upload.name}", ckpt)
    st.session_state[SharedKey.MODEL_WIDGET] = label  # a callback runs before the widget is drawn, so this is allowed
    st.session_state[SharedKey.UPLOAD_MESSAGE] = ("success", f"Loaded {label}.")


def _saved_model(label: str, ckpt: Checkpoint) -> nn.Module:
    built = st.session_state.setdefault(SharedKey.BUILT, {})
    if label not in built:
        built[label] = ckpt.build_model()
    return built[label]


def _session_model(label: str) -> nn.Module:
    built = st.session_state.setdefault(SharedKey.BUILT, {})
    if label not in built:
        built[label] = st.session_state[SharedKey.MODELS][label].build_model()
    return built[label]


def sticky(widget, label: str, *args, key: str, default, **kwargs):
    """A widget whose value survives visits to other pages (Streamlit forgets widgets a page did not draw)."""
    if key not in st.session_state:
        st.session_state[key] = sticky_value(key, default)
    value = widget(label, *args, key=key, **kwargs)
    st.session_state[_kept_key(key)] = value
    return value


def _kept_key(key: str) -> str:
    return f"{key}__kept"


def sticky_value(key: str, default: Any) -> Any:
    """The value a `sticky` widget has, or will show when drawn next: its own, else the one kept from its last
    drawing, else the default."""
    if key in st.session_state:
        return st.session_state[key]
    return st.session_state.get(_kept_key(key), default)


def set_sticky(key: str, value: Any) -> None:
    """Give a `sticky` widget a value before it is drawn in this script run (a link's settings); it keeps it across
    pages like a value chosen by hand."""
    st.session_state[key] = value
    st.session_state[_kept_key(key)] = value


def knob_widget(knob: Knob, *, key: str, default: Any, where: Any = st, **kwargs: Any) -> Any:
    """A model type's setting (cae.models.config.Knob) as the widget it asks for, kept across pages (`sticky`):
    a selectbox of its choices, else a slider over its range."""
    if knob.choices:
        return sticky(where.selectbox, knob.label, list(knob.choices), key=key, default=default, help=knob.help,
                      format_func=knob.name_of, **kwargs)
    return sticky(where.slider, knob.label, knob.low, knob.high, step=knob.step, key=key, default=default,
                  help=knob.help, **kwargs)


def finished_run_label(runner: RunHandle) -> str:
    snap = runner.snapshot()
    how = "stopped" if snap.stop_reason else "trained"
    number = st.session_state.get(SharedKey.RUN_COUNT, 1)
    kind = type_of(runner.model_config).name.upper()
    return f"Run {number}: {kind}, code {runner.model_config.code_size}, {how} at step {snap.step}"


def collect_finished_run() -> None:
    """Once a run of this session has ended, add its model to the session's models (on whichever page is open)."""
    runner: RunHandle | None = st.session_state.get(SharedKey.RUNNER)
    if runner is None or runner.alive or runner.state in (RunState.READY, RunState.FAILED) \
            or st.session_state.get(SharedKey.RUN_SAVED):
        return
    try:
        ckpt = runner.final_checkpoint()  # with its score when the run went to its end (its last check of every digit)
    except StoreError as error:  # a cluster's run comes back through the store: tried again on the next page
        st.session_state[SharedKey.WORKSPACE_MESSAGE] = (f"The model of the run that ended cannot be fetched yet: "
                                                         f"{error}.")
        return
    if ckpt is None:
        return  # stopped before the first step: nothing was learned
    # None once a run whose tab went away has freed its data; its model is kept all the same
    train_images = runner.training_digits()
    train_images = None if train_images is None else train_images.cpu()
    data = shared_data()
    components = ckpt.model_config.code_size
    subset = ckpt.train_config.train_subset
    if not subset or subset >= len(data.train_images):
        ckpt.metrics["pca_mse"] = shared_pca_mse(components)
    elif train_images is not None:
        ckpt.metrics["pca_mse"] = pca_mse(train_images, data.val_images, components)
    else:
        ckpt.metrics["pca_mse"] = None  # its training digits are gone: PCA cannot be fitted on the same ones
    if ckpt.held_out_mse is None:  # stopped early: its last check was not of every digit with these weights
        ckpt.record_score(model_mse(ckpt.build_model(), data.val_images), len(data.val_images), data.val_name)
    ckpt.metrics["wall_seconds"] = runner.wall_seconds
    label = add_session_model(finished_run_label(runner), ckpt)
    st.session_state[SharedKey.RUN_SAVED] = label
    if runner.run_id is not None:  # the store's copy is this model: not offered a second time
        st.session_state.setdefault(SharedKey.RUN_IDS, {})[runner.run_id] = label


_router = threading.local()  # per script thread: is app.py's navigation running the page now?


@contextmanager
def routed() -> Iterator[None]:
    """app.py runs every page inside this; a page that runs outside it came in through the pages-folder mode."""
    _router.active = True
    try:
        yield
    finally:
        _router.active = False


def _through_the_router() -> None:
    """Make a page that Streamlit ran on its own go through app.py's navigation instead.

    Because a folder named pages/ exists, Streamlit serves a link straight to a page (say /Train) the old way,
    running the page file alone, until app.py has called st.navigation once in this server process: the page then
    lacks the navigation's titles and the wide layout. Such a run switches that mode off and reruns; the rerun goes
    through app.py to the same page (both ways name it by its url path). The test is this run's own, not the
    server-wide mode: on a cold server, a visitor's page may start in the old mode just before another visitor's
    app.py switches it off (8 tabs opening a cold server at once left one so in each of 3 trials).
    """
    if getattr(_router, "active", False) or st.session_state.get(SharedKey.REROUTED):
        return  # (once per session: a page file run on its own, as `streamlit run pages/...` does, would loop)
    st.session_state[SharedKey.REROUTED] = True
    PagesManager.uses_pages_directory = False
    st.rerun()


def workspace_sidebar(workspace_id: str, settings: dict[str, str] | None = None) -> None:
    """Where this visitor's runs are kept, and any message about the store or the address; the link to copy holds
    the page's settings when it gives them (the Train page)."""
    message = st.session_state.pop(SharedKey.WORKSPACE_MESSAGE, None)
    if message:
        st.warning(message)
    access = run_store()
    if access.problem:
        st.warning(access.problem)
        return
    st.caption("Your runs are kept at this address: bookmark it (or copy the link) to come back to them, from "
               "any browser. Anyone with the link sees them."
               + (" On this page the link also holds the training settings: it opens the page set up as it is now."
                  if settings is not None else ""))
    st.code(workspace_link(workspace_id, settings), language=None)


def model_sidebar(link_settings: dict[str, str] | None = None) -> ChosenModel:
    """The model choice, the same on every page: the default, this session's models, the workspace's saved runs,
    or an uploaded file. `link_settings`: the page's settings as query parameters, for the link to copy."""
    _through_the_router()
    workspace_id = workspace()
    collect_finished_run()
    models = st.session_state.setdefault(SharedKey.MODELS, {})
    saved = saved_labels(saved_runs(workspace_id))
    with st.sidebar:
        st.header("Model")
        options = [*checkpoint.PRETRAINED, *models, *saved]
        if st.session_state.get(SharedKey.MODEL_WIDGET) not in (*options, None):
            st.session_state.pop(SharedKey.MODEL_WIDGET)  # a saved run deleted or renamed meanwhile
            st.session_state.pop(_kept_key(SharedKey.MODEL_WIDGET), None)
        label = sticky(st.selectbox, "Model to use", options, key=SharedKey.MODEL_WIDGET,
                       default=DEFAULT_LABEL, help="The shipped models, models trained on the Train page in "
                                                   "this browser session, runs saved at this address, or a "
                                                   "checkpoint you upload.")
        st.file_uploader("Load a checkpoint (.pt)", type=["pt", "pth", "ckpt"], key=SharedKey.UPLOAD,
                         on_change=_load_uploaded_checkpoint,
                         help="A file written by this app or by `python -m cae.train`. It is read safely: "
                              "no code inside a file is ever run.")
        message = st.session_state.pop(SharedKey.UPLOAD_MESSAGE, None)
        if message:
            getattr(st, message[0])(message[1])
        if label in saved:
            try:
                ckpt = saved_checkpoint(workspace_id, saved[label])
                model = _saved_model(label, ckpt)
            except (NoCheckpoint, StoreError, CheckpointError) as error:  # a missing file: that run says so
                st.warning(f"{label} cannot be used: {error}. Showing {DEFAULT_LABEL} instead.")
                label = DEFAULT_LABEL
        if label in checkpoint.PRETRAINED:
            ckpt, model = pretrained_model(label)
        elif label in models:
            ckpt, model = models[label], _session_model(label)
        st.caption(ckpt.describe())
        if label in models:  # any model of this session can be kept, not only the run just finished
            st.download_button("Download this model", lambda: checkpoint.to_bytes(ckpt), key=SharedKey.DOWNLOAD,
                               file_name=f"{ckpt.model_type}-model.pt", mime="application/octet-stream",
                               on_click="ignore")
        st.header("Your runs")
        workspace_sidebar(workspace_id, link_settings)
    return ChosenModel(label, ckpt, model)


def chart(figure, *, key: str, where=st) -> None:
    """A figure from cae.views.figures, drawn without Streamlit's theme: it brings its own look, and a themed copy would
    make the browser plot it again after mounting it (see figures.base.stable_figure)."""
    where.plotly_chart(figure, key=key, width="stretch", theme=None)

