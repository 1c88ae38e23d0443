"""The code space's t-SNE progress under AppTest: the map area keeps one height and one layout (a line of text over
a map at the map's height) from the first refresh, before any preview, through the map taking shape, to the
finished map. The t-SNE job is faked (cae.views.latent_maps.fit_in_child), its steps released by the test."""

import json
import threading

import pytest
import torch
from streamlit.testing.v1 import AppTest

import cae.views.latent_maps
from cae.engine import checkpoint
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.ui import common as ui
from cae.views.latent_maps import TsneMap
from tests.apptest import until
from tests.conftest import ROOT

PAGE = "pages/3_Code_space.py"
AREA_KEY = "cs_map_area"
MAP_HEIGHT = 560  # the PCA map's and the finished t-SNE map's height: the area's map is never shorter or taller


@pytest.fixture
def page(full_mnist) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def map_area(at):
    """The map area's container (its id ends with its key)."""
    found = [node for node in at.main if str(getattr(getattr(node, "proto", None), "id", "")).endswith(AREA_KEY)]
    assert len(found) == 1, f"{len(found)} map areas"
    return found[0]


def layout(at) -> tuple:
    """What a person sees of the map area: its fixed height, then what it holds in order: the box of the line of
    text with its height, the text (a caption or a progress bar), the map with its own height."""
    area = map_area(at)
    elements = []
    for element in area:
        if element is area:
            continue
        if element.type == "plotly_chart":
            elements.append(("chart", json.loads(element.proto.spec)["layout"]["height"]))
        elif element.type in ("progress", "caption"):
            elements.append(("text", None))
        elif hasattr(element, "children"):
            elements.append(("box", element.proto.height_config.pixel_height))
        else:
            elements.append((element.type, None))
    return area.proto.height_config.pixel_height, elements


def without_the_maps_picture(shown: tuple) -> tuple:
    """The layout without the picture of a finished map that stands in for its chart until plotly.js has drawn it
    (a box of no height, laid over the chart, holding the picture)."""
    height, elements = shown
    kept = [element for index, element in enumerate(elements)
            if element != ("box", 0) and not (element == ("markdown", None) and elements[index - 1] == ("box", 0))]
    return height, kept


def chart_title(at) -> str:
    chart = next(element for element in map_area(at) if element.type == "plotly_chart")
    return json.loads(chart.proto.spec)["layout"]["title"]["text"]


def points(at) -> int:
    chart = next(element for element in map_area(at) if element.type == "plotly_chart")
    return sum(len(trace.get("x") or []) for trace in json.loads(chart.proto.spec)["data"])


def test_the_map_area_keeps_its_height_from_the_first_refresh_to_the_finished_map(page, monkeypatch):
    started, previewed, finish = threading.Event(), threading.Event(), threading.Event()

    def fit(codes, progress):  # the real child process is tested in test_latent.py
        progress.fraction, progress.stage = 0.05, "finding each code's neighbours"
        started.set()
        previewed.wait(60)
        progress.preview = codes[:, :2].copy()
        progress.fraction, progress.stage = 0.5, "step 100 of 200"
        finish.wait(60)
        return TsneMap(codes[:, :2].copy(), codes)

    monkeypatch.setattr(cae.views.latent_maps, "fit_in_child", fit)
    pca = layout(page)
    area_height, (text_box, text, *picture_of_the_map, chart) = pca  # the map's picture stands in until plotly draws
    assert picture_of_the_map == [("box", 0), ("markdown", None)]  # laid over the chart: it takes no height
    pca = without_the_maps_picture(pca)
    assert text_box[0] == "box" and text_box[1] > 0 and text == ("text", None) and chart == ("chart", MAP_HEIGHT)
    assert area_height > text_box[1] + MAP_HEIGHT
    torch.manual_seed(11)  # a model of its own: the server's map jobs outlive a test
    model = ConvAutoencoder(ModelConfig(code_size=6)).eval()
    page.session_state[ui.SharedKey.MODELS] = {"fresh": checkpoint.Checkpoint(model.config, model.state_dict())}
    page.run()
    page.sidebar.selectbox(key=ui.SharedKey.MODEL_WIDGET).select("fresh").run()
    page.radio(key="cs_method").set_value("t-SNE").run()
    try:
        assert started.wait(60)
        until(page, lambda: "neighbours" in page.get("progress")[0].proto.text)
        before = layout(page)
        assert "will take shape here" in chart_title(page) and points(page) == 0  # blank before the first preview
        previewed.set()
        until(page, lambda: points(page) == 10_000)
        during = layout(page)
        assert "taking shape" in chart_title(page) and "step 100 of 200" in page.get("progress")[0].proto.text
    finally:
        previewed.set()
        finish.set()
    until(page, lambda: chart_title(page).startswith("t-SNE of the codes"))
    done = layout(page)
    assert not page.get("progress")
    before, during, done = (without_the_maps_picture(shown) for shown in (before, during, done))
    assert before == during == done == pca  # one height; the same box, text and map, each of the same height
