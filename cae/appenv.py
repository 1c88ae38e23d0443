"""Process settings for the Streamlit app; import this before anything that imports torch.

torch's OpenMP threads (GNU libgomp) busy-wait for a long while after each parallel region; in the app the server
shares the machine with the browser, and that spinning takes CPU the browser needs to show the result. Measured on
2 cores, mouse-up to reconstruction, median of 30 strokes: 467 ms before this setting and 269-280 ms after it, with
Streamlit's post-run garbage collection still on; with that off too (.streamlit/config.toml), 264 ms with this
setting and 272 ms without it. Unlike OMP_WAIT_POLICY=PASSIVE, a short spin keeps training speed.
libgomp reads the setting once, when torch loads it, so this module must be imported first.
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "20000")
