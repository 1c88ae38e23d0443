"""The code space: the validation digits' codes as a map (PCA at once, t-SNE when ready), your digit on it, a
clicked digit with its nearest codes, interpolation between two digits, and a slider for every code number.

A model whose code has 2 numbers needs no projection: its code plane is shown as it is, beside the decoder's
manifold (a grid of decoded codes), and a click anywhere on the plane decodes that point. The computing is in
cae/views/latent.py and cae/views/latent_maps.py; each map is made once per model and server and shared by every
visitor.
"""

from __future__ import annotations

import cae.ui.appenv  # noqa: F401  (first: settles torch's threads before torch loads)

# isort: split

from enum import StrEnum
from pathlib import Path

import numpy as np
import streamlit as st
from torch import nn

from cae.engine import checkpoint
from cae.engine.data import FULL
from cae.ui import common as ui
from cae.ui import images as pictures_ui
from cae.views import latent
from cae.views.figures import code_space as maps_figures
from cae.views.figures import pictures
from cae.views.latent_maps import MapJob, MapJobs, shipped_map_path

NEIGHBOURS = 8
MANIFOLD_SIZE = 20
PLANE_CHECKPOINT = checkpoint.PRETRAINED_DIR / "plane.pt"
# Its label in the sidebar's model choice (None if the shipped models no longer include it)
PLANE_LABEL = next((label for label, path in checkpoint.PRETRAINED.items() if path == PLANE_CHECKPOINT), None)
METHODS = {"PCA": "pca", "t-SNE": "tsne"}
MAP_HEIGHT = 560  # every map of the codes: PCA, t-SNE, the t-SNE map taking shape and its blank start
PLANE_CHART_WIDTH = 470  # the code plane's chart, in half the page, on a 1400-pixel-wide window
# The map area keeps one height whatever it holds (the PCA map, the t-SNE job's progress and its map so far, the
# finished t-SNE map): a line of text in a box of its own height, so that a caption and a progress bar put the map
# at the same place (room for the caption to wrap once on a narrow window), then the map.
TEXT_HEIGHT = 64
MAP_AREA_HEIGHT = TEXT_HEIGHT + MAP_HEIGHT + 24  # and Streamlit's gap between the two, with a little to spare


class CodeSpaceKey(StrEnum):
    """This page's session-state keys."""

    METHOD = "cs_method"  # which map: "PCA" or "t-SNE"
    CLICKED = "cs_clicked"  # the last two digits clicked on a map, newest last
    HANDLED = "cs_handled"  # chart key -> the selection already acted on (each click is acted on once)
    PLANE_POINT = "cs_plane_point"  # (x, y) last clicked on the code plane
    ENDS = "cs_ends"  # what the interpolation runs between
    STEPS = "cs_steps"
    SLIDER = "cs_code_"  # + i: the slider of code number i
    SLIDER_BASE = "cs_slider_base"  # which digit the sliders started from: a new one resets them
    MAP_CHART = "cs_map"
    MAP_AREA = "cs_map_area"  # the fixed-height container of the map and its line of text
    PLANE_CHART = "cs_plane"
    MANIFOLD_CHART = "cs_manifold"
    RESET_SLIDERS = "cs_reset"
    USE_PLANE = "cs_use_plane"


@st.cache_resource(max_entries=8, show_spinner="Encoding the validation digits ...")
def shared_codes(fingerprint: str, _model: nn.Module) -> np.ndarray:
    """The validation digits' codes, once per model (by its weights) and server; read-only.

    A shipped model's codes of full MNIST ship beside it (default.codes.npy): the first visitor's map is then
    ready without encoding 10,000 digits (seconds on a small machine).
    """
    images = ui.shared_data().val_images
    shipped = shipped_checkpoints().get(fingerprint)
    codes = shipped_codes(Path(shipped), len(images), _model.config.code_size) if shipped else None
    return latent.read_only(latent.encode_images(_model, images) if codes is None else codes)


def shipped_codes(checkpoint_path: Path, count: int, size: int) -> np.ndarray | None:
    path = checkpoint_path.with_suffix(".codes.npy")
    codes = np.load(path, allow_pickle=False) if path.is_file() else None
    return codes if codes is not None and codes.shape == (count, size) else None


@st.cache_resource(max_entries=8, show_spinner=False)
def shared_pca(fingerprint: str, _codes: np.ndarray) -> latent.LinearMap:
    return latent.fit_pca(_codes)


@st.cache_resource(max_entries=8, show_spinner=False)
def shared_ranges(fingerprint: str, _codes: np.ndarray) -> np.ndarray:
    return latent.read_only(latent.code_ranges(_codes))


@st.cache_resource(max_entries=4, show_spinner="Decoding the plane ...")
def shared_manifold(fingerprint: str, _model: nn.Module, extent: tuple) -> np.ndarray:
    return latent.read_only(latent.manifold(_model, np.asarray(extent), MANIFOLD_SIZE))


def map_jobs() -> MapJobs:
    """The server's t-SNE jobs, one per model, shared by every visitor: made by tasks on the cluster when runs
    train there (CAE_RAY_ADDRESS), else in child processes of this server."""
    return shared_map_jobs(ui.run_engine().engine.on_cluster)


@st.cache_resource
def shared_map_jobs(on_cluster: bool) -> MapJobs:
    if on_cluster:
        from cae.views import cluster_maps  # imports ray: only with a cluster

        return MapJobs(cluster_maps.fit_on_cluster)
    return MapJobs()


def data_fingerprint(weights: str, source: str) -> str:
    """What the page's shared codes and maps are keyed by: the model's weights and the digits encoded (the data
    folder can change while the server runs: full MNIST imported)."""
    return f"{weights}:{source}"


@st.cache_resource(show_spinner=False)
def shipped_checkpoints() -> dict[str, str]:
    """Fingerprint -> path of each shipped model, for its precomputed codes and maps, made on full MNIST."""
    return {data_fingerprint(latent.weights_fingerprint(checkpoint.load(path).build_model()), FULL): str(path)
            for path in sorted(checkpoint.PRETRAINED_DIR.glob("*.pt"))}


def encode_one(model: nn.Module, image: np.ndarray) -> np.ndarray:
    return latent.encode_images(model, np.asarray(image, np.float32)[None])[0]


def new_selection(chart_key: str) -> list[dict]:
    """The points of a chart's selection if it is new since the last run (a click is acted on once), else []."""
    selection = st.session_state.get(chart_key) or {}
    points = list((selection.get("selection") or {}).get("points") or [])
    handled = st.session_state.setdefault(CodeSpaceKey.HANDLED, {})
    if not points or handled.get(chart_key) == points:
        return []
    handled[chart_key] = points
    return points


def digit_index(point: dict) -> int:
    """The digit a selected point stands for (customdata), or a negative marker (your digit, the plane)."""
    data = point.get("customdata")
    data = data[0] if isinstance(data, (list, tuple)) else data
    return int(data) if data is not None else maps_figures.PLANE_POINT


def remember_click(index: int) -> None:
    clicked = [i for i in st.session_state.get(CodeSpaceKey.CLICKED, []) if i != index]
    st.session_state[CodeSpaceKey.CLICKED] = (clicked + [index])[-2:]


def take_clicks(chart_key: str, *, plane: bool = False) -> None:
    for point in new_selection(chart_key)[-1:]:
        index = digit_index(point)
        if index >= 0:
            remember_click(index)
        if plane and "x" in point and "y" in point:
            st.session_state[CodeSpaceKey.PLANE_POINT] = (float(point["x"]), float(point["y"]))


def draw_map(code_map, labels: np.ndarray, *, title: str, yours: np.ndarray | None, chart_key: str,
             axis_titles: tuple[str, str] = ("", ""), revision: str, clickable: bool = False,
             width: int = maps_figures.PREVIEW_WIDTH) -> None:
    """The map's chart, and a picture of it in its place until the browser has drawn it; `width`: about the chart's
    width in pixels on a common window (the picture's, stretched to the chart's real width)."""
    placed = None if yours is None else code_map.place(yours[None])[0]
    clicked = st.session_state.get(CodeSpaceKey.CLICKED, [])
    names = ["A", "B"] if len(clicked) == 2 else ["A"]
    figure = maps_figures.code_map(code_map.coords, labels, title=title, yours=placed, revision=revision,
                                   chosen=list(zip(clicked, names)), axis_titles=axis_titles, clickable=clickable,
                                   height=MAP_HEIGHT)
    x_range, y_range = maps_figures.map_ranges(code_map.coords, placed)
    frame = f"{chart_key}_frame"
    with st.container(key=frame):
        st.markdown(shared_preview(revision, title, tuple(x_range), tuple(y_range), width, code_map.coords, labels))
        st.plotly_chart(figure, key=chart_key, on_select="rerun", selection_mode="points", theme=None,
                        width="stretch")
    st.html(preview_style(frame))


@st.cache_resource(max_entries=16, show_spinner=False)
def shared_preview(revision: str, title: str, x_range: tuple, y_range: tuple, width: int, _coords: np.ndarray,
                   _labels: np.ndarray) -> str:
    """The map as a picture (maps_figures.map_preview), in Markdown, once per map and view, shared by every
    visitor."""
    return pictures_ui.markdown(maps_figures.map_preview(_coords, _labels, title=title, x_range=x_range,
                                                         y_range=y_range, width=width, height=MAP_HEIGHT))


def preview_style(frame: str) -> str:
    """The map's picture shows in the chart's place until plotly has drawn the chart (a new tab loads plotly.js
    first: seconds on a small machine), stretched to the chart's size; then it goes and the chart takes its place.
    The map area's fixed height keeps the rest of the page still."""
    where = f".st-key-{frame}"
    return (f"<style>{where} [data-testid=stMarkdown] img {{width: 100%; height: {MAP_HEIGHT}px}} "
            f"{where}:has(.js-plotly-plot .main-svg) .stElementContainer:has([data-testid=stMarkdown]) "
            "{display: none}</style>")


def map_area():
    """The container every map of the codes is drawn in, with its one line of text (see MAP_AREA_HEIGHT)."""
    return st.container(height=MAP_AREA_HEIGHT, border=False, key=CodeSpaceKey.MAP_AREA)


def text_line():
    """The box of the map area's line of text (see TEXT_HEIGHT)."""
    return st.container(height=TEXT_HEIGHT, border=False)


def map_section(model: nn.Module, fingerprint: str, codes: np.ndarray, labels: np.ndarray,
                yours: np.ndarray | None) -> None:
    take_clicks(CodeSpaceKey.MAP_CHART)
    method = st.radio("Map", list(METHODS), horizontal=True, key=CodeSpaceKey.METHOD,
                      help="PCA: the codes' two directions of largest spread, a linear shadow of the code space. "
                           "t-SNE: a nonlinear map that keeps each code's nearest neighbours near it.")
    if METHODS[method] == "pca":
        pca = shared_pca(fingerprint, codes)
        with map_area():
            text_line().caption(f"The first two principal components of the {codes.shape[1]}-number codes keep "
                                f"{pca.kept_variance:.0%} of their spread; digits overlap where the other directions "
                                f"separate them.")
            draw_map(pca, labels, title=f"PCA of the codes of {len(codes):,} digits", yours=yours,
                     chart_key=CodeSpaceKey.MAP_CHART, revision=f"pca-{fingerprint}")
        return
    shipped = shipped_checkpoints().get(fingerprint)
    job = map_jobs().start(fingerprint, codes,
                           shipped=shipped_map_path(Path(shipped), "tsne") if shipped else None)
    if job.result is None:
        tsne_progress(fingerprint, labels)
        return
    made = "shipped with the model" if job.seconds == 0 else f"made in {job.seconds:.0f} s"
    with map_area():
        text_line().caption(f"t-SNE of the codes (openTSNE), {made}. Distances between far clusters mean little; who "
                            "is next to whom is what it keeps.")
        draw_map(job.result, labels, title=f"t-SNE of the codes of {len(codes):,} digits", yours=yours,
                 chart_key=CodeSpaceKey.MAP_CHART, revision=f"tsne-{fingerprint}")


@st.fragment(run_every=1.5)
def tsne_progress(fingerprint: str, labels: np.ndarray) -> None:
    """The t-SNE job's progress and its map so far, in the map's own area and at its height from the first refresh
    (a blank map until the first preview), so nothing moves until the finished map takes its place; the whole page
    reruns once the map is ready."""
    job: MapJob | None = map_jobs().get(fingerprint)
    if job is None or job.finished:
        if job is not None and job.error:
            st.error(f"The t-SNE map failed: {job.error}. Choose t-SNE again to retry.")
            return
        st.rerun()
    progress = job.progress
    if progress.preview is None:
        so_far, title = np.zeros((0, 2), np.float32), "The t-SNE map will take shape here"
    else:
        so_far, title = progress.preview, "The t-SNE map taking shape"
    with map_area():
        text_line().progress(progress.fraction,
                             text=f"Making the t-SNE map of {len(labels):,} codes: {progress.stage}")
        ui.chart(maps_figures.code_map(so_far, labels[:len(so_far)], height=MAP_HEIGHT,
                                       title=f"{title} (made once per model and server)",
                                       revision=f"preview-{fingerprint}"), key="cs-preview")


def plane_section(model: nn.Module, fingerprint: str, codes: np.ndarray, labels: np.ndarray,
                  yours: np.ndarray | None) -> None:
    take_clicks(CodeSpaceKey.PLANE_CHART, plane=True)
    take_clicks(CodeSpaceKey.MANIFOLD_CHART, plane=True)
    extent = latent.plane_range(codes)
    st.caption("This model's code has 2 numbers: its code space is a plane, drawn as it is, with no projection. "
               "Click anywhere on either chart to decode that point.")
    left, right = st.columns(2)
    with left:
        draw_map(latent.fit_pca(codes), labels, title=f"The codes of {len(codes):,} digits", yours=yours,
                 chart_key=CodeSpaceKey.PLANE_CHART, axis_titles=("code[0]", "code[1]"),
                 revision=f"plane-{fingerprint}", clickable=True, width=PLANE_CHART_WIDTH)
    point = st.session_state.get(CodeSpaceKey.PLANE_POINT)
    with right:
        image = shared_manifold(fingerprint, model, tuple(map(tuple, extent.tolist())))
        figure = maps_figures.manifold_figure(image, extent, size=MANIFOLD_SIZE, marked=point,
                                              revision=f"manifold-{fingerprint}")
        st.plotly_chart(figure, key=CodeSpaceKey.MANIFOLD_CHART, on_select="rerun", selection_mode="points",
                        theme=None, width="stretch")
    if point is not None:
        decoded = latent.decode_codes(model, np.asarray([point], np.float32))[0]
        pictures_ui.show(pictures.digit_panels([(f"Decoded at ({point[0]:.2f}, {point[1]:.2f})", decoded)]))


def clicked_digit_section(model: nn.Module, codes: np.ndarray, labels: np.ndarray) -> None:
    clicked = st.session_state.get(CodeSpaceKey.CLICKED, [])
    if not clicked:
        st.info("Click a point on the map to open its digit, with its nearest neighbours in code space.")
        return
    index = clicked[-1]
    images = ui.shared_data().val_images
    st.subheader(f"Digit #{index}: a {labels[index]}")
    left, right = st.columns([3, 2])
    with left:
        pictures_ui.show_reconstruction(model, images[index].numpy() / 255)
    near, distances = latent.nearest(codes, codes[index], NEIGHBOURS, exclude=index)
    tags = [f"a {labels[i]} · {d:.2f}" for i, d in zip(near, distances)]
    with right:
        st.caption(f"Its {NEIGHBOURS} nearest codes (Euclidean distance in the {codes.shape[1]}-number code space), "
                   f"nearest first: label and distance.")
        half = NEIGHBOURS // 2  # two rows: tiles large enough to read their tags
        rows = [(f"Nearest to #{index}", images[near[:half]].numpy() / 255),
                ("", images[near[half:]].numpy() / 255)]
        pictures_ui.show(maps_figures.strips(rows, tags=[tags[:half], tags[half:]], width=400))
        st.caption("Indices: " + ", ".join(f"#{i}" for i in near))


def interpolation_ends(yours: ui.CurrentDigit | None) -> tuple[str, np.ndarray, str, np.ndarray] | None:
    images = ui.shared_data().val_images
    clicked = st.session_state.get(CodeSpaceKey.CLICKED, [])
    options = []
    if yours is not None and clicked:
        options.append("Your digit → the last clicked digit")
    if len(clicked) == 2:
        options.append("The two clicked digits (A → B)")
    if not options:
        st.info("Click two digits on the map (or draw a digit on the home page and click one) to interpolate.")
        return None
    how = st.radio("Between", options, horizontal=True, key=CodeSpaceKey.ENDS)
    if how.startswith("Your"):
        return "your digit", yours.image, f"#{clicked[-1]}", images[clicked[-1]].numpy() / 255
    return f"#{clicked[0]}", images[clicked[0]].numpy() / 255, f"#{clicked[1]}", images[clicked[1]].numpy() / 255


@st.fragment
def interpolation_section(model: nn.Module) -> None:
    st.subheader("Interpolation")
    ends = interpolation_ends(ui.current_digit())
    if ends is None:
        return
    start_name, start, end_name, end = ends
    steps = st.slider("Steps", 5, 16, 10, key=CodeSpaceKey.STEPS)
    line = latent.interpolate_codes(encode_one(model, start), encode_one(model, end), steps)
    rows = [(f"Decoded along the straight line between the codes of {start_name} and {end_name}",
             latent.decode_codes(model, line)),
            ("The two images blended pixel by pixel", latent.blend_pixels(start, end, steps))]
    pictures_ui.show(maps_figures.strips(rows))
    st.caption("The decoder draws strokes all along the line: the code space between two digits is filled with "
               "digit-like shapes. The pixel blend is two ghosts fading into each other.")


def reset_sliders(code: np.ndarray) -> None:
    for number, value in enumerate(code):
        st.session_state[f"{CodeSpaceKey.SLIDER}{number}"] = float(value)


@st.fragment
def sliders_section(model: nn.Module, fingerprint: str, codes: np.ndarray) -> None:
    st.subheader("Code sliders")
    digit = ui.current_digit()
    clicked = st.session_state.get(CodeSpaceKey.CLICKED, [])
    if digit is not None:
        name, image = f"your digit ({digit.origin})", digit.image
    elif clicked:
        name, image = f"digit #{clicked[-1]}", ui.shared_data().val_images[clicked[-1]].numpy() / 255
    else:
        name, image = "digit #0", ui.shared_data().val_images[0].numpy() / 255
    code = encode_one(model, image)
    base = (fingerprint, name, float(np.asarray(image).sum()))
    if st.session_state.get(CodeSpaceKey.SLIDER_BASE) != base:
        st.session_state[CodeSpaceKey.SLIDER_BASE] = base
        reset_sliders(code)
    ranges = shared_ranges(fingerprint, codes)
    low, high = latent.SLIDER_PERCENTILES
    st.caption(f"Every number of the code of {name}; each slider spans that number's values over the validation "
               f"digits from percentile {low:g} to percentile {high:g}. The image is decoded as you move them.")
    left, right = st.columns([3, 2])
    with right:
        st.button("Reset to the digit's code", on_click=reset_sliders, args=(code,), key=CodeSpaceKey.RESET_SLIDERS)
        slid = np.array([st.session_state[f"{CodeSpaceKey.SLIDER}{number}"] for number in range(len(code))],
                        np.float32)
        panels = [("The digit's reconstruction", latent.decode_codes(model, code[None])[0]),
                  ("Decoded from the sliders", latent.decode_codes(model, slid[None])[0])]
        pictures_ui.show(pictures.digit_panels(panels))
    with left:
        columns = st.columns(4)
        for number, value in enumerate(code):
            low = min(float(ranges[number][0]), float(value))
            high = max(float(ranges[number][1]), float(value))
            columns[number % 4].slider(f"code[{number}]", low, high, step=(high - low) / 200, format="%.2f",
                                       key=f"{CodeSpaceKey.SLIDER}{number}")


def use_plane_model() -> None:
    st.session_state[ui.SharedKey.MODEL_WIDGET] = PLANE_LABEL  # a callback runs before the sidebar's widget is drawn


chosen = ui.model_sidebar()
data = ui.shared_data()
model = chosen.model
fingerprint = data_fingerprint(latent.weights_fingerprint(model), data.source)
codes = shared_codes(fingerprint, model)
labels = data.val_labels.numpy()
current = ui.current_digit()
your_code = None if current is None else encode_one(model, current.image)

st.title("The code space")
st.caption(f"Model: **{chosen.label}**, a {codes.shape[1]}-number code · {len(codes):,} {data.val_name} digits, "
           f"one point each, coloured by label (labels only colour the points; no map uses them).")
if current is None:
    st.caption("Draw, pick or upload a digit on the home page and it appears on the map as a star.")
else:
    st.caption(f"The star is your digit ({current.origin}), placed by the same projection as the points.")
if codes.shape[1] == 2:
    plane_section(model, fingerprint, codes, labels, your_code)
else:
    map_section(model, fingerprint, codes, labels, your_code)
    if PLANE_LABEL is not None and PLANE_CHECKPOINT.is_file():
        st.button("Open the shipped model whose code is a plane (2 numbers)", on_click=use_plane_model,
                  key=CodeSpaceKey.USE_PLANE, help="Its code space needs no projection, and every point of it decodes.")
clicked_digit_section(model, codes, labels)
interpolation_section(model)
sliders_section(model, fingerprint, codes)
