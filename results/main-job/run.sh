#!/usr/bin/env bash
# Regenerates results/main-job/ (about 15 minutes on 2 CPU cores): scripts/main.sh's search (8 trials of 60
# epochs in the space the component study pointed to, the authors' configuration first), with SimCLR and the
# authors' MIX'EM over 5 seeds instead of the main job's 3, the report, and the README's generated tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/main-job
storage="${TMPDIR:-/tmp}/mixem-main-job-ray"   # checkpoints and Ray's state: not kept
python=.venv/bin/python
rm -rf "$out"/search "$out"/ablation "$storage"
rm -f "$out"/report.md "$out"/report.tex "$out"/*.png "$out"/.report-files
space=(num_components=10 w_instance=0.1:1 w_entropy=2:16 temperature=0.3:0.6 lr=1e-3:3e-3)
$python tune/sweep.py --dataset digits --num-samples 8 --max-epochs 60 --grace-epochs 30 --space "${space[@]}" \
    --output $out/search --storage $storage/search
$python tune/ablate.py --dataset digits --presets simclr,mixem --seeds 5 --max-epochs 60 \
    --output $out/ablation --storage $storage/ablation
$python -m analysis.report $out/search $out/ablation --out $out
$python -m analysis.readme $out/README.md
