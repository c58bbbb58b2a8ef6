#!/usr/bin/env bash
# Train and evaluate a profile on an offline GPU node and bundle the results, in one command:
# the "compute" half of "compute once, render anywhere" (README), for a node that has torch,
# torchvision, numpy, scipy, pandas and tqdm but perhaps not every core dependency and no network.
#
#   scripts/offline_gpu_node.sh [PROFILE] [OUT_DIR]        (defaults: gpu, $OUT or ./node-out)
#
# Before copying the checkout to the node, put beside it in .device/ (ignored by git):
#   .device/cifar10-jpeg.zip   the offline CIFAR-10 copy (cp ../shared/data/cifar10-jpeg.zip .device/)
#   .device/wheels/*.whl       wheels of what the node lacks, e.g. pip download safetensors -d .device/wheels
# (This project's lent GPU machines take 64 MiB of checkout + carried files: the zip is 60.3 MiB, the
# wheel 0.5 MiB and the tracked files 2.4 MiB on 2026-11-26, so keep committed figures small.)
# Then on the node: scripts/offline_gpu_node.sh gpu "$OUT"; copy OUT_DIR/<profile>-results.tar.gz back and
# run `make paper PROFILE=<profile> BUNDLE=<that file>` where Jupyter is.
# DEVICE=cpu runs the same on a CPU (how this script is checked on the smoke profile); PLAN=0 skips `plan`.
set -euo pipefail
profile="${1:-gpu}"
out="$(mkdir -p "${2:-${OUT:-node-out}}" && cd "${2:-${OUT:-node-out}}" && pwd)"
device="${DEVICE:-cuda}"
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"

export PYTHONPATH="$PWD/.device/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import safetensors, tqdm, scipy, pandas" 2>/dev/null; then
    ls .device/wheels/*.whl >/dev/null 2>&1 || { echo "error: a core dependency is missing and .device/wheels/ has no wheel for it" >&2; exit 2; }
    "$py" -m pip install --quiet --no-index --no-deps --target .device/site .device/wheels/*.whl
fi
if [ -f .device/cifar10-jpeg.zip ] && [ -z "${CCKL_CIFAR10_ZIP:-}" ]; then
    export CCKL_CIFAR10_ZIP="$PWD/.device/cifar10-jpeg.zip"
fi

{ date -u +"start %Y-%m-%dT%H:%M:%SZ"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
  "$py" -c "import torch; print('torch', torch.__version__)"; } | tee "$out/node.txt"
if [ "${PLAN:-1}" != 0 ]; then  # PLAN=0 skips the estimate (it times a few steps of every run first)
    "$py" -m cckl_core plan --profile "$profile" --device "$device" | tee "$out/plan.txt"
fi
SECONDS=0
"$py" -m cckl_core evaluate --profile "$profile" --device "$device" --no-progress 2>&1 | tee "$out/evaluate.log"
echo "train + evaluate: ${SECONDS} s" | tee -a "$out/node.txt"
"$py" -m cckl_core runs --profile "$profile" | tee "$out/runs.txt"
"$py" -m cckl_core bundle --profile "$profile" --out "$out/$profile-results.tar.gz"
