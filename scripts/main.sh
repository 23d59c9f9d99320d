#!/usr/bin/env bash
# The README's main job: set up, then train MIX'EM on the embedded digits dataset (~1-2 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m mixem.train --dataset digits --out runs/digits "$@"
