#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine (venv, packages, Debian's Chromium), then run it.
# Extra arguments go to pytest, e.g. `bash tests/run.sh tests/test_model.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r tests/requirements.txt \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
if ! command -v chromium >/dev/null 2>&1; then  # for the browser tests; never `playwright install` (no network)
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest --timeout 900 -p no:cacheprovider "$@"
