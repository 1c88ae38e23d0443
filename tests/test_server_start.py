"""The README's server does the first visitor's waiting at its start: `streamlit run app.py` finds the st.App in
app.py, imports the file once before it takes a connection (torch and the app's modules), and fills the shared
caches then (ui.warm_up); a visitor's run of app.py is the router as before (AppTests of every page check that)."""

from pathlib import Path

import pytest
from streamlit.web.server.app_discovery import discover_asgi_app

from tests.browser import streamlit_server
from tests.conftest import ROOT


def test_streamlit_run_finds_the_app_in_app_py():
    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app"


@pytest.mark.slow  # starts a server
def test_the_server_has_loaded_torch_before_its_first_visitor(mnist_dir):
    with streamlit_server(mnist_dir) as server:  # returns once the server answers, before any page is opened
        libraries = Path(f"/proc/{server.pid}/maps").read_text()
        log = server.log.read_text()
    assert "libtorch_cpu" in libraries
    assert "Traceback" not in log and "missing ScriptRunContext" not in log  # a quiet start


def test_the_warm_up_routes_every_page_through_app_py_from_the_first_visit(monkeypatch):
    """Without it, a direct link's first run on a cold server ran the page file alone (the pages-folder mode), then
    again through the router (ui._through_the_router): the first visitor of /Train waited for two runs."""
    from streamlit.runtime.pages_manager import PagesManager

    from cae.ui import common as ui

    monkeypatch.setattr(PagesManager, "uses_pages_directory", None)  # a cold server: the mode not decided yet
    ui.warm_up()
    assert PagesManager.uses_pages_directory is False
