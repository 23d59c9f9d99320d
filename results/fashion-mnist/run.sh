#!/usr/bin/env bash
# Regenerates results/fashion-mnist/ (about 1.5 hours on 2 CPU cores): the loss-ablation presets x 5 seeds, an
# 8-trial search of MIX'EM and an 8-trial search of SimCLR (the same budget), each search's best configuration
# x the same 5 seeds, the no-learning baselines, then the report, the README's generated tables and the notebook.
# Scale (README.md says why): the Fashion-MNIST preset's small CNN (width 16) on all 70,000 images
# (train+test, 5% held out for the validation loss), 2 epochs per run, evaluated on the 10,000 test images.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/fashion-mnist
storage="${TMPDIR:-/tmp}/mixem-fashion-mnist-ray"   # checkpoints and Ray's state: not kept
epochs=2
seeds=5
trials=8    # per search; both methods get the same budget
python=.venv/bin/python
# What this script writes is its own: the earlier run's folders and report go first.
rm -rf "$out"/{ablation,search-mixem,search-simclr,confirm-mixem,confirm-simclr} "$storage"
rm -f "$out"/report.md "$out"/report.tex "$out"/*.png "$out"/.report-files

# (a) The loss ablation, 5 seeds each (seeds 0-4, paired across presets).
$python tune/ablate.py --dataset fashion-mnist --max-epochs $epochs --seeds $seeds --max-concurrent 2 \
    --presets simclr,mixture_only,entropy,entropy_instance,mixem,mixem_entropy \
    --output $out/ablation --storage $storage/ablation

# (b) Two searches of the same budget ($trials trials, TPE, ASHA's rung at epoch 1, ranked by each head's reported
#     clustering): MIX'EM's loss weights, K, lr and temperature (starting from the authors' configuration), and
#     SimCLR's lr and temperature, so that neither method is compared at another's tuned settings.
$python tune/sweep.py --dataset fashion-mnist --max-epochs $epochs --num-samples $trials --grace-epochs 1 \
    --max-concurrent 2 --output $out/search-mixem --storage $storage/search-mixem
$python tune/sweep.py --dataset fashion-mnist --max-epochs $epochs --num-samples $trials --grace-epochs 1 \
    --max-concurrent 2 --metric kmeans_z_l2_acc \
    --space head=simclr w_entropy=0 w_instance=0 w_pull=0 w_push=0 num_components=10 \
    --output $out/search-simclr --storage $storage/search-simclr

# (c) Each search's best finished configuration x the same 5 seeds, at the ablation's budget.
for method in mixem simclr; do
    $python tune/ablate.py --dataset fashion-mnist --max-epochs $epochs --seeds $seeds --max-concurrent 2 \
        --presets given --space $($python -m analysis.best $out/search-$method --space) \
        --output $out/confirm-$method --storage $storage/confirm-$method
done

sweeps=($out/ablation $out/search-mixem $out/search-simclr $out/confirm-mixem $out/confirm-simclr)
$python -m analysis.report "${sweeps[@]}" --out $out
$python -m analysis.readme $out/README.md
$python -m analysis.notebook --sweeps "${sweeps[@]}"
