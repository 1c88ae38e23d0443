"""The Train page's settings in its address, under AppTest and once in Chromium: a link opens the page with its
settings, a bad value gives the default and says so once, a changed knob changes the address (the workspace `w`
and keys the page does not own kept), the sidebar's link holds the settings, a return from another page keeps
them, and a link opened while a run is going leaves the run alone."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from streamlit.testing.v1 import AppTest

from cae.engine.store import new_workspace_id
from cae.engine.train_config import PAGE_DEFAULTS
from cae.models.registry import MODEL_TYPES
from cae.ui import common as ui
from cae.views import train_link as link
from tests.browser import chromium
from tests.conftest import ROOT
from tests.test_train_link import every_setting_changed

# The widget (its key) and its kind of each setting that every type has; a type's own knobs are "t_<field>".
WIDGETS = {"code_size": ("t_code", "slider"), "dropout": ("t_dropout", "slider"), "tied_weights": ("t_tied", "toggle"),
           "activation": ("t_act", "selectbox"), "loss": ("t_loss", "selectbox"), "optimizer": ("t_opt", "selectbox"),
           "learning_rate": ("t_lr", "select_slider"), "schedule": ("t_schedule", "selectbox"),
           "batch_size": ("t_batch", "select_slider"), "epochs": ("t_epochs", "slider"),
           "train_subset": ("t_subset", "select_slider"), "seed": ("t_seed", "number_input")}

# The sidebar's slider of that label shows that value on its thumb.
SLIDER_SHOWS = """([label, value]) => [...document.querySelectorAll(
        '[data-testid="stSidebar"] [data-testid="stSlider"]')].some(slider => slider.innerText.startsWith(label)
          && slider.querySelector('[data-testid="stSliderThumbValue"]')?.innerText.trim() === value)"""


@pytest.fixture(autouse=True)
def places(monkeypatch):
    """Two runs may train at once (the server's queue is made afresh per test)."""
    monkeypatch.setenv("CAE_MAX_RUNS", "2")
    ui.run_queue.clear()
    yield
    ui.run_queue.clear()


def open_train_page(params: dict[str, str]) -> AppTest:
    """A new session that opens the Train page at an address with these query parameters."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update(params)
    at.switch_page("pages/1_Train.py").run()
    assert not at.exception
    return at


def widget_value(at: AppTest, setting: link.Setting):
    """The value the setting's widget shows; a type's own knob is a selectbox of its choices or a slider."""
    key, kind = WIDGETS.get(setting.field, (f"t_{setting.field}", "selectbox" if setting.choices else "slider"))
    return getattr(at, kind)(key=key).value


def settings_in_address(at: AppTest) -> dict[str, str]:
    owned = link.setting_params()
    return {key: value for key, value in at.query_params.items() if key in owned}


def warnings(at: AppTest) -> list[str]:
    return [warning.value for warning in at.main.warning]


@pytest.mark.parametrize("kind", list(MODEL_TYPES.values()), ids=list(MODEL_TYPES))
def test_a_link_opens_the_page_with_its_settings_and_the_address_keeps_them(full_mnist, kind):
    model, train = every_setting_changed(kind)
    params = link.encode(model, train)
    workspace = new_workspace_id()
    at = open_train_page({ui.WORKSPACE_PARAM: workspace, **params})
    assert at.selectbox(key="t_type").value == kind.name
    for setting in link.type_settings(kind):
        assert widget_value(at, setting) == getattr(model, setting.field), setting.field
    for setting in link.train_settings(kind):
        assert widget_value(at, setting) == getattr(train, setting.field), setting.field
    assert not warnings(at)
    assert at.query_params[ui.WORKSPACE_PARAM] == workspace
    assert settings_in_address(at) == params  # the knobs, written back, are the link
    (shown,) = [code.value for code in at.sidebar.code]
    assert shown.endswith(f"/?{urlencode({ui.WORKSPACE_PARAM: workspace, **params})}")  # the link to copy
    assert any("also holds the training settings" in caption.value for caption in at.sidebar.caption)


def test_a_bad_value_gives_the_default_says_so_once_and_leaves_the_address(full_mnist):
    workspace = new_workspace_id()
    at = open_train_page({ui.WORKSPACE_PARAM: workspace, "lr": "abc", "code": "16", "ref": "newsletter"})
    assert at.select_slider(key="t_lr").value == PAGE_DEFAULTS.train.learning_rate
    assert at.slider(key="t_code").value == 16  # the good value beside it is used
    (warning,) = warnings(at)
    assert "Learning rate 'abc' is not a number: using the default 0.003." in warning
    assert dict(at.query_params) == {ui.WORKSPACE_PARAM: workspace, "ref": "newsletter", "code": "16"}
    at.run()
    assert not at.exception and not warnings(at)  # once


def test_a_changed_knob_changes_the_address_and_keeps_the_workspace_and_other_keys(full_mnist):
    workspace = new_workspace_id()
    at = open_train_page({ui.WORKSPACE_PARAM: workspace, "ref": "newsletter"})
    assert dict(at.query_params) == {ui.WORKSPACE_PARAM: workspace, "ref": "newsletter"}  # the defaults: bare
    at.slider(key="t_code").set_value(16).run()
    assert dict(at.query_params) == {ui.WORKSPACE_PARAM: workspace, "ref": "newsletter", "code": "16"}
    assert any(code.value.endswith(f"?{ui.WORKSPACE_PARAM}={workspace}&code=16") for code in at.sidebar.code)
    at.select_slider(key="t_lr").set_value(1e-4).run()
    assert settings_in_address(at) == {"code": "16", "lr": "0.0001"}
    at.slider(key="t_code").set_value(PAGE_DEFAULTS.model.code_size).run()
    assert not at.exception
    assert dict(at.query_params) == {ui.WORKSPACE_PARAM: workspace, "ref": "newsletter", "lr": "0.0001"}
    assert not warnings(at)


def test_another_type_and_its_knobs_go_into_the_address_and_back_to_the_defaults_when_it_goes(full_mnist):
    kind = next(kind for kind in MODEL_TYPES.values() if kind.config_class.KNOBS and kind is not link.default_type())
    knob = link.knob_setting(kind.config_class.KNOBS[0])
    at = open_train_page({})
    at.selectbox(key="t_type").set_value(kind.name).run()
    assert settings_in_address(at) == {link.TYPE_PARAM: kind.name}
    default = getattr(link.default_model(kind), knob.field)
    other = next(c for c in knob.choices if c != default) if knob.choices else knob.high
    getattr(at, "selectbox" if knob.choices else "slider")(key=f"t_{knob.field}").set_value(other).run()
    assert settings_in_address(at) == {link.TYPE_PARAM: kind.name, knob.param: knob.written(other)}
    at.selectbox(key="t_type").set_value(link.default_type().name).run()
    assert not at.exception and settings_in_address(at) == {}  # the knob is not the default type's


def test_a_return_from_another_page_keeps_the_settings_and_puts_them_back_in_the_address(full_mnist):
    workspace = new_workspace_id()
    at = open_train_page({ui.WORKSPACE_PARAM: workspace, "code": "16"})
    at.switch_page("pages/2_How_it_works.py")
    at.query_params.clear()
    at.query_params[ui.WORKSPACE_PARAM] = workspace  # a page switch drops the query string; the workspace comes back
    at.run()
    at.switch_page("pages/1_Train.py").run()
    assert not at.exception
    assert at.slider(key="t_code").value == 16
    assert dict(at.query_params) == {ui.WORKSPACE_PARAM: workspace, "code": "16"}


def test_a_link_opened_in_the_same_tab_replaces_the_settings(full_mnist):
    at = open_train_page({"code": "16", "epochs": "7"})
    at.query_params.update({"code": "8"})
    at.query_params.pop("epochs")
    at.run()
    assert not at.exception
    assert at.slider(key="t_code").value == 8
    assert at.slider(key="t_epochs").value == PAGE_DEFAULTS.train.epochs  # a link is the whole setup
    assert settings_in_address(at) == {"code": "8"}


def test_a_link_opened_while_a_run_is_going_leaves_the_run_and_its_settings_alone(full_mnist):
    at = open_train_page({"code": "16", "epochs": "50", "digits": "1000"})
    at.button(key="t_start").click().run()
    runner = at.session_state[ui.SharedKey.RUNNER]
    try:
        assert runner.alive and runner.trainer.model_config.code_size == 16
        at.query_params["code"] = "8"
        at.run()
        assert not at.exception
        assert at.slider(key="t_code").value == 16 and at.slider(key="t_code").disabled
        assert runner.alive and runner.trainer.model_config.code_size == 16
        (warning,) = warnings(at)
        assert "A run is going, so the address's settings were not used" in warning
        assert settings_in_address(at) == {"code": "16", "epochs": "50", "digits": "1000"}  # the run's, again
    finally:
        runner.stop()
        runner.join(30)


def test_a_browser_opening_a_link_to_the_train_page_shows_its_code_size_and_keeps_the_workspace(app_server):
    workspace = new_workspace_id()
    with chromium() as context:
        page = context.new_page()
        page.goto(f"{app_server.url}/Train?{ui.WORKSPACE_PARAM}={workspace}&code=16")
        page.locator('[data-testid="stSidebar"] [data-testid="stSlider"]').filter(
            has_text=link.CODE.label).wait_for(timeout=120_000)
        page.wait_for_function(SLIDER_SHOWS, arg=[link.CODE.label, "16"], timeout=30_000)
        page.wait_for_url(re.compile(rf"[?&]{ui.WORKSPACE_PARAM}={workspace}(&|$)"), timeout=30_000)
        assert re.search(r"[?&]code=16(&|$)", page.url), page.url
