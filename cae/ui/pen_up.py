"""Send a stroke when the pen lifts, not 200 ms later.

streamlit-drawable-canvas 0.13 waits a fixed 200 ms after each change before it sends the drawing (hard-coded in
its front-end), which was two thirds of the time from pen-up to the new reconstruction. Its toolbar's own "Update
the app with this drawing" button sends at once and cancels that wait. `send_on_pen_up()` mounts a small script that
presses that button as soon as the pen lifts on a canvas: one send a stroke, the canvas's own. If a later canvas
release renames the button, nothing breaks: the strokes go after the canvas's 200 ms again.

The script counts its sends in `window.caePenUp.sends`, so a browser test can tell that this path ran.
"""

from __future__ import annotations

import functools

import streamlit as st

SEND_BUTTON_LABEL = "Update the app with this drawing"  # the canvas toolbar's button, by its aria-label

# One listener for the whole document, installed by the first mount (a rerun mounts this again: it is there).
# It listens in the capture phase and presses the button on a timer of 0 ms, so the canvas's own pen-up handling
# (which adds the stroke and schedules the delayed send) has run first; the button then sends and cancels the delay.
SCRIPT = """
export default function () {
  if (window.caePenUp) return;
  const state = { sends: 0, pending: false };
  window.caePenUp = state;
  const onPenUp = (event) => {
    const canvas = event.composedPath().find((el) => el.classList && el.classList.contains("upper-canvas"));
    if (!canvas || state.pending) return;
    const button = canvas.getRootNode().querySelector('button[aria-label="SEND_BUTTON_LABEL"]');
    if (!button) return;
    state.pending = true;
    setTimeout(() => {
      state.pending = false;
      button.click();
      state.sends += 1;
    }, 0);
  };
  document.addEventListener("pointerup", onPenUp, true);
  document.addEventListener("mouseup", onPenUp, true);
}
""".replace("SEND_BUTTON_LABEL", SEND_BUTTON_LABEL)


@functools.cache
def _pen_up_component():
    return st.components.v2.component("cae_explorer.pen_up", js=SCRIPT, isolate_styles=False)


def send_on_pen_up() -> None:
    """Mount the pen-up sender (once per page; every canvas on the page gets it)."""
    _pen_up_component()(key="cae-pen-up")
