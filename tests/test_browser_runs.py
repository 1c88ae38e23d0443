"""End to end in Chromium, on the shared server (whose runs go to a temporary CAE_RUNS_DIR): a run trained on the
Train page's defaults is kept at the page's address; a reload of that address still offers its model, a fresh
address does not."""

import re

from tests.browser import button, chromium, wait_for_plot

SAVED = "Saved: "
CHOSEN_WITHOUT_SCORE = """() => {
    const caption = document.querySelector('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]');
    return caption !== null && caption.innerText.startsWith('Autoencoder') && !caption.innerText.includes('Held-out');
}"""


def model_options(page) -> list[str]:
    """The sidebar's model choice, opened and read, then closed."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=30_000)
    names = [text.strip() for text in options.all_inner_texts()]
    page.keyboard.press("Escape")
    return names


def test_a_trained_run_survives_a_reload_of_its_address_and_a_fresh_address_does_not_see_it(app_server):
    with chromium() as context:
        page = context.new_page()
        page.goto(f"{app_server.url}/Train")
        button(page, "Start").wait_for(timeout=60_000)
        page.wait_for_url(re.compile(r"[?&]w=[A-Za-z0-9_-]{24}"), timeout=30_000)
        address = page.url
        workspace = re.search(r"[?&]w=([A-Za-z0-9_-]{24})", address).group(1)
        page.get_by_text(f"?w={workspace}").first.wait_for(timeout=30_000)  # the sidebar's link to copy
        button(page, "Start").click()
        wait_for_plot(page, "Loss", min_points=4)
        button(page, "Stop").click()
        page.get_by_text("The model of this run is in the sidebar").wait_for(timeout=60_000)
        page.reload()
        button(page, "Start").wait_for(timeout=60_000)
        assert f"w={workspace}" in page.url
        saved = [name for name in model_options(page) if name.startswith(SAVED)]
        assert len(saved) == 1 and "CAE, code 32" in saved[0] and "stopped at step" in saved[0], saved
        page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
        page.get_by_role("option", name=saved[0]).click()
        # Its checkpoint's description replaces the shipped model's: a run stopped in its first epoch has no score.
        page.wait_for_function(CHOSEN_WITHOUT_SCORE, timeout=30_000)
        assert page.get_by_text("cannot be used").count() == 0  # loaded from its checkpoint

        stranger = context.new_page()
        stranger.goto(app_server.url)
        stranger.get_by_text("Draw a digit on the black square").wait_for(timeout=60_000)
        stranger.wait_for_url(re.compile(r"[?&]w="), timeout=30_000)
        assert f"w={workspace}" not in stranger.url
        assert not [name for name in model_options(stranger) if name.startswith(SAVED)]
