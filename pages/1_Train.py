"""Train page: choose a model type and its knobs, press Start, and watch an autoencoder learn on MNIST.

A run goes through the server's run engine (cae.engine.engine, `ui.run_engine()`): a thread of this process once the
server's run queue gives it a place, or an actor on a Ray cluster when CAE_RAY_ADDRESS names one. The page holds the
run's handle and never looks past it; the live view is a fragment that redraws every second from the handle's
snapshot, so the page stays responsive and other pages keep working. A run whose browser session has gone stops by
itself. "Sweep one setting" starts one run per value of a setting (cae.views.train_sweep), all through the engine.
"""

from __future__ import annotations

import cae.ui.appenv  # noqa: F401  (first: settles torch's threads before torch loads)

# isort: split

import time
from dataclasses import dataclass, field, replace
from enum import StrEnum

import streamlit as st

from cae.engine import checkpoint
from cae.engine.checkpoint import CheckpointError
from cae.engine.engine import PREVIEW_DIGITS, RunHandle, resumable_checkpoint
from cae.engine.runner import ORPHAN_SECONDS, RunSnapshot
from cae.engine.store import RunRecord, StoreError
from cae.engine.train_config import LOSSES, OPTIMIZERS, PAGE_DEFAULTS, SCHEDULES
from cae.engine.trainer import RunState, StopReason
from cae.models.autoencoder import CHANNELS, FLAT
from cae.models.config import ConfigError, Knob
from cae.models.registry import MODEL_TYPES, ModelType, model_type, type_of
from cae.ui import common as ui
from cae.ui.common import SharedKey
from cae.views import train_link as link
from cae.views import train_sweep
from cae.views.figures import compare as compare_figures
from cae.views.figures import train as train_figures

# The values the page offers: every range, choice and default comes from the configs (ModelConfig.RANGES,
# TrainConfig.RANGES, their choices, a type's KNOBS, PAGE_DEFAULTS), narrowed to easy-to-set values by
# cae.views.train_link, which also checks a link's settings against the same values.
DROPOUT_STEP = 0.05
RESUMABLE_SHOWN = 5  # unfinished runs offered for Resume, newest first
REFRESH_SECONDS = 1.0  # the progress and the loss chart
# The live view is replaced every second. Without this its elements fade while the fragment reruns and the progress
# bar slides: animation frames the browser draws in software, CPU taken from the trainer (about 0.05 of a core).
STILL_LIVE_VIEW = ("<style>.st-key-live, .st-key-live * {transition: none !important; animation: none !important}"
                   "</style>")


class TrainKey(StrEnum):
    """This page's session-state keys (widgets and its own state)."""

    MODEL_TYPE = "t_type"
    CODE = "t_code"
    DROPOUT = "t_dropout"
    TIED = "t_tied"
    ACTIVATION = "t_act"
    LOSS = "t_loss"
    OPTIMIZER = "t_opt"
    LEARNING_RATE = "t_lr"
    SCHEDULE = "t_schedule"
    BATCH = "t_batch"
    EPOCHS = "t_epochs"
    SUBSET = "t_subset"
    SEED = "t_seed"
    START = "t_start"
    PAUSE = "t_pause"
    STOP = "t_stop"
    RESET = "t_reset"
    DOWNLOAD = "t_download"
    LOG_SCALE = "t_log"  # the loss chart's view options
    CHANNEL = "t_channel"
    MESSAGE = "t_message"  # why Start did not start, shown once
    RESUME = "t_resume"  # a Resume button of an unfinished run (its id appended)
    WAS_LIVE = "t_was_live"  # the page was drawn while a run was going: its end must redraw the page
    ADDRESS = "t_address"  # the settings' query parameters the page last took from the address or wrote there
    LINK_PROBLEMS = "t_link_problems"  # why some of a link's settings were not used, shown once
    FOLLOW = "t_follow"  # a Follow button of a run training elsewhere (its id appended)
    SWEEP = "t_sweep"  # this session's sweep (PageSweep)
    SWEEP_SETTING = "t_sweep_setting"  # the sweep's widgets
    SWEEP_VALUES = "t_sweep_values"  # its values (a list, or the typed text), per setting: the key + the field
    SWEEP_START = "t_sweep_start"
    SWEEP_STOP = "t_sweep_stop"
    SWEEP_MESSAGE = "t_sweep_message"  # why a sweep did not start, shown once


# The widget of each config field the page offers (a type's own knobs: knob_key).
FIELD_KEYS = {"code_size": TrainKey.CODE, "dropout": TrainKey.DROPOUT, "tied_weights": TrainKey.TIED,
              "activation": TrainKey.ACTIVATION, "loss": TrainKey.LOSS, "optimizer": TrainKey.OPTIMIZER,
              "learning_rate": TrainKey.LEARNING_RATE, "schedule": TrainKey.SCHEDULE, "batch_size": TrainKey.BATCH,
              "epochs": TrainKey.EPOCHS, "train_subset": TrainKey.SUBSET, "seed": TrainKey.SEED}


def knob_key(knob: Knob) -> str:
    """The session-state key of a model type's own setting ("t_beta", "t_noise", ...)."""
    return f"t_{knob.field}"


def model_settings(disabled: bool) -> str:
    """The model type and its knobs; returns the type's name."""
    sticky, defaults = ui.sticky, PAGE_DEFAULTS.model
    name = sticky(st.selectbox, "Model type", list(MODEL_TYPES), key=TrainKey.MODEL_TYPE,
                  default=link.default_type().name, disabled=disabled, format_func=lambda n: MODEL_TYPES[n].title,
                  help=" ".join(f"{kind.title}: {kind.lesson}" for kind in MODEL_TYPES.values()))
    kind = MODEL_TYPES[name]
    sticky(st.slider, link.CODE.label, link.CODE.low, link.CODE.high, key=TrainKey.CODE, default=defaults.code_size,
           disabled=disabled, help="Numbers in the bottleneck. 2 makes a map; 32 is the post's.")
    type_defaults = link.default_model(kind)
    for knob in kind.config_class.KNOBS:  # the type's own settings (noise for a denoiser, beta for a VAE)
        ui.knob_widget(knob, key=knob_key(knob), default=getattr(type_defaults, knob.field), disabled=disabled)
    sticky(st.slider, link.DROPOUT.label, link.DROPOUT.low, link.DROPOUT.high, step=DROPOUT_STEP,
           key=TrainKey.DROPOUT, default=defaults.dropout, disabled=disabled,
           help=f"On the {FLAT} features and on the code while training. The post used 0.5; it blurs.")
    sticky(st.toggle, link.TIED.label, key=TrainKey.TIED, default=defaults.tied_weights, disabled=disabled,
           help="The decoder's transposed convolutions reuse the encoder's kernels, as in the post.")
    sticky(st.selectbox, link.ACTIVATION.label, list(link.ACTIVATION.choices), key=TrainKey.ACTIVATION,
           default=defaults.activation, disabled=disabled, help="After each hidden layer; tanh is the post's.")
    return name


def training_settings(disabled: bool, type_name: str) -> None:
    sticky, defaults = ui.sticky, PAGE_DEFAULTS.train
    network_class = MODEL_TYPES[type_name].network_class
    if not network_class.USES_TRAINER_LOSS:
        st.caption(f"Objective: {network_class.OBJECTIVE_TEXT}.")
    else:
        sticky(st.selectbox, link.LOSS.label, list(LOSSES), key=TrainKey.LOSS, default=defaults.loss, disabled=disabled,
               format_func=LOSSES.get,
               help="What training minimises. The chart's held-out line is always MSE per pixel.")
    sticky(st.selectbox, link.OPTIMIZER.label, list(OPTIMIZERS), key=TrainKey.OPTIMIZER, default=defaults.optimizer,
           disabled=disabled,
           format_func=lambda name: OPTIMIZERS[name] + (f" {defaults.momentum:g}" if name == "sgd" else ""))
    sticky(st.select_slider, link.LEARNING_RATE.label, list(link.LEARNING_RATE.choices), key=TrainKey.LEARNING_RATE,
           default=defaults.learning_rate, disabled=disabled, format_func=link.LEARNING_RATE.name_of,
           help="Log scale. 10 is far too large: try it to see what becomes of the model.")
    sticky(st.selectbox, link.SCHEDULE.label, list(SCHEDULES), key=TrainKey.SCHEDULE, default=defaults.schedule,
           disabled=disabled, format_func=SCHEDULES.get,
           help="Cosine lowers the learning rate to zero by the last step: big steps first, then fine ones.")
    sticky(st.select_slider, link.BATCH.label, list(link.BATCH.choices), key=TrainKey.BATCH,
           default=defaults.batch_size, disabled=disabled)
    sticky(st.slider, link.EPOCHS.label, link.EPOCHS.low, link.EPOCHS.high, key=TrainKey.EPOCHS,
           default=defaults.epochs, disabled=disabled)
    sticky(st.select_slider, link.DIGITS.label, list(link.DIGITS.choices), key=TrainKey.SUBSET,
           default=defaults.train_subset, disabled=disabled, format_func=link.DIGITS.name_of,
           help="A random subset (seeded); small ones make fast demos.")
    sticky(st.number_input, link.SEED.label, link.SEED.low, link.SEED.high, step=1, key=TrainKey.SEED,
           default=defaults.seed, disabled=disabled,
           help="Same seed and settings, same run: the initial weights, the digits' order, the dropout masks and "
                "the noise all come from it.")


def settings(disabled: bool) -> None:
    """The sidebar knobs, within the ranges the config dataclasses allow (which validate again on Start)."""
    with st.sidebar:
        st.header("Training settings")
        type_name = model_settings(disabled)
        training_settings(disabled, type_name)
        st.caption(f"Data: {ui.shared_data().describe()}")


def chosen_type() -> ModelType:
    return model_type(ui.sticky_value(TrainKey.MODEL_TYPE, link.default_type().name))


def chosen_configs():
    """The configs the knobs describe now: read at click time (so Start never uses a stale drawing's values), or
    before the knobs are drawn (what they will show)."""
    return configs_for(chosen_type())


def configs_for(kind: ModelType):
    """The configs of this type with the knobs' values: the settings every type shares as the page shows them, the
    type's own knobs as the page keeps them (at their defaults when never shown)."""
    type_defaults = link.default_model(kind)
    model_fields = {setting.field: shown(setting, FIELD_KEYS[setting.field], type_defaults)
                    for setting in link.MODEL_SETTINGS}
    model_fields.update({knob.field: shown(link.knob_setting(knob), knob_key(knob), type_defaults)
                         for knob in kind.config_class.KNOBS})
    # What the page has no knob for (val_subset, momentum, device) comes from the defaults, and so does the loss of
    # a type with an objective of its own (the trainer records the loss that objective uses).
    train_fields = {setting.field: shown(setting, FIELD_KEYS[setting.field], PAGE_DEFAULTS.train)
                    for setting in link.train_settings(kind)}
    return kind.config_class(**model_fields), replace(PAGE_DEFAULTS.train, **train_fields)


def shown(setting: link.Setting, key: str, defaults) -> object:
    """A knob's value as its config field takes it: its widget's, or what the widget will show when drawn."""
    return setting.kind(ui.sticky_value(key, getattr(defaults, setting.field)))


def link_widget_values(settings: link.LinkSettings) -> dict[str, object]:
    """The knobs' values that show a link's settings. A link is the whole setup: the knobs of the other types
    return to their defaults too."""
    values: dict[str, object] = {TrainKey.MODEL_TYPE: settings.kind.name}
    for kind in MODEL_TYPES.values():
        type_defaults = link.default_model(kind)
        values.update({knob_key(knob): getattr(type_defaults, knob.field) for knob in kind.config_class.KNOBS})
    values.update({knob_key(knob): getattr(settings.model, knob.field) for knob in settings.kind.config_class.KNOBS})
    values.update({FIELD_KEYS[setting.field]: getattr(settings.model, setting.field)
                   for setting in link.MODEL_SETTINGS})
    values.update({FIELD_KEYS[setting.field]: getattr(settings.train, setting.field)
                   for setting in link.TRAIN_SETTINGS})
    return values


def take_address(busy: bool) -> None:
    """Put the address's settings into the knobs before they are drawn: on the page's first drawing in this session
    and whenever the address names other settings than the page last took or wrote (a link opened in this tab).
    A bare address keeps the knobs as they are: it is a first visit (the defaults) or a return from another page,
    which drops the query string. A run that is going keeps its settings; the link is not used."""
    owned = link.setting_params()
    given = {key: value for key, value in st.query_params.to_dict().items() if key in owned}
    if not given or given == st.session_state.get(TrainKey.ADDRESS):
        return
    if busy:
        st.session_state[TrainKey.LINK_PROBLEMS] = [
            "a run is going, so the address's settings were not used: the settings show the run's (open the link "
            "again once it has ended)"]
        return
    settings = link.decode(given)
    for key, value in link_widget_values(settings).items():
        ui.set_sticky(key, value)
    st.session_state[TrainKey.ADDRESS] = given
    if settings.problems:
        st.session_state[TrainKey.LINK_PROBLEMS] = list(settings.problems)


def follow_address(params: dict[str, str]) -> None:
    """The address follows the knobs, so that copying it at any moment reproduces the setup: the settings' query
    parameters are replaced, the workspace and every key this page does not own kept."""
    owned = link.setting_params()
    written = {key: st.query_params[key] for key in st.query_params if key in owned}
    if written != params:
        kept = {key: st.query_params.get_all(key) for key in st.query_params if key not in owned}
        st.query_params.from_dict({**kept, **params})
    st.session_state[TrainKey.ADDRESS] = params


def link_problems() -> None:
    """Why some of a link's settings were not used, once."""
    problems = st.session_state.pop(TrainKey.LINK_PROBLEMS, None)
    if problems:
        st.warning("Not every setting in the address could be used:\n\n"
                   + "\n".join(f"- {problem[:1].upper()}{problem[1:]}." for problem in problems))


def start() -> None:
    if session_busy():
        return  # a second Start while a run is going starts nothing
    model_config, train_config = chosen_configs()
    name = f"{type_of(model_config).name.upper()}, code {model_config.code_size}, {time.strftime('%Y-%m-%d %H:%M')}"
    try:
        handle = start_run(model_config, train_config, name)
    except (ConfigError, StoreError, ValueError) as error:
        st.session_state[TrainKey.MESSAGE] = f"Not started: {error}"
        return
    show_run(handle)


def start_run(model_config, train_config, name: str) -> RunHandle:
    """A new run of this session, through the server's engine, kept at this address."""
    return ui.run_engine().engine.start(model_config, train_config, workspace=ui.workspace(), name=name,
                                        owner_alive=ui.session_alive_check())


def show_run(handle: RunHandle) -> None:
    """The run this page shows and controls: one this session started or resumed, or one it follows."""
    st.session_state[SharedKey.RUNNER] = handle
    st.session_state[SharedKey.RUN_COUNT] = st.session_state.get(SharedKey.RUN_COUNT, 0) + 1
    st.session_state[SharedKey.RUN_SAVED] = None


def resume_saved(run_id: str) -> None:
    """Resume: a run of this address that stopped before its end goes on from its last checkpoint."""
    if session_busy():
        return
    try:
        handle = ui.run_engine().engine.resume(ui.workspace(), run_id, owner_alive=ui.session_alive_check())
    except (StoreError, ValueError, CheckpointError) as error:
        st.session_state[TrainKey.MESSAGE] = f"Not resumed: {error}"
        return
    show_run(handle)


def follow(run_id: str) -> None:
    """Follow: a run of this address that trains on the cluster (started before a reload, or by another server)
    becomes this page's run."""
    if session_busy():
        return
    try:
        handle = ui.run_engine().engine.attach(ui.workspace(), run_id, owner_alive=ui.session_alive_check())
    except (LookupError, StoreError, ValueError, CheckpointError) as error:
        st.session_state[TrainKey.MESSAGE] = f"Cannot follow it: {error}"
        return
    show_run(handle)


def session_busy() -> bool:
    """A run or a sweep of this session is going: the settings stay as they are and nothing else starts."""
    return any(handle.alive for handle in session_handles())


def session_handles() -> list[RunHandle]:
    """This session's runs: the page's run, if any, and its sweep's."""
    runner: RunHandle | None = st.session_state.get(SharedKey.RUNNER)
    return ([] if runner is None else [runner]) + [handle for _, handle in sweep_handles()]


@dataclass(frozen=True)
class PageSweep:
    """This session's sweep: the setting it varies, and each run's value as shown with its handle."""

    label: str
    runs: list[tuple[str, RunHandle]]
    collected: set[str] = field(default_factory=set)  # runs whose model joined the session's models (unsaved ones)


def sweep_handles() -> list[tuple[str, RunHandle]]:
    sweep: PageSweep | None = st.session_state.get(TrainKey.SWEEP)
    return [] if sweep is None else sweep.runs


def resumes_from(record: RunRecord) -> str:
    """Where Resume picks the run up, when that is before where it stopped (the last epoch's checkpoint of a run
    cut short mid-epoch): the steps after it are trained again."""
    point = resumable_checkpoint(record)
    if point is None or point.step >= record.steps:
        return ""
    return f"; Resume goes on from step {point.step:,}, where epoch {point.epoch} ended"


def unfinished_runs(busy: bool) -> None:
    """The runs of this address that stopped before their end, each with Resume."""
    records = ui.resumable_runs(ui.workspace())[:RESUMABLE_SHOWN]
    if not records:
        return
    with st.expander(f"Unfinished runs at this address ({len(records)})", expanded=any(
            record.end_reason.value != "user" for record in records)):
        for record in records:
            text, button = st.columns([4, 1])
            text.markdown(f"**{record.name}**: {record.status} (step {record.steps:,} of {record.total_steps:,})"
                          f"{resumes_from(record)}")
            button.button("Resume", key=f"{TrainKey.RESUME}-{record.id}", disabled=busy, on_click=resume_saved,
                          args=(record.id,), help="Goes on from its last checkpoint: weights, optimizer state, "
                                                  "step and random generators; its loss curve continues.")


def live_elsewhere(busy: bool) -> None:
    """The runs of this address that train on the cluster and that this tab does not show (it was reloaded, the app
    server restarted, or another tab shows them), each with Follow; none on the embedded engine, whose runs live in
    the session that started them."""
    engine = ui.run_engine().engine
    store = ui.run_store().store
    shown = {handle.run_id for handle in session_handles()}
    try:
        elsewhere = [run_id for run_id in engine.live_runs(ui.workspace()) if run_id not in shown]
        records = [store.get_run(ui.workspace(), run_id) for run_id in elsewhere]
    except StoreError:
        return  # the sidebar says why
    if not records:
        return
    with st.expander(f"Runs of this address training now ({len(records)})", expanded=True):
        for record in records:
            text, button = st.columns([4, 1])
            text.markdown(f"**{record.name}**: {record.status} (step {record.steps:,} of {record.total_steps:,})")
            button.button("Follow", key=f"{TrainKey.FOLLOW}-{record.id}", disabled=busy, on_click=follow,
                          args=(record.id,), help="Show this run here, with its live view, Pause and Stop.")


def sweep_section(busy: bool) -> None:
    """Sweep one setting: one run per value, the other settings as the sidebar has them."""
    kind = chosen_type()
    settings = train_sweep.sweep_settings(kind)
    store_problem = ui.run_store().problem
    with st.expander("Sweep one setting", expanded=bool(sweep_handles())):
        st.caption("Each value becomes a run, with every other setting as in the sidebar; they train side by side "
                   "(as many at once as there are places) and are kept at this address. The Compare page draws "
                   "the sweep: each run's score against the value, beside PCA for a code-size sweep.")
        label = st.selectbox("Setting to sweep", list(settings), key=TrainKey.SWEEP_SETTING, disabled=busy)
        swept = settings[label]
        current = train_sweep.current_value(swept, kind, *chosen_configs())
        values_key = f"{TrainKey.SWEEP_VALUES}-{swept.field}"
        if swept.listed:
            st.multiselect("Values", swept.options(), default=swept.suggested(current), key=values_key,
                           format_func=swept.name_of, disabled=busy)
        else:
            st.text_input("Values, separated by commas", ", ".join(map(swept.written, swept.suggested(current))),
                          key=values_key, disabled=busy,
                          help=f"From {link.bound(swept.setting.low)} to {link.bound(swept.setting.high)}.")
        start_column, stop_column = st.columns(2)
        start_column.button("Start sweep", key=TrainKey.SWEEP_START, disabled=busy or store_problem is not None,
                            on_click=start_sweep, args=(label,), type="primary",
                            help=store_problem or f"At most {train_sweep.MOST_RUNS} runs.")
        stop_column.button("Stop sweep", key=TrainKey.SWEEP_STOP, on_click=stop_sweep,
                           disabled=not any(run.alive for _, run in sweep_handles()),
                           help="Stops every run of the sweep; each keeps its model so far.")
        message = st.session_state.pop(TrainKey.SWEEP_MESSAGE, None)
        if message:
            st.error(message)


def start_sweep(label: str) -> None:
    if session_busy():
        return
    kind = chosen_type()
    swept = train_sweep.sweep_settings(kind).get(label)
    if swept is None:  # the type changed between the drawing and the click: the setting is not one of its own
        st.session_state[TrainKey.SWEEP_MESSAGE] = f"Not started: {kind.title} has no setting {label!r}."
        return
    given = st.session_state.get(f"{TrainKey.SWEEP_VALUES}-{swept.field}")
    try:
        values = list(given or []) if swept.listed else swept.parse(given or "")
        runs = train_sweep.sweep_runs(swept, values, kind, configs_for,
                                      prefix=f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}")
    except (ConfigError, ValueError) as error:
        st.session_state[TrainKey.SWEEP_MESSAGE] = f"Not started: {error}."
        return
    sweep = PageSweep(label, [])
    st.session_state[TrainKey.SWEEP] = sweep  # first: a run started before a later one fails is kept and shown
    for run in runs:
        try:
            handle = start_run(run.model_config, run.train_config, run.name)
        except Exception as error:  # a cluster's own errors too: the runs started so far go on, and say so
            st.session_state[TrainKey.SWEEP_MESSAGE] = (f"The run {run.shown} was not started, nor the ones after "
                                                       f"it: {error}.")
            break
        sweep.runs.append((run.shown, handle))


def stop_sweep() -> None:
    for _, handle in sweep_handles():
        handle.stop()


def sweep_view() -> None:
    """Every run of the sweep at once: a line each (state, step, loss, held-out MSE, speed) and their loss curves."""
    sweep: PageSweep | None = st.session_state.get(TrainKey.SWEEP)
    if sweep is None or not sweep.runs:
        return
    handles, swept_label = sweep.runs, sweep.label
    rows, series = [], []
    for index, (shown, handle) in enumerate(handles):
        snap = handle.snapshot()
        history = snap.history
        rows.append({swept_label: shown, "state": snap.state.value, "step": f"{snap.step:,} of {snap.total_steps:,}",
                     "loss now": history.train_loss[-1] if history.train_loss else None,
                     "held-out MSE": history.val_mse[-1] if history.val_mse else None,
                     "samples/s": round(history.samples_per_s) if history.samples_per_s else None,
                     "note": snap.error or snap.stop_message or handle.notice or handle.store_problem or ""})
        batch = handle.train_config.batch_size
        series.append(compare_figures.LossSeries(shown, [(step + 1) * batch for step in range(len(history.train_loss))],
                                                 history.train_loss, model_index=index))
    going = sum(handle.alive for _, handle in handles)
    st.subheader(f"Sweep: {len(handles)} runs, {going} going" if going else f"Sweep: {len(handles)} runs, ended")
    st.dataframe(rows, hide_index=True, width="stretch")
    ui.chart(compare_figures.loss_curves(series), key="sweep-loss")
    if not going:
        unsaved = [shown for shown, handle in handles if handle.store_problem or handle.run_id is None]
        st.caption("Every run of the sweep has ended"
                   + (f"; {', '.join(unsaved)} could not be saved at this address (see the note), and joined this "
                      f"session's model choice instead" if unsaved else " and is kept at this address")
                   + ". **Compare** opens on it: each run's score against the value.")


def collect_unsaved_sweep_runs() -> None:
    """A sweep's runs are kept by the run store; one whose writes failed joins this session's models instead, once
    it has ended, so that no trained model is lost."""
    sweep: PageSweep | None = st.session_state.get(TrainKey.SWEEP)
    if sweep is None:
        return
    for shown, handle in sweep.runs:
        unsaved = handle.store_problem is not None or handle.run_id is None
        if unsaved and not handle.alive and shown not in sweep.collected:
            sweep.collected.add(shown)
            ckpt = handle.final_checkpoint()
            if ckpt is not None:
                ui.add_session_model(f"Sweep run {sweep.label} {shown}", ckpt)


def pause_or_resume() -> None:
    runner: RunHandle = st.session_state[SharedKey.RUNNER]
    if runner.pause_requested:  # not the state: a second click during the step in flight must still resume
        runner.resume()
    else:
        runner.pause()


def stop() -> None:
    st.session_state[SharedKey.RUNNER].stop()


def reset() -> None:
    runner: RunHandle | None = st.session_state.get(SharedKey.RUNNER)
    running = session_handles()
    for handle in running:
        handle.stop()
    for handle in running:
        handle.join(30)
    if runner is not None:
        ui.collect_finished_run()  # a run stopped a moment ago may not be in the model choice yet: keep its model
    collect_unsaved_sweep_runs()
    st.session_state.pop(SharedKey.RUNNER, None)
    st.session_state[SharedKey.RUN_SAVED] = None
    st.session_state.pop(TrainKey.SWEEP, None)


def runs(count: int) -> str:
    """'1 run', '2 runs'."""
    return f"{count} run{'' if count == 1 else 's'}"


def server_line() -> None:
    load = ui.run_engine().engine.load()
    st.caption(f"{load.trained_by} trains {runs(load.places)} at once: {load.training} training now, {load.waiting} "
               f"waiting. Pause gives your place to the next run waiting (your progress stays); Resume queues "
               f"again. A run whose browser tab has been closed for {ORPHAN_SECONDS:.0f} s stops by itself.")


def progress(snap: RunSnapshot, runner: RunHandle) -> None:
    notice = runner.notice
    if snap.state is RunState.WAITING and notice is None:
        load = ui.run_engine().engine.load()
        st.info(f"Waiting: {runs(snap.runs_ahead)} ahead of yours. {load.trained_by} trains {runs(load.places)} at "
                f"once ({load.training} training now, {load.waiting} waiting); yours starts by itself when a place "
                f"frees.")
    elif notice is not None:
        st.info(notice)
    epochs = snap.total_steps // snap.steps_per_epoch
    left = snap.seconds_left
    st.progress(snap.step / snap.total_steps,
                text=f"{snap.state.capitalize()} · epoch {snap.epoch} of {epochs} · step {snap.step:,} of "
                     f"{snap.total_steps:,} · {snap.history.samples_per_s:,.0f} samples/s"
                     + (f" · about {left:,.0f} s left" if left is not None and snap.state is RunState.RUNNING else ""))


def live_view(log_scale: bool, channel: int) -> None:
    with st.container(key="live"):
        server_line()  # here, not above: its counts change while a run goes, and the fragment redraws them
        live_panels(log_scale, channel)
        sweep_view()
        was_live = st.session_state.get(TrainKey.WAS_LIVE)
        if was_live and not session_busy():
            st.session_state[TrainKey.WAS_LIVE] = False
            st.rerun(scope="app")  # the run ended: redraw buttons, results and the sidebar's model list


def stop_notice(snap: RunSnapshot, runner: RunHandle) -> None:
    if runner.store_problem:
        st.warning(runner.store_problem)
    if snap.error:
        st.error(f"Training failed: {snap.error}")
    elif snap.stop_reason is StopReason.DIVERGED:
        st.error(f"Training stopped: {snap.stop_message}")
    elif snap.stop_reason is StopReason.COLLAPSED:
        st.error(f"Training stopped, the model collapsed: {snap.stop_message}")
    elif snap.stop_reason is StopReason.SESSION_GONE:
        st.warning(f"This run stopped because this tab was away for more than {ORPHAN_SECONDS:.0f} s (closed, or "
                   f"the connection dropped), and its training data was freed. Its model so far is kept in the "
                   f"model choice; Start trains a new one.")


def live_panels(log_scale: bool, channel: int) -> None:
    runner: RunHandle | None = st.session_state.get(SharedKey.RUNNER)
    if runner is None:
        if not sweep_handles():
            st.info("Choose settings in the sidebar and press Start. The loss curve, the filters and the "
                    "reconstructions below move while the network learns.")
        return
    data = ui.shared_data()
    snap = runner.snapshot()
    progress(snap, runner)
    stop_notice(snap, runner)
    history = snap.history
    left, right = st.columns([3, 2])
    ui.chart(train_figures.loss_chart(history.train_loss, history.val_step, history.val_mse,
                                      loss_name=runner.loss_label, log_scale=log_scale, total_steps=snap.total_steps,
                                      terms=history.terms, term_labels=runner.term_labels),
             key="loss-chart", where=left)
    ui.chart(train_figures.filters_figure(snap.filters["conv1"], snap.filters["conv2"][channel], channel),
             key="filters", where=right)
    st.image(train_figures.comparison_image(data.val_images[:PREVIEW_DIGITS].numpy() / 255, snap.previews),
             caption=f"Validation digits #0 to #{PREVIEW_DIGITS - 1} (top) and their reconstructions now",
             output_format="PNG")  # JPEG would smear the pixels


def results() -> None:
    label = st.session_state.get(SharedKey.RUN_SAVED)
    ckpt = st.session_state.get(SharedKey.MODELS, {}).get(label)
    if ckpt is None:
        return
    st.success(f"The model of this run is in the sidebar's model choice on every page as **{label}**."
               + (" It is kept at this page's address (see the sidebar's link)." if runner_saved() else ""))
    score, pca, download = st.columns(3)
    score.metric("Held-out MSE per pixel", f"{ckpt.held_out_mse:.4f}",
                 help=f"On the {ckpt.evaluated_on}, which the model never trained on, with its final weights.")
    pca_score = ckpt.metrics.get("pca_mse")
    pca.metric(f"PCA with {ckpt.model_config.code_size} components",
               "not fitted" if pca_score is None else f"{pca_score:.4f}",
               help="Fitted on the same training digits, scored on the same held-out digits (not fitted when "
                    "the run's training digits were freed because its tab went away).")
    download.download_button("Download checkpoint", checkpoint.to_bytes(ckpt), file_name=f"{ckpt.model_type}-run.pt",
                             mime="application/octet-stream", key=TrainKey.DOWNLOAD)
    samples, wall = ckpt.history.get("samples", 0), ckpt.metrics.get("wall_seconds") or 0
    if wall:
        st.caption(f"Trained on {samples:,} digits in {wall:.1f} s of wall time, validation included: "
                   f"{samples / wall:,.0f} samples/s overall.")


def runner_saved() -> bool:
    """The current run is in the run store: created there, and no write has failed."""
    runner: RunHandle | None = st.session_state.get(SharedKey.RUNNER)
    return runner is not None and runner.run_id is not None and runner.store_problem is None


runner: RunHandle | None = st.session_state.get(SharedKey.RUNNER)
# Decided once, before the sidebar collects ended runs: a run that ends between the two is then still seen
# by the live fragment, which redraws the page when it notices the end.
busy = session_busy()
collect_unsaved_sweep_runs()
run_busy = runner is not None and runner.alive
take_address(busy)
address = link.encode(*chosen_configs())
ui.model_sidebar(link_settings=address)
follow_address(address)  # after the sidebar has put the workspace in the address
settings(disabled=busy)
st.title("Train an autoencoder")
link_problems()
engine_problem = ui.run_engine().problem
if engine_problem:
    st.warning(f"{engine_problem[:1].upper()}{engine_problem[1:]}.")
buttons = st.columns(4)
buttons[0].button("Start", key=TrainKey.START, disabled=busy, on_click=start, type="primary")
buttons[1].button("Pause/Resume", key=TrainKey.PAUSE, disabled=not run_busy, on_click=pause_or_resume)
buttons[2].button("Stop", key=TrainKey.STOP, disabled=not run_busy, on_click=stop)
buttons[3].button("Reset", key=TrainKey.RESET, disabled=not session_handles(), on_click=reset,
                  help="Clear the run and the sweep from the page (those still going stop); their models stay in the "
                       "model choice.")
message = st.session_state.pop(TrainKey.MESSAGE, None)
if message:
    st.error(message)
unfinished_runs(busy)
live_elsewhere(busy)
sweep_section(busy)
# View options live outside the fragment: a widget inside it would be sent and redrawn every second.
scale_column, channel_column = st.columns([1, 3])
log_scale = scale_column.toggle("Log scale", key=TrainKey.LOG_SCALE, value=True)
channel = channel_column.slider("Conv2 output channel shown", 0, CHANNELS - 1, 0, key=TrainKey.CHANNEL,
                                help=f"Conv2 makes {CHANNELS} channels, each from {CHANNELS} kernels (one per conv1 "
                                     f"channel).")
st.html(STILL_LIVE_VIEW)
st.session_state[TrainKey.WAS_LIVE] = busy
st.fragment(run_every=REFRESH_SECONDS if busy else None)(live_view)(log_scale, channel)
results()
