"""What a learner tripped over (issue 19), checked on the pages with AppTest: data imported while the server runs,
the code plane's empty space."""

import json

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from cae.engine import checkpoint
from cae.engine.data import import_mnist
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.ui import common as ui
from cae.views import latent
from cae.views.figures.code_space import PLANE_POINT
from tests.conftest import MNIST_RAW, ROOT
from tests.pictures import picture


def app(timeout: float = 120) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.run()
    assert not at.exception
    return at


def page_text(at) -> str:
    return " ".join(str(element.value) for element in [*at.caption, *at.markdown, *at.sidebar.caption])


def test_full_mnist_imported_while_the_server_runs_is_used_on_the_next_page_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path))
    at = app()
    assert "the offline sample" in page_text(at) and "full MNIST" not in page_text(at)
    import_mnist(MNIST_RAW, tmp_path)  # what `python -m cae.data import DIR` does, the server still running
    at.run()
    assert not at.exception
    assert "full MNIST: 60,000 training and 10,000 test digits" in page_text(at)
    assert len(ui.shared_data().val_images) == 10_000


def plane_model() -> ConvAutoencoder:
    torch.manual_seed(2)
    return ConvAutoencoder(ModelConfig(code_size=2)).eval()


def test_a_click_on_the_code_planes_empty_space_decodes_that_point(full_mnist):
    at = app()
    at.switch_page("pages/3_Code_space.py").run()
    model = plane_model()
    at.session_state[ui.SharedKey.MODELS] = {"plane": checkpoint.Checkpoint(model.config, model.state_dict())}
    at.run()
    at.sidebar.selectbox(key=ui.SharedKey.MODEL_WIDGET).select("plane").run()
    assert not at.exception
    plane = next(json.loads(chart.proto.spec) for chart in at.get("plotly_chart")
                 if "The codes of" in json.dumps(json.loads(chart.proto.spec)["layout"].get("title", "")))
    grid = plane["data"][0]
    assert set(grid["customdata"]) == {PLANE_POINT}
    corner_x, corner_y = max(grid["x"]), min(grid["y"])  # a corner of the view: no digit's code is there
    codes = latent.encode_images(model, ui.shared_data().val_images)
    assert np.min(np.hypot(codes[:, 0] - corner_x, codes[:, 1] - corner_y)) > 0.01
    point = {"curve_number": 0, "point_number": 0, "point_index": 0, "x": corner_x, "y": corner_y,
             "customdata": PLANE_POINT}
    at.session_state["cs_plane"] = {"selection": {"points": [point], "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception
    decoded = picture(at, f"Decoded at ({corner_x:.2f}, {corner_y:.2f})")
    expected = latent.decode_codes(model, np.array([[corner_x, corner_y]], np.float32))[0]
    np.testing.assert_allclose(decoded.grey(0), expected, atol=1 / 255)  # that point of the plane, decoded


def test_the_noise_kinds_are_named_as_people_read_them(full_mnist):
    at = app()
    noise = at.selectbox(key="noise_kind")
    assert noise.options == ["none", "Gaussian", "masking", "salt and pepper"]
    noise.set_value("saltpepper").run()
    assert not at.exception
    assert at.slider(key="noise_amount").label == "Noise amount"


def test_worst_first_scores_every_digit_and_turns_the_first_index_off(full_mnist, mnist):
    at = app()
    at.radio(key="input_source").set_value("Pick from MNIST").run()
    assert not at.number_input(key="pick_start").disabled
    at.toggle(key="pick_worst").set_value(True).run()
    assert not at.exception
    assert at.number_input(key="pick_start").disabled  # shown, but it no longer decides which digits come
    shown = [int(option.split(":")[0].lstrip("#")) for option in at.selectbox(key="picked_sample").options]
    _, model = ui.pretrained_model()
    every = explore_mse(model, mnist.val_images)
    assert shown == list(np.argsort(-every)[:len(shown)])  # the 32 worst of all 10,000, worst first


def explore_mse(model, images) -> np.ndarray:
    from cae.views import explore

    return explore.score_samples(model, images, np.arange(len(images))).mse


def test_a_picked_digits_result_comes_before_the_grid_of_picks(full_mnist):
    at = app()
    at.radio(key="input_source").set_value("Pick from MNIST").run()
    order = [node.type for node in at.main]
    titles = [getattr(node, "value", "") for node in at.main]
    result = titles.index("Reconstruction")
    grid = next(i for i, node in enumerate(at.main)
                if node.type == "markdown" and "reconstructions \\(below\\)" in node.value)  # a picture's alt
    assert result < grid, order
