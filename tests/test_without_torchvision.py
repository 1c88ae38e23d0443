"""The pages never import torchvision (seconds of a server's first visit), and a checkpoint still records its
version: what app.py and the pages import is imported in a fresh interpreter, which is then asked what it loaded."""

import ast
import json
import subprocess
import sys
from importlib import metadata

import pytest

from cae.engine import checkpoint
from tests.conftest import ROOT

PAGES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
# A plain import of the canvas outside `streamlit run` or AppTest raises (docs in ENVIRONMENT.md); it is Streamlit's
# component and imports no torchvision.
NOT_IMPORTABLE_ALONE = {"streamlit_drawable_canvas"}


def modules_the_pages_import() -> list[str]:
    names = []
    for page in PAGES:
        for node in ast.walk(ast.parse(page.read_text())):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
                names.append(node.module)
    return sorted({name for name in names if name.split(".")[0] not in NOT_IMPORTABLE_ALONE})


@pytest.mark.slow
def test_the_pages_import_neither_torchvision_nor_torchs_compiler_and_a_checkpoint_records_torchvision():
    modules = modules_the_pages_import()
    assert "cae.ui.appenv" in modules and "cae.ui.common" in modules  # the list is the pages' own
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from cae.engine.checkpoint import library_versions\n"
        "versions = library_versions()\n"
        "print(json.dumps({'loaded': sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'\n"
        "                                   or m.startswith('torch._dynamo')), 'versions': versions}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert report["versions"]["torchvision"] == metadata.version("torchvision")


def test_a_checkpoint_says_when_torchvision_is_not_installed(monkeypatch):
    def not_found(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_found)
    versions = checkpoint.library_versions()
    assert versions["torchvision"] == "not installed" and versions["torch"]
