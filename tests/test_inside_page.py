"""The "How it works" page under AppTest (the default model, a digit drawn on the home page, an untied model, the
step-through's numbers) and in Chromium (the page loads, the step-through moves with the keyboard, a screenshot)."""

import re

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cae.engine.checkpoint import Checkpoint
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.ui.common import SharedKey
from tests.conftest import ROOT
from tests.drawing import SEVEN, canvas, canvas_state
from tests.pictures import Shown, shown_pictures

PAGE = "pages/2_How_it_works.py"


def titled(at, start: str) -> Shown:
    """The picture whose title (the start of its alt text) starts with `start`."""
    return next(p for p in shown_pictures(at) if p.alt.startswith(start))


def max_differences(at) -> list[float]:
    return [float(m.value) for m in at.metric if "max difference" in m.label]


def numbers_text(at) -> str:
    return " ".join(m.value for m in at.markdown if m.value.startswith("Output cell"))


@pytest.fixture
def app(full_mnist) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    return at


def test_the_page_renders_for_the_default_model_with_a_fixed_mnist_digit(app):
    app.switch_page(PAGE).run()
    assert not app.exception
    assert "digit: MNIST test digit #0, as nothing was drawn" in app.caption[0].value
    from cae.engine.data import load_mnist

    expected = load_mnist().val_images[0].numpy() / 255
    assert np.allclose(titled(app, "input · 1×28×28").grey(0), expected, atol=1 / 255)  # pixels as bytes
    names = [p.alt.split(" · ")[0] for p in shown_pictures(app) if " · " in p.alt]
    assert names[:13] == ["input", "conv1", "pool1", "conv2", "pool2", "flatten", "code", "dense", "reshape",
                          "upscale2", "deconv2", "upscale1", "deconv1"]
    assert titled(app, "The network:").alt.startswith("The network: 59,809 parameters with tied weights, 86,209 untied")
    assert not app.get("plotly_chart")  # pictures only: the page opens without plotly.js
    differences = max_differences(app)
    assert len(differences) == 2 and all(0 <= d < 1e-5 for d in differences)
    assert sum("is **True**" in m.value and "model.deconv2_w is model.conv2.weight" in m.value
               for m in app.markdown) == 1


def home_model_input(at) -> tuple[np.ndarray, np.ndarray]:
    """The home page's result panels: model input and reconstruction, as the page drew them."""
    panels = next(p for p in shown_pictures(at) if p.alt.startswith("Model input (28x28)"))
    return panels.grey(0), panels.grey(1)


def test_a_digit_drawn_on_the_home_page_is_the_digit_this_page_shows(app):
    app.session_state["canvas-0"] = canvas_state(canvas(SEVEN))
    app.run()
    assert not app.exception
    model_input, reconstruction = home_model_input(app)
    assert model_input.sum() > 20  # a real drawing, not an empty canvas
    app.switch_page(PAGE).run()
    assert not app.exception
    assert "digit: drawn on the home page" in app.caption[0].value
    assert np.array_equal(titled(app, "input · 1×28×28").grey(0), model_input)
    # The same digit through the same model: the last stage is the home page's reconstruction.
    assert np.allclose(titled(app, "deconv1 · 1×28×28").grey(0), reconstruction, atol=1 / 255)


def untied_checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    network = ConvAutoencoder(ModelConfig(tied_weights=False))
    with torch.no_grad():
        network.deconv2_weight.mul_(-1.5)  # decoder kernels of its own, unlike the encoder's
        network.deconv1_weight.add_(0.1)
    return Checkpoint(model_config=ModelConfig(tied_weights=False), state_dict=network.state_dict())


def test_an_untied_model_shows_the_decoders_own_kernels_and_the_lesson_still_holds(app):
    app.session_state[SharedKey.MODELS] = {"Untied test model": untied_checkpoint()}
    app.switch_page(PAGE).run()
    app.selectbox(key=SharedKey.MODEL_WIDGET).set_value("Untied test model").run()
    assert not app.exception
    assert "Model: **Untied test model** (untied weights" in app.caption[0].value
    untied = [m.value for m in app.markdown if m.value.startswith("Untied:")]
    assert len(untied) == 2 and "`model.deconv2_w` is the decoder's own tensor" in untied[0]
    assert float(re.search(r"differ from conv2's by up to ([0-9]+\.[0-9]+)", untied[0]).group(1)) > 0.01
    differences = max_differences(app)
    assert len(differences) == 2 and all(0 <= d < 1e-5 for d in differences)
    assert "this model: untied" in titled(app, "The network:").alt


def test_the_step_through_computes_the_followed_cell_both_ways_and_moves(app):
    app.switch_page(PAGE).run()
    first = numbers_text(app)
    app.slider(key="hw_step").set_value(19).run()  # row 2, column 3 of the 8x8 output
    assert not app.exception
    moved = numbers_text(app)
    assert moved != first and "Output cell **(2, 3)**" in moved
    scatter, gather = re.findall(r"\*\*(-?[0-9.]+)\*\*", moved)
    assert scatter == gather
    assert "(2, 3) = sum of window" in titled(app, "Gather (full convolution").alt
    app.slider(key="hw_channel").set_value(5).run()
    assert titled(app, "deconv2, output channel 5")
    app.slider(key="hw_valid_step").set_value(15).run()
    assert "output cell (3, 3)" in titled(app, "The encoder's valid convolution").alt


def test_in_chromium_the_page_loads_and_the_step_through_moves_with_the_keyboard(app_server):
    from tests.browser import chromium, plotly_loaded, screenshot, wait_for_picture, wait_images_loaded

    with chromium() as context:
        page = context.new_page()
        # The home page first: until a run of app.py has called st.navigation, Streamlit runs a deep link's script
        # from pages/ on its own (its pages-directory mode), without the router's layout and titles.
        page.goto(app_server.url)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=90_000)
        page.goto(f"{app_server.url}/How_it_works")
        numbers = page.locator(".st-key-hw_numbers")
        numbers.get_by_text("Output cell").wait_for(timeout=90_000)
        wait_for_picture(page, "Scatter")
        wait_for_picture(page, "deconv1 · 1×28×28")
        assert not plotly_loaded(page)  # every picture of the page without plotly.js
        before = numbers.inner_text()
        assert "(0, 0)" in before
        thumb = page.get_by_role("slider", name="Output cell followed (in reading order)")  # input type=range
        thumb.focus()
        for _ in range(3):
            thumb.press("ArrowRight")
        page.wait_for_function("before => { const el = document.querySelector('.st-key-hw_numbers');"
                               " return el && el.innerText !== before && el.innerText.includes('(0, 3)'); }",
                               arg=before, timeout=30_000)
        after = numbers.inner_text()
        values = re.findall(r"(-?\d+\.\d{4})", after.split("\n")[0])
        assert len(values) == 2 and values[0] == values[1]  # scatter and gather agree
        wait_for_picture(page, "Scatter (transposed convolution): stamps of input cells up to (0, 3)")
        metrics = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert len(metrics) == 2 and all(float(text) < 1e-5 for text in metrics)
        assert page.get_by_test_id("stSidebarNav").get_by_text("Draw and reconstruct").is_visible()  # the router's
        page.set_viewport_size({"width": 1400, "height": 5400})  # the whole page in the screenshot
        wait_for_picture(page, "The encoder's valid convolution")
        wait_images_loaded(page)
        assert screenshot(page, "how-it-works.png").stat().st_size > 50_000
