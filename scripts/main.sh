#!/usr/bin/env bash
# The README's main job: set up, run an Optuna sweep of MIX'EM on the embedded digits dataset with
# a local Ray (6 trials, ASHA; ~5-10 min on 2 cores), then write its report.
# Extra arguments go to tune/sweep.py, e.g. `bash scripts/main.sh --num-samples 16`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="sweeps/digits-$(date +%Y%m%d-%H%M%S)"
.venv/bin/python tune/sweep.py --dataset digits --num-samples 6 --max-epochs 30 --output "$out" "$@"
.venv/bin/python -m analysis.report "$out"
echo "Sweep results: $out/trials.parquet, $out/epochs.parquet; report: $out/report.md"
