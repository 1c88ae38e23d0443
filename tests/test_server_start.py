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
