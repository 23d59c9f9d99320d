#!/usr/bin/env bash
# The README's main job (about 8-10 minutes on 2 cores): does training help on digits, and does MIX'EM beat
# SimCLR there? A search of MIX'EM's weights that starts from the authors' configuration, beside SimCLR and the
# authors' MIX'EM over 5 seeds, and K-means on the raw pixels (the no-learning baseline), then one report that
# answers both questions with paired differences and 95% intervals. Extra arguments go to the search
# (tune/sweep.py), e.g. `bash scripts/main.sh --num-samples 12`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="sweeps/digits-$(date +%Y%m%d-%H%M%S)"
python=.venv/bin/python
epochs=30
# The search: every loss term may be switched on or off, K is the class count (the components' ACC is read
# against 10 classes), lr and the temperature around the preset's; the first trial is the authors' configuration.
$python tune/sweep.py --dataset digits --num-samples 8 --max-epochs $epochs --grace-epochs 10 \
    --space num_components=10 --output "$out/search" "$@"
$python tune/ablate.py --dataset digits --presets simclr,mixem --seeds 5 --max-epochs $epochs \
    --output "$out/ablation"
$python -m analysis.report "$out/search" "$out/ablation" --out "$out"
echo "Sweep results: $out/search and $out/ablation (trials.parquet, epochs.parquet, baselines.parquet); report: $out/report.md"
