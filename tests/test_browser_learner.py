"""What a learner tripped over (issue 19), checked where a person sees it: Debian's Chromium on the shared server
started the README's way."""

import re

import pytest

from tests.browser import (
    SEVEN,
    ZERO,
    button,
    choose,
    chromium,
    clear_canvas,
    draw,
    picture_alts,
    screenshot,
    wait_for_picture,
    wait_for_plot,
    wait_for_reconstruction,
    wait_images_loaded,
    wait_until_idle,
)

# The source of the picture whose alt text holds `part` (its pixels: to tell one drawing from another).
PICTURE_DATA = """part => { const img = [...document.images].find(i => (i.alt || '').includes(part));
    return img && img.complete ? img.src : null; }"""


@pytest.fixture
def page(app_server):
    with chromium() as context:
        page = context.new_page()
        page.goto(app_server.url)
        page.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
        yield page


def test_the_vaes_traversal_follows_each_new_drawing_and_the_toolbar_is_the_viewers(page):
    assert page.get_by_role("button", name="Deploy").count() == 0  # client.toolbarMode = "viewer"
    choose(page, "Model to use", "Pretrained variational (VAE)")
    page.get_by_text("Model: Pretrained variational (VAE)").wait_for(timeout=30_000)
    draw(page, SEVEN)
    wait_for_reconstruction(page)
    wait_for_picture(page, "drawn on the home page")  # the traversal of the drawing, not "draw a digit first"
    seven = page.evaluate(PICTURE_DATA, "code number 0 swept")
    clear_canvas(page)
    draw(page, ZERO)
    wait_for_reconstruction(page)
    page.wait_for_function(f"seven => {{ const now = ({PICTURE_DATA})('code number 0 swept');"
                           " return !!now && now !== seven; }", arg=seven, timeout=30_000)
    wait_images_loaded(page)
    screenshot(page, "vae-traversal-follows-drawing.png")


def test_a_click_on_the_code_planes_empty_space_decodes_that_point(app_server):
    with chromium() as context:
        page = context.new_page()
        page.goto(f"{app_server.url}/Code_space")
        button(page, "Open the shipped model whose code is a plane (2 numbers)").click()
        page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(el =>
            String(el.layout?.title?.text || '').includes('The codes of') && el._fullLayout?.xaxis?._length)""",
                               timeout=120_000)
        # A click selects what plotly's hover found under the pointer: the page's run must have ended (its end
        # re-renders the chart, which drops the hover) and the hover's label must show before the click.
        wait_until_idle(page)
        # Near the plot's top-right corner: the view's padding, where no digit's code lies. The chart is scrolled
        # into view first: the click on the button below the map scrolled the page, and the plane's chart that
        # replaced the map may start above the window's top edge, where the pointer cannot hover.
        where = page.evaluate("""() => {
            const el = [...document.querySelectorAll('.js-plotly-plot')].find(e =>
                String(e.layout?.title?.text || '').includes('The codes of'));
            el.scrollIntoView({block: 'center', behavior: 'instant'});
            const {xaxis, yaxis} = el._fullLayout, box = el.getBoundingClientRect();
            return {x: box.left + xaxis._offset + xaxis._length - 4, y: box.top + yaxis._offset + 4,
                    code: [xaxis.p2l(xaxis._length - 4), yaxis.p2l(4)]}; }""")
        assert 0 <= where["y"] < page.viewport_size["height"] and 0 <= where["x"] < page.viewport_size["width"], where
        page.mouse.move(where["x"], where["y"])
        page.wait_for_function("() => [...document.querySelectorAll('.hoverlayer .hovertext')].some(el =>"
                               " el.textContent.includes('decode'))", timeout=30_000)
        page.mouse.click(where["x"], where["y"])
        wait_for_picture(page, "Decoded at")
        decoded = next(alt for alt in picture_alts(page) if alt.startswith("Decoded at"))
        x, y = map(float, re.match(r"Decoded at \(([-\d.]+), ([-\d.]+)\)", decoded).groups())
        span = page.evaluate("""() => { const el = [...document.querySelectorAll('.js-plotly-plot')].find(e =>
            String(e.layout?.title?.text || '').includes('The codes of'));
            return [el._fullLayout.xaxis.range, el._fullLayout.yaxis.range]; }""")
        step_x = (span[0][1] - span[0][0]) / 47  # the click grid's spacing (CLICK_GRID points a side)
        step_y = (span[1][1] - span[1][0]) / 47
        assert abs(x - where["code"][0]) <= step_x and abs(y - where["code"][1]) <= step_y
        screenshot(page, "code-plane-empty-click.png")


def test_the_loss_charts_log_axis_reads_at_a_glance(page):
    page.locator('[data-testid="stSidebarNav"] a', has_text="Train").click()
    button(page, "Start").wait_for(timeout=60_000)
    button(page, "Start").click()
    wait_for_plot(page, "Loss", min_points=40, timeout=120_000)
    ticks = page.evaluate("""() => { const el = [...document.querySelectorAll('.js-plotly-plot')].find(e =>
        String(e.layout?.title?.text || '').includes('Loss'));
        return [...el.querySelectorAll('.ytick text')].map(t => t.textContent); }""")
    button(page, "Stop").click()
    values = [float(text.replace(",", "")) for text in ticks]  # each label a whole number, decade included
    assert len(values) >= 3 and len(set(ticks)) == len(ticks), ticks
    assert values == sorted(values), ticks  # bottom to top
    assert values[-1] / values[0] >= 2, ticks  # they span the curve, not one decade's digits
    notes = page.evaluate("""() => { const el = [...document.querySelectorAll('.js-plotly-plot')].find(e =>
        String(e.layout?.title?.text || '').includes('Loss'));
        return (el._fullLayout.annotations || []).map(a => String(a.text)); }""")
    assert any(note.startswith("start ") for note in notes) and any(note.startswith("now ") for note in notes)
    screenshot(page, "loss-log-axis.png")
