"""Process settings and imports for the Streamlit app: `app.py` imports this module before anything else.

1. torch's OpenMP threads (GNU libgomp) busy-wait for a long while after each parallel region; in the app the server
   shares the machine with the browser, and that spinning takes CPU the browser needs to show the result. A short
   spin keeps training speed (OMP_WAIT_POLICY=PASSIVE does not; figures in docs/benchmarks.md). libgomp reads the
   setting once, when torch loads it, so it is set before torch is imported.
2. Every heavy module the pages use is imported here, at module level. Streamlit runs each visitor's script in a
   thread of its own; on a cold server two of them importing the same heavy package at once (torchvision, when the
   pages used it) failed with "partially initialized module" or `_DeadlockError`. Python holds a module's import
   lock until the module has run, so one thread imports everything below while every other waits for this module
   as a whole. That thread is the server's own, as it starts (app.py's st.App), before any visitor's.
3. torchvision is not among them, and nothing the pages import may import it: it takes seconds to import (it
   brings in torch's compiler, torch._dynamo), all of it on a server's first visit. The app reads MNIST's files
   with numpy (cae.engine.data) and tiles its digit grids itself (cae.views.figures.base); only the download
   that a person asks for, `python -m cae.data download`, imports torchvision. tests/test_without_torchvision.py checks.
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "20000")

import pandas  # noqa: E402,F401  (plotly imports it lazily while drawing a first chart)
import plotly.graph_objects  # noqa: E402,F401
import plotly.io  # noqa: E402,F401
import torch  # noqa: E402,F401

import cae.ui.common  # noqa: E402,F401  (and through it the rest of cae the pages use)
import cae.views.figures.code_space  # noqa: E402,F401
import cae.views.figures.inside  # noqa: E402,F401
import cae.views.inside  # noqa: E402,F401
import cae.views.latent  # noqa: E402,F401
import cae.views.latent_maps  # noqa: E402,F401
