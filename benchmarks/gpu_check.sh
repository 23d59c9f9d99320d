#!/usr/bin/env bash
# The GPU check, one prepared script (under 8 minutes on one H100): the tests that need CUDA, the
# benchmark suite's GPU figures, a 2-trial sweep on the GPU, and a GPU checkpoint resumed on the CPU.
# Every figure is printed and the whole log lands in $OUT/gpu_check.log ($OUT: the device tool's
# folder, else /tmp/mixem-gpu-check).
#
#   bash benchmarks/gpu_check.sh                      # on a machine with a GPU
#   bash benchmarks/gpu_check.sh --device cpu --quick # the same path on the CPU (what CI can run)
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda
quick=""
usage() { echo "usage: bash benchmarks/gpu_check.sh [--device cuda|cpu] [--quick]${1:+: $1}" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --device) [ $# -ge 2 ] || usage "--device needs a value"; device="$2"; shift 2 ;;
        --quick) quick="--quick"; shift ;;
        *) usage "unknown argument $1" ;;
    esac
done
case "$device" in cuda|cpu) ;; *) usage "--device is cuda or cpu, not $device" ;; esac
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
out="${OUT:-/tmp/mixem-gpu-check}"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec > >(tee "$out/gpu_check.log") 2>&1

step() { echo; echo "== $* ($(date +%H:%M:%S))"; }

step "environment"
$python -c "import torch, ray; print('torch', torch.__version__, '| ray', ray.__version__, '| cuda', torch.cuda.is_available(),
'|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no GPU: run with --device cpu')"
fi

step "tests that need CUDA (a sync-free training step, a GPU checkpoint resumed on the CPU, augmentation)"
$python -m pytest -q tests/test_gpu.py tests/test_augment.py -p no:cacheprovider

step "benchmark suite on $device"
$python -m benchmarks --device "$device" $quick

step "a 2-trial sweep on $device (digits, 3 epochs)"
gpus=0
[ "$device" = cuda ] && gpus=1
$python tune/sweep.py --dataset digits --search grid --space lr=1e-3,2e-3 num_components=10 w_entropy=2 \
    w_instance=0.1 w_pull=0.1 w_push=0.05 temperature=0.5 --max-epochs 3 --grace-epochs 3 \
    --gpus-per-worker "$gpus" --output "$work/sweep"
$python -c "import pandas as pd; t = pd.read_parquet('$work/sweep/trials.parquet');
print(t[['trial_id', 'status', 'epochs', 'wall_seconds', 'gpu_seconds', 'final/compinit_z_l2_acc']].to_string())"

step "a $device checkpoint resumed on the CPU"
$python -m mixem.train --dataset digits --epochs 1 --kmeans-n-init 2 --device "$device" --out "$work/run"
$python -m mixem.train --resume "$work/run" --epochs 2 --device cpu

step "done: every figure above; log in $out/gpu_check.log"
