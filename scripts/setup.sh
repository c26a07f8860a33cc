#!/usr/bin/env bash
# Make the project's virtual environment ready: Python >= 3.10, a .venv, the package with its
# test tools, and the Debian packages the tests need (installed when run as root).
# Idempotent and quick when nothing changed: the install is redone only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
# Debian packages the test suite needs: the dashboard's browser tests drive Debian's Chromium through
# Playwright (pip's playwright package, launched with executable_path=/usr/bin/chromium; never run
# `playwright install`, which downloads a browser build) and need a font for readable screenshots.
SYSTEM_PACKAGES=${SYSTEM_PACKAGES:-chromium fonts-liberation}

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.10 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

if [ -n "$SYSTEM_PACKAGES" ]; then
  missing=$(for p in $SYSTEM_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo ">> installing Debian packages: $missing"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
      echo ">> please install these system packages (needs root): $missing" >&2
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  PY=$(pick_python) || { echo "error: Python 3.10 or newer is needed (found none on PATH)" >&2; exit 1; }
  echo ">> creating virtual environment $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi

stamp="$VENV/.drkd-installed"
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo ">> installing drkd_viz and its dependencies into $VENV (the first time takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import drkd_viz, torch, torchvision" \
    || { echo "error: installation failed; see pip's messages above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
# The browser tests use Debian's Chromium; Playwright only needs its path (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  echo ">> note: chromium is not installed; the dashboard's browser tests will be skipped (run this script as root to install it)" >&2
fi
