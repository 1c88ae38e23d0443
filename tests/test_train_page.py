"""The training page under AppTest: its knobs read from the configs, live progress and the server's run count,
Pause, Stop, Reset, divergence, two independent sessions, and how an uploaded stopped run is described."""

import base64
import json
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from cae.engine import checkpoint
from cae.engine.data import MnistData
from cae.engine.train_config import LOSSES, OPTIMIZERS, PAGE_DEFAULTS, SCHEDULES, TrainConfig
from cae.engine.trainer import RunState, StopReason, Trainer
from cae.models.autoencoder import ACTIVATIONS, ConvAutoencoder, ModelConfig
from cae.models.config import Knob
from cae.models.noise import KIND_KNOB
from cae.models.registry import MODEL_TYPES, ModelType, build_model, type_of
from cae.ui import common as ui
from tests.conftest import ROOT

FAST = {"t_subset": 1000, "t_batch": 64, "t_epochs": 3, "t_lr": 1e-3}  # 16 steps an epoch
SHIPPED = len(checkpoint.PRETRAINED)  # the sidebar lists the shipped models first


@pytest.fixture(autouse=True)
def places(monkeypatch):
    """Two runs may train at once unless a test says otherwise (the server's queue is made afresh per test)."""
    monkeypatch.setenv("CAE_MAX_RUNS", "2")
    ui.run_queue.clear()
    yield
    ui.run_queue.clear()


def fresh_train_page() -> AppTest:
    """The Train page as a new visitor first sees it: every knob at its default."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/1_Train.py").run()
    assert not at.exception
    return at


def train_page(**settings) -> AppTest:
    at = fresh_train_page()
    for key, value in {**FAST, **settings}.items():
        at.session_state[key] = value
    at.run()
    return at


@pytest.fixture
def page(full_mnist):
    at = train_page()
    yield at
    runner = at.session_state["runner"] if "runner" in at.session_state else None
    if runner is not None:
        runner.stop()
        runner.join(30)


def figure(at, title_part: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec["layout"].get("title")
        if isinstance(title, dict) and title_part in title.get("text", ""):
            return spec
    raise AssertionError(f"no figure titled ...{title_part}...")


def values(array) -> np.ndarray:
    """A plotly data array as JSON gives it: a list, or a typed array {"dtype", "bdata"} in base64."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array)


def loss_points(at) -> int:
    return len(values(figure(at, "Loss")["data"][0].get("x", [])))


def wait_for(at, condition, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        at.run()
        assert not at.exception
        if condition(at):
            return
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def runner(at):
    return at.session_state["runner"]


def within(values, field: str) -> bool:
    low, high = TrainConfig.RANGES[field]
    return bool(values) and all(low <= value <= high for value in values)


def test_every_knob_takes_its_range_choices_and_default_from_the_configs(full_mnist):
    at = fresh_train_page()
    model, train = PAGE_DEFAULTS.model, PAGE_DEFAULTS.train
    kind = at.selectbox(key="t_type")
    assert kind.value == type_of(model).name and kind.options == [t.title for t in MODEL_TYPES.values()]
    code = at.slider(key="t_code")
    assert code.value == model.code_size and code.min == ModelConfig.RANGES["code_size"][0]
    assert code.max <= ModelConfig.RANGES["code_size"][1]  # the page may offer less, never more
    dropout = at.slider(key="t_dropout")
    assert (dropout.min, dropout.max) == ModelConfig.RANGES["dropout"] and dropout.value == model.dropout
    assert at.toggle(key="t_tied").value == model.tied_weights
    activation = at.selectbox(key="t_act")
    assert activation.options == list(ACTIVATIONS) and activation.value == model.activation

    loss, optimizer, schedule = at.selectbox(key="t_loss"), at.selectbox(key="t_opt"), at.selectbox(key="t_schedule")
    assert loss.options == list(LOSSES.values()) and loss.value == train.loss
    assert len(optimizer.options) == len(OPTIMIZERS) and optimizer.value == train.optimizer
    assert f"momentum {train.momentum:g}" in optimizer.options[list(OPTIMIZERS).index("sgd")]
    assert schedule.options == list(SCHEDULES.values()) and schedule.value == train.schedule
    rate = at.select_slider(key="t_lr")
    assert rate.value == train.learning_rate and within([float(o) for o in rate.options], "learning_rate")
    batch = at.select_slider(key="t_batch")
    assert batch.value == train.batch_size and within([int(o) for o in batch.options], "batch_size")
    subset = at.select_slider(key="t_subset")
    assert subset.value == train.train_subset
    assert within([0 if o == "all" else int(o.replace(",", "")) for o in subset.options], "train_subset")
    epochs = at.slider(key="t_epochs")
    assert epochs.value == train.epochs and epochs.min == TrainConfig.RANGES["epochs"][0]
    assert epochs.max <= TrainConfig.RANGES["epochs"][1]
    seed = at.number_input(key="t_seed")
    assert (seed.min, seed.max) == TrainConfig.RANGES["seed"] and seed.value == train.seed
    channel = at.slider(key="t_channel")  # every channel conv2 really has, checked on a built network
    assert (channel.min, channel.max) == (0, build_model(model).conv2.weight.shape[0] - 1)


@pytest.mark.parametrize("name", [name for name, kind in MODEL_TYPES.items() if kind.config_class.KNOBS])
def test_a_types_knobs_take_their_range_choices_and_default_from_its_config(full_mnist, name):
    at = fresh_train_page()
    at.session_state["t_type"] = name
    at.run()
    config_class = MODEL_TYPES[name].config_class
    for knob in config_class.KNOBS:
        default = getattr(config_class(), knob.field)
        if knob.choices:
            widget = at.selectbox(key=f"t_{knob.field}")
            assert widget.options == [knob.name_of(choice) for choice in knob.choices]  # as people read them
        else:
            widget = at.slider(key=f"t_{knob.field}")
            assert (widget.min, widget.max, widget.step) == (knob.low, knob.high, knob.step)
        assert widget.label == knob.label and widget.value == default


def test_a_first_start_trains_the_page_defaults_exactly(full_mnist):
    at = fresh_train_page()
    at.button(key="t_start").click().run()
    try:
        assert not at.exception
        trainer = runner(at).trainer
        assert trainer.model_config == PAGE_DEFAULTS.model and trainer.config == PAGE_DEFAULTS.train
    finally:
        runner(at).stop()
        runner(at).join(30)


def test_controls_and_labels(page):
    assert [b.label for b in page.button] == ["Start", "Pause/Resume", "Stop", "Reset", "Start sweep", "Stop sweep"]
    assert page.button(key="t_pause").disabled and page.button(key="t_stop").disabled
    assert any("press Start" in i.value for i in page.info)
    assert any("full MNIST" in c.value for c in page.sidebar.caption)


def test_start_then_the_loss_chart_gains_points_and_filters_are_drawn(page):
    page.session_state["t_epochs"] = 50
    page.button(key="t_start").click().run()
    assert not page.exception and page.button(key="t_start").disabled and not page.button(key="t_stop").disabled
    wait_for(page, lambda at: loss_points(at) >= 3)
    first = loss_points(page)
    wait_for(page, lambda at: loss_points(at) > first)
    filters = figure(page, "filters")
    assert [(t["type"], t["zmid"]) for t in filters["data"]] == [("heatmap", 0), ("heatmap", 0)]  # conv1, conv2
    assert "into channel 0" in filters["layout"]["annotations"][1]["text"]
    page.slider(key="t_channel").set_value(5).run()
    assert "into channel 5" in figure(page, "filters")["layout"]["annotations"][1]["text"]
    assert "reconstructions now" in page.get("image")[0].proto.imgs[0].caption
    page.button(key="t_stop").click().run()
    wait_for(page, lambda at: at.success)


def test_a_short_run_finishes_and_its_model_joins_the_choice_with_pca_beside_it(page, monkeypatch):
    scored_again = []
    monkeypatch.setattr(ui, "model_mse", lambda *args, **kwargs: scored_again.append(args) or 0.5)
    page.button(key="t_start").click().run()
    wait_for(page, lambda at: runner(at).state is RunState.FINISHED and at.success, 120)
    # the last epoch's check over every validation digit is the score: the model is not scored a second time
    final = runner(page).trainer.final_mse
    assert not scored_again and final is not None
    saved = page.session_state[ui.SharedKey.MODELS][page.session_state[ui.SharedKey.RUN_SAVED]]
    assert saved.metrics[checkpoint.SCORE] == saved.held_out_mse == final and "test_mse" not in saved.metrics
    assert saved.evaluated_on == "10,000 test digits"  # the score's name and the digits it was measured on
    assert page.selectbox(key="model_select").options[SHIPPED].startswith("Run 1: CAE, code 32, trained at step 48")
    assert [m.label for m in page.metric][:2] == ["Held-out MSE per pixel", "PCA with 32 components"]
    assert "10,000 test digits" in page.metric[0].help
    assert 0 < float(page.metric[0].value) < 0.2 and 0 < float(page.metric[1].value) < 0.1
    assert page.get("download_button")
    assert len(figure(page, "Loss")["data"]) == 3  # raw, smoothed, validation


def test_pause_stop_and_reset(page):
    page.session_state["t_epochs"] = 50
    page.button(key="t_start").click().run()
    wait_for(page, lambda at: runner(at).trainer.step_count > 2)
    page.button(key="t_pause").click().run()
    wait_for(page, lambda at: runner(at).state is RunState.PAUSED and "Paused" in at.get("progress")[0].proto.text)
    paused_at = runner(page).trainer.step_count
    for _ in range(5):  # paused: no step however often the page looks
        page.run()
        assert runner(page).trainer.step_count == paused_at
    page.button(key="t_pause").click().run()
    wait_for(page, lambda at: runner(at).trainer.step_count > paused_at)
    page.button(key="t_stop").click().run()
    wait_for(page, lambda at: not runner(at).alive and at.success)
    assert "stopped at step" in page.selectbox(key="model_select").options[SHIPPED]
    page.button(key="t_reset").click().run()
    assert not page.exception and "runner" not in page.session_state
    assert any("press Start" in i.value for i in page.info)
    assert len(page.selectbox(key="model_select").options) == SHIPPED + 1  # the stopped run's model is kept


def test_reset_right_after_stop_keeps_the_stopped_model(page):
    page.session_state["t_epochs"] = 50
    page.button(key="t_start").click().run()
    wait_for(page, lambda at: runner(at).trainer.step_count > 2)
    page.button(key="t_stop").click()
    page.button(key="t_reset").click().run()  # both in one rerun: the page never saw the run end
    assert not page.exception and "runner" not in page.session_state
    models = page.session_state[ui.SharedKey.MODELS]
    assert len(models) == 1 and "stopped at step" in next(iter(models))


def test_a_run_whose_tab_went_away_stops_and_still_keeps_its_model(page):
    page.session_state["t_epochs"] = 50
    page.button(key="t_start").click().run()
    wait_for(page, lambda at: runner(at).trainer.step_count > 2)
    runner(page).owner_alive = lambda: False  # what Runtime says of a session whose tab has closed
    runner(page).orphan_seconds = 0
    wait_for(page, lambda at: not runner(at).alive)
    assert runner(page).trainer.stop_reason is StopReason.SESSION_GONE
    assert runner(page).trainer.train_images is None  # the data was freed ...
    wait_for(page, lambda at: at.success)
    assert any("was away for more than" in w.value for w in page.warning)
    assert "stopped at step" in page.selectbox(key="model_select").options[SHIPPED]  # ... the model was not
    assert [m.value for m in page.metric][1] == "not fitted"  # PCA needs the freed digits
    page.selectbox(key="model_select").set_value(page.selectbox(key="model_select").options[SHIPPED]).run()
    assert [b.label for b in page.sidebar.get("download_button")] == ["Download this model"]


def test_start_twice_never_starts_two_threads(page):
    page.session_state["t_epochs"] = 50
    page.button(key="t_start").click().run()
    first = runner(page)
    assert page.button(key="t_start").disabled  # no second click possible while it runs
    assert first.start() is False  # and a click that raced the redraw starts nothing
    page.run()
    assert runner(page) is first
    assert sum(t.name == "cae-trainer" for t in threading.enumerate()) == 1


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_learning_rate_10_collapses_the_model_and_the_page_says_what_happened(full_mnist, optimizer):
    at = train_page(t_lr=10.0, t_opt=optimizer, t_epochs=5)
    at.button(key="t_start").click().run()
    wait_for(at, lambda a: not runner(a).alive, 120)
    at.run()
    trainer = runner(at).trainer
    assert trainer.stop_reason is StopReason.COLLAPSED and trainer.step_count == 32  # the branch, always reached
    shown = [e.value for e in at.error if "collapsed" in e.value]
    assert shown and "same picture for every digit" in shown[0] and "Try 0.001" in shown[0]
    assert all(p.isfinite().all() for p in trainer.model.parameters())
    assert not at.exception


def test_a_nan_mid_run_stops_with_the_message(page):
    page.session_state["t_epochs"] = 50
    page.button(key="t_start").click().run()
    wait_for(page, lambda at: runner(at).trainer.step_count > 2)
    with runner(page).reading() as trainer:
        trainer.model.conv1.weight.data[0, 0, 0, 0] = float("nan")
    wait_for(page, lambda at: not runner(at).alive)
    wait_for(page, lambda at: any("Training stopped" in e.value for e in at.error))
    assert any("nan" in e.value for e in page.error)


def test_an_exception_in_the_thread_is_shown(page, monkeypatch):
    page.session_state["t_epochs"] = 50  # still running when the fault is planted (a 3-epoch run can end first)
    page.button(key="t_start").click().run()
    monkeypatch.setattr(runner(page).trainer, "step", lambda: 1 / 0)
    wait_for(page, lambda at: any("ZeroDivisionError" in e.value for e in at.error))


def loss_values(at) -> np.ndarray:
    return values(figure(at, "Loss")["data"][0].get("y", []))


def test_going_home_and_back_keeps_the_run_and_its_history(page):
    page.session_state["t_epochs"] = 50
    page.session_state["t_code"] = 12
    page.button(key="t_start").click().run()
    # The chart draws the run's published copy (every 0.25 s), which may trail the trainer's own step count.
    wait_for(page, lambda at: loss_points(at) > 3)
    before = loss_values(page)
    page._page_hash = calc_hash("home")  # the home page is app.py's function `home`: switch_page takes files only
    page.run()
    assert not page.exception
    page.switch_page("pages/1_Train.py").run()
    assert not page.exception and runner(page).alive
    wait_for(page, lambda at: loss_points(at) > len(before))  # (an epoch's validation may hold it up)
    assert page.slider(key="t_code").value == 12  # the settings came back too
    # The same run's history, grown: the points drawn before leaving are still the first ones.
    assert np.array_equal(loss_values(page)[:len(before)], before)


def test_two_sessions_train_side_by_side_without_mixing(full_mnist):
    a, b = train_page(t_code=8, t_epochs=50), train_page(t_code=16, t_epochs=50, t_seed=7)
    try:
        a.button(key="t_start").click().run()
        b.button(key="t_start").click().run()
        wait_for(a, lambda at: runner(at).trainer.step_count > 3)
        wait_for(b, lambda at: runner(at).trainer.step_count > 3)
        ra, rb = runner(a), runner(b)
        assert ra is not rb and ra.trainer.model is not rb.trainer.model
        assert ra.trainer.model.config.code_size == 8 and rb.trainer.model.config.code_size == 16
        a.button(key="t_stop").click().run()
        wait_for(a, lambda at: not runner(at).alive and at.success)
        assert rb.alive and rb.state is RunState.RUNNING  # stopping one session's run leaves the other's alone
        assert len(a.selectbox(key="model_select").options) == SHIPPED + 1
        b.run()
        assert len(b.selectbox(key="model_select").options) == SHIPPED
    finally:
        for at in (a, b):
            runner(at).stop()
            runner(at).join(30)


def test_beyond_the_server_limit_start_waits_in_the_queue_then_trains(full_mnist, monkeypatch):
    monkeypatch.setenv("CAE_MAX_RUNS", "1")
    ui.run_queue.clear()
    a, b = train_page(t_epochs=50), train_page(t_epochs=50, t_seed=7)
    try:
        a.button(key="t_start").click().run()
        wait_for(a, lambda at: runner(at).trainer.step_count > 0)
        b.button(key="t_start").click().run()
        wait_for(b, lambda at: any("Waiting: 0 runs ahead of yours" in i.value for i in at.info))
        assert runner(b).state is RunState.WAITING and runner(b).trainer.step_count == 0
        # The count is read from the queue when the live view draws, the waiting notice from the run's last
        # snapshot: the two can be one refresh apart.
        wait_for(b, lambda at: any("1 training now, 1 waiting" in c.value for c in at.caption))
        a.button(key="t_stop").click().run()
        wait_for(b, lambda at: runner(at).trainer.step_count > 0)  # started by itself when the place freed
        assert runner(b).state is RunState.RUNNING
    finally:
        for at in (a, b):
            runner(at).stop()
            runner(at).join(30)


def test_a_short_vae_run_draws_its_kl_curve_and_joins_the_choice(page):
    page.session_state["t_type"] = "vae"
    page.run()
    assert page.slider(key="t_beta").value == 1.0 and not [s for s in page.selectbox if s.key == "t_loss"]
    page.session_state["t_beta"] = 2.0
    page.session_state["t_epochs"] = 1
    page.button(key="t_start").click().run()
    wait_for(page, lambda at: runner(at).state is RunState.FINISHED and at.success, 120)
    names = [trace["name"] for trace in figure(page, "Loss")["data"]]
    assert "beta x KL, smoothed" in names and "reconstruction, smoothed" in names
    assert "nats per digit" in figure(page, "Loss")["layout"]["yaxis"]["title"]["text"]
    history = runner(page).trainer.history
    assert np.allclose(np.add(history.terms["reconstruction"], history.terms["kl"]), history.train_loss, rtol=1e-5)
    assert runner(page).trainer.model_config.beta == 2.0
    assert page.selectbox(key="model_select").options[SHIPPED].startswith("Run 1: VAE, code 32")


def test_the_denoising_type_offers_its_noise_knobs_and_trains_with_them(page):
    page.session_state["t_type"] = "dae"
    page.run()
    kind = page.selectbox(key="t_noise")  # the noise kinds named as people read them; the value is the kind itself
    assert kind.options == [KIND_KNOB.name_of(choice) for choice in KIND_KNOB.choices]
    assert "salt and pepper" in kind.options and kind.value in KIND_KNOB.choices
    page.session_state["t_noise"] = "mask"
    page.session_state["t_noise_amount"] = 0.3
    page.session_state["t_epochs"] = 50
    page.button(key="t_start").click().run()
    wait_for(page, lambda at: runner(at).trainer.step_count > 0)
    config = runner(page).trainer.model_config
    assert (type(config).__name__, config.noise, config.noise_amount) == ("DenoisingConfig", "mask", 0.3)


@dataclass(frozen=True)
class SmoothedConfig(ModelConfig):
    """A made-up fourth type: the page must offer its own setting from KNOBS, without naming the type."""

    smoothing: float = 0.1

    KNOBS = (Knob("smoothing", "Smoothing", "A setting only this type has.", low=0.0, high=0.5, step=0.1),)


class SmoothedAutoencoder(ConvAutoencoder):
    pass


def test_a_new_type_in_the_registry_gets_its_own_knob_on_the_page_and_in_its_run(page, monkeypatch):
    monkeypatch.setitem(MODEL_TYPES, "smooth", ModelType("smooth", "Smoothed autoencoder", "A test type.",
                                                         SmoothedConfig, SmoothedAutoencoder))
    page.run()
    page.session_state["t_type"] = "smooth"
    page.run()
    assert page.slider(key="t_smoothing").label == "Smoothing" and page.slider(key="t_smoothing").value == 0.1
    slider_keys = [slider.key for slider in page.slider]
    assert "t_smoothing" in slider_keys and "t_beta" not in slider_keys  # no other type's knobs
    page.session_state["t_type"] = "vae"
    page.run()
    slider_keys = [slider.key for slider in page.slider]
    assert "t_beta" in slider_keys and "t_smoothing" not in slider_keys  # the check above can see a knob
    page.session_state["t_type"] = "smooth"
    page.run()
    page.session_state["t_smoothing"] = 0.3
    page.session_state["t_epochs"] = 50
    page.button(key="t_start").click().run()
    assert not page.exception
    assert type(runner(page).trainer.model_config) is SmoothedConfig
    assert runner(page).trainer.model_config.smoothing == 0.3


def live_captions(at) -> list[str]:
    """The captions inside the live view's container: what its fragment redraws every second while a run goes."""
    def inside(node, within: bool) -> list[str]:
        within = within or str(getattr(getattr(node, "proto", None), "id", "")).endswith("-live")
        found = [node.value] if within and node.type == "caption" else []
        for child in getattr(node, "children", {}).values():
            found += inside(child, within)
        return found

    return inside(at.main, False)


def test_the_server_line_counts_a_run_while_it_trains_in_plain_english(full_mnist, monkeypatch):
    monkeypatch.setenv("CAE_MAX_RUNS", "1")
    ui.run_queue.clear()
    at = train_page(t_epochs=50)
    try:
        assert any(line.startswith("This server trains 1 run at once: 0 training now, 0 waiting.")
                   for line in live_captions(at))
        at.button(key="t_start").click().run()
        wait_for(at, lambda a: runner(a).trainer.step_count > 0)  # it holds the server's place
        lines = [line for line in live_captions(at) if line.startswith("This server trains")]
        assert len(lines) == 1 and lines[0].startswith("This server trains 1 run at once: 1 training now, 0 waiting.")
    finally:
        runner(at).stop()
        runner(at).join(30)
    monkeypatch.setenv("CAE_MAX_RUNS", "2")
    ui.run_queue.clear()
    at = train_page()
    assert any(line.startswith("This server trains 2 runs at once: 0 training now") for line in live_captions(at))
    assert not [element for element in at.main if "run(s)" in str(getattr(element, "value", ""))]


def test_an_uploaded_checkpoint_of_a_run_stopped_in_its_first_epoch_says_so_in_the_sidebar(page, mnist):
    data = MnistData(mnist.source, mnist.train_images[:640], mnist.train_labels[:640], mnist.val_images[:200],
                     mnist.val_labels[:200])
    trainer = Trainer(ModelConfig(code_size=8), TrainConfig(epochs=4, batch_size=64), data)  # 10 steps an epoch
    for _ in range(3):
        trainer.step()
    trainer.stop()
    page.file_uploader(key="checkpoint_upload").set_value(("stopped.pt", checkpoint.to_bytes(trainer.checkpoint()),
                                                           "application/octet-stream")).run()
    assert not page.exception and page.selectbox(key="model_select").value == "Uploaded: stopped.pt"
    description = next(c.value for c in page.sidebar.caption if c.value.startswith("Autoencoder"))
    assert "trained on MNIST: 4 epochs" in description  # the plan, then how far it went
    assert description.endswith(" (epoch 1 of 4)") and "stopped after 3 " in description


def test_a_cluster_that_does_not_answer_is_said_plainly_and_runs_train_on_this_server(full_mnist, monkeypatch):
    """CAE_RAY_ADDRESS names a head nobody listens on: the page says so once, in a sentence, and Start trains here."""
    from tests.browser import free_port

    monkeypatch.setenv("CAE_RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    at = train_page(t_epochs=50)
    try:
        warnings = [warning.value for warning in at.warning]
        assert len(warnings) == 1 and "does not answer" in warnings[0]
        assert warnings[0].endswith("runs train on this server instead.")
        assert any(line.startswith("This server trains 2 runs at once") for line in live_captions(at))
        at.button(key="t_start").click().run()
        wait_for(at, lambda a: runner(a).trainer.step_count > 0)  # an embedded run: a thread of this process
    finally:
        if "runner" in at.session_state:
            runner(at).stop()
            runner(at).join(30)
