#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine (venv, packages, Debian's Chromium and PostgreSQL), then
# run it.
# Extra arguments go to pytest, e.g. `bash tests/run.sh tests/test_model.py -x`.
# The quick tier, for while you work: `bash tests/run.sh -m "not browser and not slow"` (markers: tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# pip runs again only when a requirements file or pyproject.toml changed since it last succeeded here (it takes
# about 10 s even with nothing to do, a tenth of the quick tier).
wanted="$(cat requirements.txt tests/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
stamp=.venv/.cae-requirements
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -r tests/requirements.txt \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$wanted" > "$stamp"
fi
missing=()
# For the browser tests; never `playwright install` (no network).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# For the run store's tests on PostgreSQL (tests/postgres.py starts a server of its own); Debian puts the server's
# binaries in /usr/lib/postgresql/<version>/bin, off PATH.
command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec .venv/bin/python -m pytest --timeout 900 -p no:cacheprovider "$@"
