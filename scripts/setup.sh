#!/usr/bin/env bash
# Idempotent set-up shared by the README's commands: a .venv in the repo root with the pinned
# packages (reinstalled when pyproject.toml changes), and Debian's Fashion-MNIST when apt can get it.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin=$(command -v python3.11 || command -v python3)
stamp=.venv/.installed-from-pyproject
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $python_bin" >&2
    "$python_bin" -m venv .venv
fi
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
    echo "setup: installing the pinned packages into .venv (a few minutes the first time)" >&2
    # pip's own chatter goes to a log that is shown only when the install fails.
    if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e '.[dev]'; } \
        > .venv/install.log 2>&1; then
        tail -n 40 .venv/install.log >&2
        echo "setup: pip install failed (full log: .venv/install.log)" >&2
        exit 1
    fi
    cp pyproject.toml "$stamp"
fi

# Real image data for the CPU-scale runs; optional, so a machine without apt (or root) still works.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing dataset-fashion-mnist with apt" >&2
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } \
        || echo "setup: could not install dataset-fashion-mnist; its tests will be skipped" >&2
fi
