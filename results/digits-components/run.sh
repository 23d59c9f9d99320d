#!/usr/bin/env bash
# When do MIX'EM's mixture components become classes at CPU scale? (about 1.5 hours on 2 CPU cores)
#   (a) search/: a TPE search of the term weights that shape pi (w_instance, far above the authors' 0.1, and
#       w_entropy), lr and the temperature, K = 10, 60 epochs (about 360 steps), ranked by the ACC of argmax pi
#       itself: how class-like the components are;
#   (b) e60/ and e200/: the best configuration of (a) (preset `given`) beside the authors' configuration (`mixem`)
#       and SimCLR, each over seeds 0-4, at 60 and at 200 epochs (about 1,200 steps), with the no-learning
#       baselines; one report per budget, then the README's generated tables.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/digits-components
storage="${TMPDIR:-/tmp}/mixem-digits-components-ray"   # checkpoints and Ray's state: not kept
python=.venv/bin/python
rm -rf "$out"/search "$out"/e60 "$out"/e200 "$storage"

$python tune/sweep.py --dataset digits --num-samples 24 --max-epochs 60 --grace-epochs 20 --metric argmax_pi_acc \
    --space num_components=10 w_instance=0,0.01:10 w_entropy=0.5:16 lr=3e-4:1e-2 temperature=0.1:1 \
    --output $out/search --storage $storage/search
best=$($python -m analysis.best $out/search --space)
for epochs in 60 200; do
    $python tune/ablate.py --dataset digits --presets simclr,mixem --seeds 5 --max-epochs $epochs \
        --output $out/e$epochs/ablation --storage $storage/e$epochs-ablation
    $python tune/ablate.py --dataset digits --presets given --seeds 5 --max-epochs $epochs --space $best \
        --output $out/e$epochs/confirm --storage $storage/e$epochs-confirm
    $python -m analysis.report $out/e$epochs/ablation $out/e$epochs/confirm --out $out/e$epochs
done
$python -m analysis.report $out/search
$python -m analysis.readme $out/README.md
