"""The home page under Streamlit's AppTest: an injected drawing, MNIST picking, uploads and the model choice."""

import math

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from cae.engine import checkpoint
from cae.engine.checkpoint import Checkpoint
from cae.models.variational import VariationalAutoencoder, VariationalConfig
from tests.conftest import ROOT
from tests.drawing import FOUR, SEVEN, canvas, canvas_state, encode
from tests.pictures import shown_pictures


@pytest.fixture
def app(full_mnist) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    return at


def picture_texts(at) -> list[str]:
    return [text for picture in shown_pictures(at) for text in picture.texts]


def alts(at) -> list[str]:
    return [picture.alt for picture in shown_pictures(at)]


def mse_shown(at) -> float:
    return float(next(m.value for m in at.metric if m.label == "MSE per pixel"))


def test_first_visit_asks_for_a_drawing_and_names_the_data(app):
    assert any("Draw a digit" in i.value for i in app.info)
    assert not app.metric
    assert "full MNIST: 60,000 training and 10,000 test digits" in app.caption[0].value
    assert app.get("bidi_component")  # the real canvas element is on the page


def test_an_injected_drawing_is_reconstructed_with_mse_and_code(app):
    app.session_state["canvas-0"] = canvas_state(canvas(SEVEN))
    app.run()
    assert not app.exception
    titles = picture_texts(app)
    assert "Model input (28x28)" in titles and "Reconstruction" in titles
    assert any(t.startswith("Squared error, up to 0.") for t in titles)  # the largest error, as hover gave it
    assert 0 < mse_shown(app) < 0.1
    code = next(p for p in shown_pictures(app) if p.alt.startswith("The code: 32 numbers"))
    assert len(code.alt.split(": ", 2)[2].split(", ")) == 32  # every code number, in words
    assert len(code.root.findall("{http://www.w3.org/2000/svg}rect")) == 32  # and one bar each
    assert not app.get("plotly_chart")  # pictures only: the page opens without plotly.js


def test_an_empty_canvas_asks_again_and_clear_empties_it(app):
    app.session_state["canvas-0"] = canvas_state(np.zeros((280, 280, 4), np.uint8))
    app.run()
    assert any("Draw a digit" in i.value for i in app.info) and not app.metric
    app.session_state["canvas-0"] = canvas_state(canvas(FOUR))
    app.run()
    assert app.metric
    app.button(key="clear_canvas").click().run()
    assert not app.exception and not app.metric  # a fresh canvas ("canvas-1") with nothing drawn


def test_picking_from_mnist_shows_a_grid_and_opens_a_sample(app):
    app.radio(key="input_source").set_value("Pick from MNIST").run()
    assert not app.exception
    picked = app.selectbox(key="picked_sample")
    assert len(picked.options) == 32 and picked.options[0].startswith("#0: a 7")
    first = mse_shown(app)
    picked.set_value(picked.options[5]).run()
    assert mse_shown(app) != first
    app.radio(key="pick_how").set_value("By digit").run()
    app.selectbox(key="pick_digit").set_value(3).run()
    assert all(": a 3," in option for option in app.selectbox(key="picked_sample").options)


@pytest.mark.slow  # scores all 10,000 test digits
def test_worst_first_sorts_by_mse(app):
    app.radio(key="input_source").set_value("Pick from MNIST").run()
    app.toggle(key="pick_worst").set_value(True).run()
    assert not app.exception
    shown = [float(o.rsplit("MSE ", 1)[1]) for o in app.selectbox(key="picked_sample").options]
    assert shown == sorted(shown, reverse=True) and shown[0] > 0.02


@pytest.mark.parametrize("name, data, mime, message", [
    ("notes.png", b"this is text, renamed", "image/png", "not a picture"),
    ("huge.png", encode(np.zeros((10000, 10000), np.uint8)), "image/png", "10000x10000"),
    ("blank.png", encode(np.full((100, 100), 255, np.uint8)), "image/png", "no digit found"),
])
def test_bad_uploads_get_a_clear_message_and_the_page_keeps_working(app, name, data, mime, message):
    app.radio(key="input_source").set_value("Upload").run()
    app.file_uploader(key="digit_upload").set_value((name, data, mime)).run()
    assert not app.exception
    shown = [e.value for e in app.error] + [w.value for w in app.warning]
    assert any(message in text for text in shown) and not app.metric
    app.radio(key="input_source").set_value("Draw").run()
    assert not app.exception


def test_an_uploaded_picture_of_dark_ink_is_reconstructed(app):
    app.radio(key="input_source").set_value("Upload").run()
    paper = 255 - canvas(FOUR)[..., 0]
    app.file_uploader(key="digit_upload").set_value(("four.jpg", encode(paper, "JPEG"), "image/jpeg")).run()
    assert not app.exception and 0 < mse_shown(app) < 0.1


def test_sidebar_checkpoint_upload_good_and_bad(app, tmp_path):
    app.file_uploader(key="checkpoint_upload").set_value(("model.pt", b"garbage", "application/octet-stream")).run()
    assert not app.exception
    assert any("Not loaded" in e.value and "model.pt" in e.value for e in app.sidebar.error)
    assert app.selectbox(key="model_select").value == "Pretrained default"
    good = checkpoint.DEFAULT_CHECKPOINT.read_bytes()
    app.file_uploader(key="checkpoint_upload").set_value(("mine.pt", good, "application/octet-stream")).run()
    assert not app.exception
    assert app.selectbox(key="model_select").value == "Uploaded: mine.pt"
    assert "MSE per pixel 0.0043" in " ".join(c.value for c in app.sidebar.caption)
    app.selectbox(key="model_select").set_value("Pretrained default").run()  # a person's own choice sticks
    assert app.selectbox(key="model_select").value == "Pretrained default"
    assert "Model: **Pretrained default**" in app.caption[0].value
    app.run()
    assert app.selectbox(key="model_select").value == "Pretrained default"


def test_noise_on_a_drawing_shows_the_noisy_input_and_both_psnrs(app):
    app.selectbox(key="noise_kind").set_value("gaussian").run()
    app.session_state["canvas-0"] = canvas_state(canvas(SEVEN))
    app.run()
    assert not app.exception
    assert "Noisy input" in picture_texts(app)
    shown = {m.label: m.value for m in app.metric}
    noisy_db, output_db = (float(shown[name].split()[0]) for name in ("PSNR of the noisy input", "PSNR of the output"))
    assert 5 < noisy_db < 15
    # The output against the clean drawing, as the MSE beside it is (a plain autoencoder cleans little of it).
    assert output_db == pytest.approx(10 * math.log10(1 / mse_shown(app)), abs=0.06)
    panels = [p.svg for p in shown_pictures(app) if "Noisy input" in p.alt]
    app.button(key="new_noise").click().run()  # another draw of the same noise: another noisy input
    assert not app.exception
    assert [p.svg for p in shown_pictures(app) if "Noisy input" in p.alt] != panels


def test_a_variational_model_draws_new_digits_and_sweeps_a_code_number(app, tmp_path):
    torch.manual_seed(0)
    config = VariationalConfig(code_size=3)
    vae = Checkpoint(model_config=config, state_dict=VariationalAutoencoder(config).state_dict())
    app.file_uploader(key="checkpoint_upload").set_value(("vae.pt", checkpoint.to_bytes(vae),
                                                           "application/octet-stream")).run()
    assert not app.exception and app.selectbox(key="model_select").value == "Uploaded: vae.pt"
    assert any("New digits from the prior" in h.value for h in app.subheader)
    before = next(p for p in shown_pictures(app) if "drawn from N(0, I), seed 0" in p.alt)
    app.button(key="resample").click().run()
    after = next(p for p in shown_pictures(app) if "seed 1" in p.alt)
    assert not np.array_equal(after.layers[0], before.layers[0])  # new digits, not only a new title
    app.session_state["canvas-0"] = canvas_state(canvas(SEVEN))  # a current digit: its code can be swept
    app.run()
    app.slider(key="traverse_dimension").set_value(2).run()
    assert any("code number 2 swept" in alt for alt in alts(app))
    assert not app.exception
