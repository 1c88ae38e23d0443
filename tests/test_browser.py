"""End to end in Debian's Chromium, on the shared server: draw with the mouse on the real canvas; train, stop and
use the model."""

import re

import pytest

from cae.models import noise
from tests.browser import (
    COUNT_PLOTS,
    SEVEN,
    ZERO,
    button,
    choose,
    chromium,
    clear_canvas,
    draw,
    picture_alts,
    plot_counts,
    plotly_loaded,
    plots,
    screenshot,
    wait_for_picture,
    wait_for_plot,
    wait_for_reconstruction,
    wait_images_loaded,
)


@pytest.fixture
def page(app_server):
    with chromium() as context:
        page = context.new_page()
        page.add_init_script(COUNT_PLOTS)
        page.goto(app_server.url)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
        yield page


def metric_value(page) -> float:
    return float(page.locator('[data-testid="stMetricValue"]').first.inner_text())


def pen_up_sends(page) -> int:
    """Strokes the app's pen-up script sent at once (cae/ui/pen_up.py), instead of after the canvas's own 200 ms."""
    return page.evaluate("() => window.caePenUp ? window.caePenUp.sends : -1")


def test_drawing_with_the_mouse_shows_the_reconstruction(page):
    draw(page, SEVEN)
    wait_for_reconstruction(page)
    assert pen_up_sends(page) == len(SEVEN)  # every stroke went when the pen lifted
    assert 0 < metric_value(page) < 0.2
    wait_for_picture(page, "The code: 32 numbers")
    # The panels and the code are pictures: drawing never loads plotly.js, which held the canvas up in a new tab.
    assert plot_counts(page) == [] and not plotly_loaded(page)
    wait_images_loaded(page)
    assert screenshot(page, "draw.png").stat().st_size > 10_000
    clear_canvas(page)
    page.get_by_text("Draw a digit on the black square").wait_for(timeout=30_000)
    assert page.locator('[data-testid="stMetricValue"]').count() == 0
    draw(page, ZERO)  # the fresh canvas takes a new drawing
    wait_for_reconstruction(page)
    assert pen_up_sends(page) == len(SEVEN) + len(ZERO)  # the new canvas's strokes too


def loss_points(page) -> int:
    return max((sum(p["points"][:1]) for p in plots(page) if "Loss" in p["title"]), default=0)


def test_train_stop_and_use_the_model_on_the_home_page(page):
    page.locator('[data-testid="stSidebarNav"] a', has_text="Train").click()
    button(page, "Start").wait_for(timeout=60_000)
    button(page, "Start").click()
    wait_for_plot(page, "filters")
    wait_for_plot(page, "Loss", min_points=4)
    first = loss_points(page)
    wait_for_plot(page, "Loss", min_points=first, timeout=30_000)  # the curve grows while we watch
    screenshot(page, "training.png")
    # Each update mounts a new chart, plotted once, not again after mounting. The filters are new every 3 s (the
    # loss every second): wait, with a deadline, until each has been updated at least once.
    page.wait_for_function("""() => ['Loss', 'filters'].every(part =>
        window.__caePlots.filter(c => c.title.includes(part)).length >= 2)""", timeout=60_000)
    charts = plot_counts(page)
    assert all(c["plots"] == 1 for c in charts), charts
    button(page, "Stop").click()
    page.get_by_text("The model of this run is in the sidebar").wait_for(timeout=60_000)
    label = re.search(r"as (Run 1: .*?)\.", page.get_by_text("The model of this run").inner_text()).group(1)
    page.locator('[data-testid="stSidebarNav"] a').first.click()  # the home page, same browser session
    page.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=label).click()
    page.get_by_text(f"Model: {label}").wait_for(timeout=30_000)
    draw(page, SEVEN)
    wait_for_reconstruction(page)
    assert 0 < metric_value(page) < 0.3
    wait_images_loaded(page)
    screenshot(page, "trained-model-on-home.png")


def test_train_a_denoiser_on_the_page_then_denoise_a_drawn_digit(page):
    page.locator('[data-testid="stSidebarNav"] a', has_text="Train").click()
    button(page, "Start").wait_for(timeout=60_000)
    choose(page, "Model type", "Denoising autoencoder")
    page.get_by_text("Noise while training").wait_for(timeout=30_000)
    button(page, "Start").click()
    wait_for_plot(page, "Loss", min_points=30, timeout=120_000)
    button(page, "Stop").click()
    page.get_by_text("The model of this run is in the sidebar").wait_for(timeout=60_000)
    label = re.search(r"as (Run \d+: DAE.*?)\.", page.get_by_text("The model of this run").inner_text()).group(1)
    page.locator('[data-testid="stSidebarNav"] a').first.click()
    page.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
    choose(page, "Model to use", label)
    page.get_by_text(f"Model: {label}").wait_for(timeout=30_000)
    choose(page, "Add noise", noise.NAMES["gaussian"])
    page.get_by_text("Noise amount").wait_for(timeout=30_000)
    draw(page, SEVEN)
    wait_for_reconstruction(page)
    page.get_by_text("PSNR of the output").wait_for(timeout=30_000)
    values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    noisy_db, output_db = (float(v.split()[0]) for v in values[1:3])
    assert output_db > noisy_db  # even a briefly trained denoiser cleans the noise off a digit it never saw
    assert any("Noisy input" in alt and "Reconstruction" in alt for alt in picture_alts(page))
    wait_images_loaded(page)
    screenshot(page, "denoise-drawn-digit.png")
