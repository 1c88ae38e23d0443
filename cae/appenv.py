"""Process settings for the Streamlit app; import this before anything that imports torch.

torch's OpenMP threads (GNU libgomp) busy-wait for a long while after each parallel region. In the app the server
shares the machine with the browser, and that spinning took the core the browser needed to show the result: on
2 cores, mouse-up to reconstruction had a median of 467 ms with about half the strokes stalled ~220 ms. With a short
spin (then sleep) the median was 269-280 ms over 30 strokes (6 and 13 strokes still stalled), and unlike
OMP_WAIT_POLICY=PASSIVE it keeps training speed.
libgomp reads the setting once, when torch loads it, so this module must be imported first.
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "20000")
