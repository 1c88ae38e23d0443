"""The code-space page: AppTest with injected map clicks, sliders, the t-SNE job and the code plane; then a click
on the real WebGL map in Chromium."""

import json
import re
import threading
import time

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import cae.views.latent_maps
from cae.engine import checkpoint
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.ui import common as ui
from cae.views import latent
from cae.views.latent_maps import TsneMap
from tests.apptest import until
from tests.conftest import ROOT
from tests.pictures import picture

PAGE = "pages/3_Code_space.py"


@pytest.fixture
def page(full_mnist) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def title(spec: dict) -> str:
    text = spec["layout"].get("title") or {}
    return text.get("text", "") if isinstance(text, dict) else str(text)


def chart(at, part: str) -> dict:
    """The chart whose title, or one of whose annotations, contains `part`."""
    for spec in specs(at):
        notes = [note.get("text", "") for note in spec["layout"].get("annotations", [])]
        if part in title(spec) or any(part in note for note in notes):
            return spec
    raise AssertionError(f"no chart with {part!r}: {[title(s) for s in specs(at)]}")


def click(at, key: str, *, index: int | None = None, x: float = 0.0, y: float = 0.0) -> None:
    """What Streamlit stores for a plotly chart when one point is clicked (selection_mode "points")."""
    point = {"curve_number": 0, "point_number": 0, "point_index": 0, "x": x, "y": y,
             "customdata": [-2 if index is None else index]}
    at.session_state[key] = {"selection": {"points": [point], "point_indices": [0], "box": [], "lasso": []}}
    at.run()
    assert not at.exception


def use_model(at, label: str, model: torch.nn.Module) -> None:
    at.session_state[ui.SharedKey.MODELS] = {label: checkpoint.Checkpoint(model.config, model.state_dict())}
    at.run()  # the sidebar lists it
    at.sidebar.selectbox(key=ui.SharedKey.MODEL_WIDGET).select(label).run()
    assert not at.exception


def test_the_pca_map_of_the_default_model_and_a_clicked_digit_with_its_neighbours(page, mnist):
    spec = chart(page, "PCA of the codes")
    digits = [trace for trace in spec["data"] if trace["type"] == "scattergl"]
    assert len(digits) == 10 and sum(len(trace["x"]) for trace in digits) == 10_000
    assert sorted(i for trace in digits for i in trace["customdata"]) == list(range(10_000))
    click(page, "cs_map", index=42)
    label = int(mnist.val_labels[42])
    assert page.subheader[0].value == f"Digit #42: a {label}"
    assert 0 < float(page.metric[0].value) < 0.05  # its reconstruction's MSE
    neighbours = picture(page, "Nearest to #42")
    tags = [text for text in neighbours.texts if "·" in text]  # 2 rows of 4
    distances = [float(tag.split("·")[1]) for tag in tags]
    assert len(tags) == 8 and distances == sorted(distances)
    assert sum(tag.startswith(f"a {label}") for tag in tags) >= 6  # near codes, same digit mostly


def test_your_digit_is_a_star_placed_by_the_same_projection(page, mnist):
    page.session_state[ui.SharedKey.CURRENT_DIGIT] = ui.CurrentDigit(mnist.val_images[7].numpy() / 255, "test digit #7")
    page.run()
    spec = chart(page, "PCA of the codes")
    star = next(trace for trace in spec["data"] if trace["name"] == "your digit")
    seven = next(trace for trace in spec["data"] if 7 in trace.get("customdata", []) and trace["name"] != "chosen")
    at = seven["customdata"].index(7)
    assert star["x"][0] == pytest.approx(seven["x"][at], abs=1e-3)
    assert star["y"][0] == pytest.approx(seven["y"][at], abs=1e-3)


def test_sliders_change_the_decoded_image_and_reset_brings_it_back(page):
    def slid() -> np.ndarray:
        return picture(page, "Decoded from the sliders").grey(1)  # the second panel

    assert len([s for s in page.slider if s.key.startswith("cs_code_")]) == 32
    before = slid()
    slider = page.slider(key="cs_code_0")
    slider.set_value(slider.max if slider.value < (slider.min + slider.max) / 2 else slider.min).run()
    page.slider(key="cs_code_5").set_value(page.slider(key="cs_code_5").max).run()
    after = slid()
    assert np.abs(after - before).max() > 0.1
    page.button(key="cs_reset").click().run()
    np.testing.assert_allclose(slid(), before, atol=1 / 255)  # pixels as bytes


def test_interpolation_between_two_clicked_digits_decodes_their_reconstructions_at_the_ends(page):
    click(page, "cs_map", index=3)
    click(page, "cs_map", index=10)
    assert page.radio(key="cs_ends").value == "The two clicked digits (A → B)"
    strips = picture(page, "Decoded along the straight line")
    decoded, blended = (np.nan_to_num(strips.grey(row)) for row in (0, 1))
    assert decoded.shape[1] == 10 * 29 - 1
    assert np.abs(decoded - blended).mean() > 0.01  # the decoder is no cross-fade
    chosen = next(trace for trace in chart(page, "PCA of the codes")["data"] if trace["name"] == "chosen")
    assert chosen["customdata"] == [3, 10] and chosen["text"] == ["A", "B"]


def test_the_tsne_map_shipped_with_the_default_model_is_shown_at_once(page):
    page.radio(key="cs_method").set_value("t-SNE").run()
    assert not page.exception
    spec = chart(page, "t-SNE of the codes")
    assert sum(len(trace["x"]) for trace in spec["data"] if trace["type"] == "scattergl") == 10_000
    click(page, "cs_map", index=5)
    assert page.subheader[0].value.startswith("Digit #5:")


def test_a_fresh_model_gets_its_tsne_map_made_in_the_background_with_progress(page, monkeypatch):
    release = threading.Event()

    def fit(codes, progress):  # the real child process is tested in test_latent.py, on a few hundred codes
        progress.preview = codes[:, :2].copy()
        progress.fraction, progress.stage = 0.5, "step 100 of 200"
        release.wait(60)
        return TsneMap(codes[:, :2].copy(), codes)

    monkeypatch.setattr(cae.views.latent_maps, "fit_in_child", fit)
    torch.manual_seed(1)
    use_model(page, "fresh", ConvAutoencoder(ModelConfig(code_size=8)).eval())
    page.radio(key="cs_method").set_value("t-SNE").run()
    until(page, lambda: any("taking shape" in title(spec) for spec in specs(page)))
    assert "step 100 of 200" in page.get("progress")[0].proto.text
    release.set()
    until(page, lambda: any("t-SNE of the codes" in title(spec) for spec in specs(page)))
    assert chart(page, "t-SNE of the codes") and not page.get("progress")


def test_a_two_number_code_shows_its_plane_and_manifold_and_decodes_a_clicked_point(page):
    torch.manual_seed(2)
    model = ConvAutoencoder(ModelConfig(code_size=2)).eval()
    use_model(page, "plane", model)
    manifold = chart(page, "20 x 20 codes decoded")
    assert manifold["layout"]["images"][0]["source"].startswith("data:image/png;base64,")
    assert chart(page, "The codes of 10,000 digits")["layout"]["xaxis"]["title"]["text"] == "code[0]"
    click(page, "cs_manifold", x=0.25, y=-0.5)
    shown = picture(page, "Decoded at (0.25, -0.50)").grey(0)
    expected = latent.decode_codes(model, np.array([[0.25, -0.5]], np.float32))[0]
    np.testing.assert_allclose(shown, expected, atol=1 / 255)  # pixels as bytes
    assert not page.radio  # no projection to choose


def test_the_button_opens_the_shipped_plane_model(page):
    assert (checkpoint.PRETRAINED_DIR / "plane.pt").is_file()
    page.button(key="cs_use_plane").click().run()
    assert not page.exception
    assert chart(page, "20 x 20 codes decoded")
    assert "2-number code" in page.caption[0].value


def point_on_screen(page, index: int) -> dict:
    """Where digit #index's point is on the PCA map, in page pixels, from the plot's axes (WebGL points are no
    DOM elements)."""
    return page.evaluate("""index => {
        const el = [...document.querySelectorAll('.js-plotly-plot')].find(e =>
            String(e.layout?.title?.text || '').includes('PCA of the codes'));
        const trace = el._fullData.find(t => t.type === 'scattergl' && [...t.customdata].includes(index));
        const at = [...trace.customdata].indexOf(index);
        const {xaxis, yaxis} = el._fullLayout, box = el.getBoundingClientRect();
        return {x: box.left + xaxis._offset + xaxis.l2p(trace.x[at]),
                y: box.top + yaxis._offset + yaxis.l2p(trace.y[at])};
    }""", index)


@pytest.mark.timeout(600)
def test_clicking_a_point_on_the_webgl_map_opens_the_digit(app_server):
    from tests.browser import chromium, screenshot, wait_for_picture

    with chromium() as context:
        page = context.new_page()
        page.goto(f"{app_server.url}/Code_space")
        page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
            String(el.layout?.title?.text || '').includes('PCA of the codes') && el._fullLayout?.xaxis?._length)""",
                               timeout=120_000)
        where = point_on_screen(page, 0)
        page.mouse.move(where["x"], where["y"])
        page.mouse.click(where["x"], where["y"])
        heading = page.locator("h3", has_text="Digit #").first  # not the map's hover label, also "digit #"
        heading.wait_for(timeout=60_000)
        match = re.match(r"Digit #(\d+): a (\d)", heading.inner_text())
        wait_for_picture(page, "Nearest to")
        opened = point_on_screen(page, int(match[1]))  # digit #0, or one drawn on top of it
        page.set_viewport_size({"width": 1400, "height": 2200})  # the app scrolls inside: show the digit too
        assert screenshot(page, "code-space.png").stat().st_size > 20_000
    assert abs(opened["x"] - where["x"]) < 5 and abs(opened["y"] - where["y"]) < 5


def test_the_map_shows_as_a_picture_until_its_chart_is_drawn(app_server):
    """A new tab loads plotly.js (4.7 MB) before it can draw the map's chart: a picture of the map holds its place
    meanwhile, and gives it up to the chart."""
    from tests.browser import chromium

    picture = """() => { const img = [...document.images].find(i => (i.alt || '').includes('until its chart'));
        return img ? img.complete && img.naturalWidth > 0 && img.offsetWidth > 0 : null; }"""
    with chromium() as context:
        page = context.new_page()
        held = []  # plotly.js, kept back until the picture has been seen
        page.route("**/PlotlyChart*", lambda route: held.append(route))
        page.goto(f"{app_server.url}/Code_space")
        page.wait_for_function(picture, timeout=120_000)
        assert not page.locator(".js-plotly-plot").count()  # the picture came first, not the chart
        in_frame = """selector => {
            const frame = document.querySelector('.st-key-cs_map_frame').getBoundingClientRect();
            const box = document.querySelector(selector).getBoundingClientRect();
            return {top: box.top - frame.top, width: box.width, height: box.height}; }"""  # elements above still move
        box = page.evaluate(in_frame, "img[alt*='until its chart']")
        assert box["width"] > 600 and box["height"] > 450  # the map's size (560 high once the page's style is in)
        deadline = time.monotonic() + 60
        while not held:  # the chart asks for plotly.js (requests are handled while Playwright waits)
            assert time.monotonic() < deadline, "the map's chart never asked for plotly.js"
            page.wait_for_timeout(100)
        held[0].continue_()
        page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
            String(el.layout?.title?.text || '').includes('PCA of the codes') && el._fullLayout?.xaxis?._length)""",
                               timeout=120_000)
        page.wait_for_function(f"() => ({picture})() === false", timeout=10_000)  # gone, the chart in its place
        chart = page.evaluate(in_frame, ".js-plotly-plot")
        assert chart["top"] == pytest.approx(box["top"], abs=2) and chart["height"] == pytest.approx(560, abs=2)
