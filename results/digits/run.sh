#!/usr/bin/env bash
# Search efficiency on digits (about 15 minutes on 2 CPU cores): TPE + ASHA and random search + ASHA, 3 searcher
# seeds each, and a grid, all over the same space and budget; then what each needed to come within one ACC
# point of the best configuration any of them found (efficiency.txt) and the report, whose label-free
# selection tables say how well each label-free score would have picked the trial.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/digits
storage="${TMPDIR:-/tmp}/mixem-digits-ray"   # checkpoints and Ray's state: not kept
python=.venv/bin/python
# Three searched fields (a grid of 3 x 3 x 2 = 18 points), the other weights at the authors' values.
space=(w_entropy=0.5:8 lr=1e-4:1e-2 num_components=10,40 w_instance=0.1 w_pull=0.1 w_push=0.05 temperature=0.5)
common=(--dataset digits --max-epochs 6 --max-concurrent 2)

for seed in 0 1 2; do
    for search in optuna random; do
        $python tune/sweep.py "${common[@]}" --space "${space[@]}" --search $search --num-samples 8 \
            --grace-epochs 2 --reduction-factor 3 --seed $seed \
            --output $out/$search-seed$seed --storage $storage/$search-seed$seed
    done
done
# The grid runs every point to the end (no early stopping), evaluated every 2 epochs like the searches.
$python tune/sweep.py "${common[@]}" --space "${space[@]}" eval_every=2 --search grid --grace-epochs 6 \
    --output $out/grid --storage $storage/grid

$python -m analysis.efficiency $out/optuna-seed* $out/random-seed* $out/grid | tee $out/efficiency.txt
$python -m analysis.report $out/optuna-seed0 $out/optuna-seed1 $out/optuna-seed2 $out/random-seed0 \
    $out/random-seed1 $out/random-seed2 $out/grid --out $out
