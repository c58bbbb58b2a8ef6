#!/usr/bin/env bash
# One GPU session in one command: the "compute" half of "compute once, render anywhere", for a node that has
# torch, torchvision, numpy, scipy, pandas and tqdm but perhaps not every core dependency, and no network.
#
#   scripts/offline_gpu_node.sh [PROFILE] [OUT_DIR]        (defaults: gpu, $OUT or ./node-out)
#
# It installs what is missing from carried wheels, records the card and the versions, trains and evaluates
# every run of PROFILE side by side on the GPU (`cckl evaluate --jobs N`: all of them by default; the `gpu`
# profile's five fit in any 80 GB card), stops after LIMIT seconds (default 540, so that the whole command
# ends inside a 10-minute slot) keeping every finished run, bundles what finished and prints each run's
# times (beside the profile's [sizing], recorded first in node.txt). Copy OUT_DIR/<profile>-results.tar.gz back and run `make paper PROFILE=<profile> BUNDLE=<that file>`.
#
# Before copying the checkout to the node, put beside it in .device/ (ignored by git):
#   .device/cifar10-jpeg.zip   the offline CIFAR-10 copy, made smaller without changing a pixel (41.2 MiB, was 60.3):
#                              python scripts/pack_device_data.py ../shared/data/cifar10-jpeg.zip .device/cifar10-jpeg.zip
#   .device/wheels/*.whl       wheels of what the node lacks, if anything (the H200 image has safetensors)
# (a lent GPU machine takes 64 MiB of checkout + carried files in all; the checkout is about 3.3 MiB).
# Rehearse it first on the CPU: `make rehearse` (the same runs at a few images), or
# DEVICE=cpu JOBS=2 scripts/offline_gpu_node.sh smoke /tmp/node-out.
set -uo pipefail
profile="${1:-gpu}"
out="$(mkdir -p "${2:-${OUT:-node-out}}" && cd "${2:-${OUT:-node-out}}" && pwd)"
device="${DEVICE:-cuda}"
limit="${LIMIT:-540}"
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"

export PYTHONPATH="$PWD/.device/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$py" -c "import safetensors, tqdm, scipy, pandas, matplotlib, seaborn" 2>/dev/null; then
    ls .device/wheels/*.whl >/dev/null 2>&1 || { echo "error: a core dependency is missing and .device/wheels/ has no wheel for it" >&2; exit 2; }
    "$py" -m pip install --quiet --no-index --no-deps --target .device/site .device/wheels/*.whl || exit 2
fi
if [ -f .device/cifar10-jpeg.zip ] && [ -z "${CCKL_CIFAR10_ZIP:-}" ]; then
    export CCKL_CIFAR10_ZIP="$PWD/.device/cifar10-jpeg.zip"
fi
"$py" -m cckl_core default-profile --profile "$profile" >/dev/null || exit 2

{ date -u +"start %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$py" -c "import sys, torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  git rev-parse HEAD 2>/dev/null || true
  "$py" -m cckl_core plan --profile "$profile" --sizing 2>/dev/null || true; } | tee "$out/node.txt"
SECONDS=0
# SIGINT at the limit: the scheduler stops its workers, finished epochs and evaluations stay in the cache
timeout --signal=INT --kill-after=30 "$limit" "$py" -m cckl_core evaluate --profile "$profile" --device "$device" \
    --no-plan --jobs "${JOBS:-8}" 2>&1 | tee "$out/evaluate.log"
echo "train + evaluate: ${SECONDS} s (limit ${limit} s)" | tee -a "$out/node.txt"
"$py" -m cckl_core runs --profile "$profile" | tee "$out/runs.txt"
"$py" -m cckl_core costs --profile "$profile" | tee "$out/costs.txt"
"$py" -m cckl_core bundle --profile "$profile" --out "$out/$profile-results.tar.gz"
echo "end: ${SECONDS} s" | tee -a "$out/node.txt"
