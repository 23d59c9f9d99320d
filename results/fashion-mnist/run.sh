#!/usr/bin/env bash
# Regenerates results/fashion-mnist/: every ablation preset x 3 seeds on Fashion-MNIST at CPU scale,
# then the report. CPU scale: the dataset preset's small CNN (width 16), trained for 8 epochs on the
# 10,000 test images only (the authors train on train+test; 70,000 images x 27 runs do not fit
# 2 cores), evaluated on the same 10,000 test images.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python tune/ablate.py --dataset fashion-mnist --seeds 3 --max-epochs 8 \
    --space train_split=test --max-concurrent 2 \
    --output results/fashion-mnist/ablation --storage "${TMPDIR:-/tmp}/mixem-fm-ablation-ray"
.venv/bin/python -m analysis.report results/fashion-mnist/ablation --out results/fashion-mnist
