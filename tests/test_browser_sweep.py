"""End to end in Chromium, on the shared server: a link sets the Train page up for short runs, "Sweep one setting"
starts a run per typed code size, the page shows them all (a line and a loss curve each) until they have ended, and
each run's model is offered in the sidebar's model choice."""

import re

from tests.browser import button, choose, chromium, screenshot, wait_for_plot

HEADINGS = """() => [...document.querySelectorAll('[data-testid="stHeading"]')].map(h => h.innerText)"""


def test_a_code_size_sweep_started_in_the_browser_shows_every_run_and_keeps_them(app_server):
    with chromium() as context:
        page = context.new_page()
        page.goto(f"{app_server.url}/Train?digits=500&epochs=1")  # 8 steps a run, set up by the address
        button(page, "Start").wait_for(timeout=60_000)
        page.wait_for_url(re.compile(r"[?&]w=[A-Za-z0-9_-]{24}"), timeout=30_000)
        page.get_by_text("Sweep one setting").click()
        choose(page, "Setting to sweep", "Code size")
        values = page.get_by_role("textbox", name="Values, separated by commas")
        values.fill("2, 4, 8")
        values.press("Enter")
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stTextInputField]')].some(el =>"
                               " el.value === '2, 4, 8')")
        button(page, "Start sweep").click()
        page.wait_for_function(f"() => ({HEADINGS})().some(text => text.startsWith('Sweep: 3 runs'))",
                               timeout=60_000)
        wait_for_plot(page, "Training loss against digits seen")
        page.wait_for_function(f"() => ({HEADINGS})().includes('Sweep: 3 runs, ended')", timeout=180_000)
        wait_for_plot(page, "Training loss against digits seen")
        traces = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].find(el =>
            String(el.layout?.title?.text || '').startsWith('Training loss against')).data.map(t => t.name)""")
        assert traces == ["2", "4", "8"]
        screenshot(page, "train-sweep.png")
        page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
        options = page.get_by_role("option")
        options.first.wait_for(timeout=30_000)
        saved = [text for text in options.all_inner_texts() if text.strip().startswith("Saved: sweep")]
        assert sorted(re.search(r"code_size=(\d+)", text).group(1) for text in saved) == ["2", "4", "8"]
