#!/usr/bin/env bash
# Regenerates results/fashion-mnist/ (about 2.5 hours on 2 CPU cores): every ablation preset x 3 seeds,
# a 24-trial search, the best searched configuration x 3 seeds, then the report and the executed notebook.
# Scale (README.md says why): the Fashion-MNIST preset's small CNN (width 16) on all 70,000 images
# (train+test, 5% held out for the validation loss), 2 epochs per run, evaluated on the 10,000 test images.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/fashion-mnist
storage="${TMPDIR:-/tmp}/mixem-fashion-mnist-ray"   # checkpoints and Ray's state: not kept
epochs=2
python=.venv/bin/python

# (a) The paper's ablations, 3 seeds each. k10 is left out: on 10 classes it is the mixem preset (K = 10).
$python tune/ablate.py --dataset fashion-mnist --max-epochs $epochs --seeds 3 --max-concurrent 2 \
    --presets simclr,mixture_only,entropy,entropy_instance,mixem,mixem_entropy,k20,k40 \
    --output $out/ablation --storage $storage/ablation

# (b) A search of the loss weights, K, lr and temperature (TPE, ASHA's rung at epoch 1),
#     ranked by the fixed variant compinit_z_l2_acc.
$python tune/sweep.py --dataset fashion-mnist --max-epochs $epochs --num-samples 24 --grace-epochs 1 \
    --reduction-factor 3 --max-concurrent 2 --output $out/search --storage $storage/search

# (c) The best searched configuration (a finished trial) x 3 seeds, at the ablation's budget; SimCLR x 3 is in (a).
$python tune/ablate.py --dataset fashion-mnist --max-epochs $epochs --seeds 3 --max-concurrent 2 --presets given \
    --space $($python -m analysis.best $out/search --space) --output $out/confirm --storage $storage/confirm

$python -m analysis.report $out/ablation $out/search $out/confirm --out $out
$python -m analysis.notebook   # executes analysis/ablation.ipynb in place on these three folders
