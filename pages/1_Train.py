"""Train page: set the knobs, press Start, and watch a convolutional autoencoder learn on MNIST.

Training runs in a background thread owned by this browser session (cae.training.TrainingRunner); the live view
is a fragment that redraws every second from a snapshot, so the page stays responsive and other pages keep working.
"""

from __future__ import annotations


import cae.appenv  # noqa: F401  (first: settles torch's threads before torch loads)
import streamlit as st

from cae import checkpoint, figures, ui
from cae.config import ConfigError
from cae.model import ACTIVATIONS, ModelConfig
from cae.training import LOSSES, OPTIMIZERS, RunSnapshot, Trainer, TrainConfig, TrainingRunner
from cae.ui import Key

LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0]
BATCH_SIZES = [16, 32, 64, 128, 256, 512]
SUBSETS = [500, 1000, 2000, 5000, 10000, 20000, 0]  # 0 = every training digit
PREVIEW_DIGITS = 8
REFRESH_SECONDS = 1.0
# The live view is replaced every second. Without this its elements fade while the fragment reruns and the progress
# bar slides: animation frames the browser draws in software, CPU taken from the trainer (about 0.05 of a core).
STILL_LIVE_VIEW = ("<style>.st-key-live, .st-key-live * {transition: none !important; animation: none !important}"
                   "</style>")

st.set_page_config(page_title="Train - CAE Explorer", page_icon="🏋️", layout="wide")


def settings(disabled: bool) -> None:
    """The sidebar knobs; each range comes from the config dataclasses, which validate again on Start."""
    s, m, t = ui.sticky, ModelConfig(), TrainConfig()
    with st.sidebar:
        st.header("Training settings")
        s(st.slider, "Code size", ModelConfig.RANGES["code_size"][0], 128, key="t_code", default=m.code_size,
          disabled=disabled, help="Numbers in the bottleneck. 2 makes a map; 32 is the post's.")
        s(st.slider, "Dropout", 0.0, 0.9, step=0.05, key="t_dropout", default=m.dropout, disabled=disabled,
          help="On the 512 features and on the code while training. The post used 0.5; it blurs.")
        s(st.toggle, "Tied weights", key="t_tied", default=m.tied_weights, disabled=disabled,
          help="The decoder's transposed convolutions reuse the encoder's kernels, as in the post.")
        s(st.selectbox, "Activation", list(ACTIVATIONS), key="t_act", default=m.activation, disabled=disabled,
          help="After each hidden layer; tanh is the post's.")
        s(st.selectbox, "Loss", list(LOSSES), key="t_loss", default=t.loss, disabled=disabled,
          format_func={"mse": "Mean squared error", "bce": "Binary cross-entropy"}.get,
          help="What training minimises. The chart's validation line is always MSE per pixel.")
        s(st.selectbox, "Optimizer", list(OPTIMIZERS), key="t_opt", default=t.optimizer, disabled=disabled,
          format_func={"adam": "Adam", "sgd": "SGD with momentum 0.9"}.get)
        s(st.select_slider, "Learning rate", LEARNING_RATES, key="t_lr", default=t.learning_rate, disabled=disabled,
          format_func=lambda v: f"{v:g}", help="Log scale. Try 10 to see divergence caught.")
        s(st.select_slider, "Batch size", BATCH_SIZES, key="t_batch", default=t.batch_size, disabled=disabled)
        s(st.slider, "Epochs", 1, 50, key="t_epochs", default=2, disabled=disabled)
        s(st.select_slider, "Training digits", SUBSETS, key="t_subset", default=10000, disabled=disabled,
          format_func=lambda v: "all" if v == 0 else f"{v:,}",
          help="A random subset (seeded); small ones make fast demos.")
        s(st.number_input, "Random seed", 0, 2**31 - 1, step=1, key="t_seed", default=t.seed, disabled=disabled,
          help="Same seed and settings, same run.")
        st.caption(f"Data: {ui.shared_data().describe()}")


def chosen_configs() -> tuple[ModelConfig, TrainConfig]:
    """The configs the knobs describe now (read at click time, so Start never uses a stale drawing's values)."""
    v = st.session_state
    return (ModelConfig(code_size=int(v["t_code"]), dropout=float(v["t_dropout"]), tied_weights=bool(v["t_tied"]),
                        activation=v["t_act"]),
            TrainConfig(epochs=int(v["t_epochs"]), batch_size=int(v["t_batch"]), learning_rate=float(v["t_lr"]),
                        optimizer=v["t_opt"], loss=v["t_loss"], train_subset=int(v["t_subset"]), seed=int(v["t_seed"])))


def start() -> None:
    runner: TrainingRunner | None = st.session_state.get(Key.RUNNER)
    if runner is not None and runner.alive:
        return  # a second Start while a run is going starts nothing
    try:
        trainer = Trainer(*chosen_configs(), ui.shared_data())
    except ConfigError as error:
        st.session_state[Key.RUN_MESSAGE] = f"Not started: {error}"
        return
    runner = TrainingRunner(trainer, preview_images=ui.shared_data().val_images[:PREVIEW_DIGITS],
                            preview_seconds=REFRESH_SECONDS)
    st.session_state[Key.RUNNER] = runner
    st.session_state[Key.RUN_COUNT] = st.session_state.get(Key.RUN_COUNT, 0) + 1
    st.session_state[Key.RUN_SAVED] = None
    runner.start()


def pause_or_resume() -> None:
    runner: TrainingRunner = st.session_state[Key.RUNNER]
    runner.resume() if runner.state == "paused" else runner.pause()


def stop() -> None:
    st.session_state[Key.RUNNER].stop()


def reset() -> None:
    runner: TrainingRunner | None = st.session_state.pop(Key.RUNNER, None)
    if runner is not None:
        runner.stop()
        runner.join(30)
    st.session_state[Key.RUN_SAVED] = None


def progress(snap: RunSnapshot) -> None:
    epochs = snap.total_steps // snap.steps_per_epoch
    left = snap.seconds_left
    st.progress(snap.step / snap.total_steps,
                text=f"{snap.state.capitalize()} · epoch {snap.epoch} of {epochs} · step {snap.step:,} of "
                     f"{snap.total_steps:,} · {snap.history.samples_per_s:,.0f} samples/s"
                     + (f" · about {left:,.0f} s left" if left is not None and snap.state == "running" else ""))


def live_view(log_scale: bool, channel: int, loss_name: str) -> None:
    with st.container(key="live"):
        live_panels(log_scale, channel, loss_name)


def live_panels(log_scale: bool, channel: int, loss_name: str) -> None:
    runner: TrainingRunner | None = st.session_state.get(Key.RUNNER)
    if runner is None:
        st.info("Choose settings in the sidebar and press Start. The loss curve, the filters and the "
                "reconstructions below move while the network learns.")
        return
    data = ui.shared_data()
    snap = runner.snapshot()
    progress(snap)
    if snap.error:
        st.error(f"Training failed inside its thread: {snap.error}")
    elif snap.stop_reason and snap.stop_reason != "stopped by the user":
        st.error(f"Training stopped: {snap.stop_reason}")
    h = snap.history
    left, right = st.columns([3, 2])
    ui.chart(figures.loss_chart(h.train_loss, h.val_step, h.val_mse, loss_name=loss_name, log_scale=log_scale,
                                total_steps=snap.total_steps), key="loss-chart", where=left)
    ui.chart(figures.filters_figure(snap.filters["conv1"], snap.filters["conv2"][channel], channel),
             key="filters", where=right)
    st.image(figures.comparison_image(data.val_images[:PREVIEW_DIGITS].numpy() / 255, snap.previews),
             caption=f"Validation digits #0 to #{PREVIEW_DIGITS - 1} (top) and their reconstructions now",
             output_format="PNG")  # JPEG would smear the pixels
    if snap.state not in ("running", "paused") and st.session_state.get(Key.RUN_WAS_LIVE):
        st.session_state[Key.RUN_WAS_LIVE] = False
        st.rerun(scope="app")  # the run ended: redraw buttons, results and the sidebar's model list


def results() -> None:
    label = st.session_state.get(Key.RUN_SAVED)
    ckpt = st.session_state.get(Key.MODELS, {}).get(label)
    if ckpt is None:
        return
    st.success(f"The model of this run is in the sidebar's model choice on every page as **{label}**.")
    a, b, c = st.columns(3)
    a.metric("Validation MSE per pixel", f"{ckpt.metrics['test_mse']:.4f}")
    b.metric(f"PCA with {ckpt.model_config['code_size']} components", f"{ckpt.metrics['pca_mse']:.4f}",
             help="Fitted on the same training digits, scored on the same validation digits.")
    c.download_button("Download checkpoint", checkpoint.to_bytes(ckpt), file_name="cae-run.pt",
                      mime="application/octet-stream", key="t_download")
    samples, wall = ckpt.history.get("samples", 0), ckpt.metrics.get("wall_seconds") or 0
    if wall:
        st.caption(f"Trained on {samples:,} digits in {wall:.1f} s of wall time, validation included: "
                   f"{samples / wall:,.0f} samples/s overall.")


runner: TrainingRunner | None = st.session_state.get(Key.RUNNER)
# Decided once, before the sidebar collects ended runs: a run that ends between the two is then still seen
# by the live fragment, which redraws the page when it notices the end.
busy = runner is not None and runner.alive
ui.model_sidebar()
settings(disabled=busy)
st.title("Train an autoencoder")
buttons = st.columns(4)
buttons[0].button("Start", key="t_start", disabled=busy, on_click=start, type="primary")
buttons[1].button("Pause/Resume", key="t_pause", disabled=not busy, on_click=pause_or_resume)
buttons[2].button("Stop", key="t_stop", disabled=not busy, on_click=stop)
buttons[3].button("Reset", key="t_reset", disabled=runner is None, on_click=reset,
                  help="Forget this run's progress; a model it finished stays in the model choice.")
message = st.session_state.pop(Key.RUN_MESSAGE, None)
if message:
    st.error(message)
# View options live outside the fragment: a widget inside it would be sent and redrawn every second.
scale_column, channel_column = st.columns([1, 3])
log_scale = scale_column.toggle("Log scale", key="t_log", value=True)
channel = channel_column.slider("Conv2 output channel shown", 0, 31, 0, key="t_channel",
                                help="Conv2 makes 32 channels, each from 32 kernels (one per conv1 channel).")
st.html(STILL_LIVE_VIEW)
st.session_state[Key.RUN_WAS_LIVE] = busy
loss_name = {"mse": "MSE", "bce": "BCE"}[runner.trainer.config.loss if runner else st.session_state["t_loss"]]
st.fragment(run_every=REFRESH_SECONDS if busy else None)(live_view)(log_scale, channel, loss_name)
results()
