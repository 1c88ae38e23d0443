"""The server as the README starts it, in Chromium: a class arriving at once on a cold server (a server of its
own each time), and a closed training tab whose run stops by itself after the shared server's grace."""

import re
import time

import pytest

from cae.engine.runner import DEFAULT_ORPHAN_SECONDS
from tests.browser import button, chromium, streamlit_server
from tests.conftest import BROWSER_ORPHAN_SECONDS

# Each page and a text it shows once its script has run to the end.
PAGES = {"": "Draw a digit on the black square", "Train": "press Start", "How_it_works": "How it works",
         "Code_space": "The code space"}
TABS = 8


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {seconds} s")
        time.sleep(0.25)


@pytest.mark.browser
@pytest.mark.parametrize("trial", range(3))
def test_a_class_opening_a_cold_server_at_once_sees_no_exception(mnist_dir, trial):
    paths = [list(PAGES)[i % len(PAGES)] for i in range(TABS)]
    with streamlit_server(mnist_dir) as server, chromium() as browser:
        tabs = [browser.new_page() for _ in paths]
        for tab, path in zip(tabs, paths):  # each tab only starts loading: all 8 sessions arrive together
            tab.goto(f"{server.url}/{path}", wait_until="commit")
        for tab, path in zip(tabs, paths):
            tab.get_by_text(PAGES[path]).first.wait_for(timeout=180_000)
        for tab, path in zip(tabs, paths):
            errors = tab.locator('[data-testid="stException"]')
            assert errors.count() == 0, f"/{path}: {errors.first.inner_text()[:1500]}"
            # Served through app.py's navigation, not Streamlit's pages-folder mode (which names the home "app").
            navigation = tab.locator('[data-testid="stSidebarNav"]')
            assert "Train a model" in navigation.inner_text(), f"/{path}: {navigation.inner_text()}"
        log = server.log.read_text()
        assert "Traceback" not in log and "DeadlockError" not in log, log[-3000:]


def test_closing_a_training_tab_stops_its_run(app_server):
    with chromium() as browser:
        watcher = browser.new_page()  # another session on the same server (a session is a tab's connection)

        def training_now() -> int:
            watcher.goto(f"{app_server.url}/Train")
            caption = watcher.get_by_text(re.compile(r"\d+ training now"))
            caption.wait_for(timeout=120_000)
            return int(re.search(r"(\d+) training now", caption.inner_text()).group(1))

        wait_until(lambda: training_now() == 0, 120, "no run of an earlier test training on the shared server")
        trainer_tab = browser.new_page()
        trainer_tab.goto(f"{app_server.url}/Train")
        button(trainer_tab, "Start").wait_for(timeout=120_000)
        trainer_tab.locator('[data-testid="stSidebar"]').get_by_text("Epochs", exact=True).wait_for()
        # A run long enough to be still going when we look again: all digits, many epochs.
        set_slider_to_max(trainer_tab, "Epochs")
        button(trainer_tab, "Start").click()
        trainer_tab.get_by_text(re.compile(r"Running · epoch")).wait_for(timeout=120_000)
        assert training_now() == 1
        trainer_tab.close()  # the tab goes, with no reconnect
        closed_at = time.monotonic()
        wait_until(lambda: training_now() == 0, 120, "the closed tab's run stopping")
        stopped_after = time.monotonic() - closed_at
        # The grace for a reconnect, then the stop; well before the default grace (CAE_ORPHAN_SECONDS reached it).
        assert BROWSER_ORPHAN_SECONDS <= stopped_after < DEFAULT_ORPHAN_SECONDS - 5, stopped_after


def set_slider_to_max(page, label: str) -> None:
    slider = page.locator('[data-testid="stSidebar"] [data-testid="stSlider"]').filter(has_text=label)
    thumb = slider.get_by_role("slider")
    thumb.focus()
    thumb.press("End")
    page.wait_for_function("""(label) => [...document.querySelectorAll('[data-testid="stSlider"]')]
        .some(el => el.innerText.includes(label) && el.innerText.includes('50'))""", arg=label, timeout=30_000)
