#!/usr/bin/env bash
# Make the project's virtual environment ready, for one of two purposes:
#   scripts/setup.sh demo   the core package plus the dashboard and notebook extras ([app,notebooks])
#   scripts/setup.sh test   everything ([dev]: every extra and the test tools) plus the Debian packages the
#                           browser tests need (installed when run as root)
# Python >= 3.10 is the only prerequisite. Installs use constraints.txt (the tested torch / torchvision).
# Idempotent and quick when nothing changed: the install is redone only when pyproject.toml or
# constraints.txt change, or when a purpose needs more than what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PURPOSE=${1:-test}
case "$PURPOSE" in
  demo) EXTRAS="app,notebooks"; SYSTEM_PACKAGES=${SYSTEM_PACKAGES-} ;;
  # The browser tests drive Debian's Chromium through Playwright (pip's playwright package, launched with
  # executable_path=/usr/bin/chromium; never `playwright install`, which downloads a browser build) and need
  # a font for readable screenshots.
  test) EXTRAS="dev"; SYSTEM_PACKAGES=${SYSTEM_PACKAGES-chromium fonts-liberation} ;;
  *) echo "usage: scripts/setup.sh [demo|test]" >&2; exit 2 ;;
esac
VENV=${VENV:-.venv}

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

# the stamp records what was installed: the dependency files' hash and the extras
stamp="$VENV/.drkd-installed"
files=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
installed=$(cat "$stamp" 2>/dev/null || true)
# [dev] includes every extra, so a test install also serves the demo
if [ "$installed" != "$files $EXTRAS" ] && [ "$installed" != "$files dev" ]; then
  echo ">> installing drkd_viz[$EXTRAS] into $VENV (the first time takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[$EXTRAS]" 2>&1 | grep -v "is ignored" || true
  "$VENV/bin/python" -c "import drkd_viz, torch, torchvision" \
    || { echo "error: installation failed; see pip's messages above" >&2; exit 1; }
  echo "$files $EXTRAS" > "$stamp"
fi
if [ "$PURPOSE" = test ] && ! command -v chromium >/dev/null 2>&1; then
  echo ">> note: chromium is not installed; the dashboard's browser tests will be skipped (run this script as root to install it)" >&2
fi
